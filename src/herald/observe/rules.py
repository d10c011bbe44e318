"""The nftables objects that hand herald's packets to the agent as flow events (NFLOG).

Pure texts, added to `table inet herald` by `dataplane/render.py`. They only observe: they
sit in base chains of their own, `observe-<hook>` at priority -120, after conntrack (-200)
and just before herald's filter chains (-110) and DNAT (-100); no verdict of theirs changes
what the datapath does (an `accept` in one base chain does not skip another).

- First the conditions of herald's three refusals, repeated, so the packet they will
  refuse is logged as DROPPED with its reason: `restricted` (the client is outside
  loadBalancerSourceRanges), `unserved` (a new flow of a service with no usable backend)
  and another port of a VIP. Only sets without counters are looked up, so the services'
  packet counters count each packet once.
- Then every other packet of a flow whose conntrack original destination is a VIP, in
  either direction (`ct direction`), as FORWARDED. The packet is logged as it arrived,
  before NAT: a request is the flow's original tuple, a reply its reply tuple, and the
  agent finds the chosen backend in the conntrack entry (NFULA_CT, or a ctnetlink lookup
  of that tuple on kernels built without CONFIG_NETFILTER_NETLINK_GLUE_CT).

Every log goes through one named limit: packets beyond it are counted in `observe-lost`
and not logged, so a flood costs the kernel a counter increment and the agent nothing.
The verdict, reason and direction travel in the log prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

# The NFLOG group the agent binds in its node's network namespace.
LOG_GROUP = 7130
# Bytes of each packet copied to the agent: IPv6 header (40) and a TCP header with options.
SNAPLEN = 128
# The default budget of flow events per node; beyond it events are counted as lost.
RATE_PER_SECOND = 1000
BURST = 200
LIMIT = "observe-rate"
LOST_COUNTER = "observe-lost"
PREFIX = "herald"


@dataclass(frozen=True)
class Verdict:
    """What herald did with a logged packet, as its log prefix carries it."""

    verdict: str  # "FORWARDED" or "DROPPED"
    reason: str
    reply: bool = False  # the packet went in its flow's reply direction

    @property
    def prefix(self) -> str:
        return " ".join(p for p in (PREFIX, self.verdict, self.reason) if p) + (
            " reply" if self.reply else ""
        )


FORWARDED = Verdict("FORWARDED", "")
FORWARDED_REPLY = Verdict("FORWARDED", "", reply=True)
SOURCE_DENIED = Verdict("DROPPED", "source-range-denied")
NO_BACKEND = Verdict("DROPPED", "no-usable-backend")
OTHER_PORT = Verdict("DROPPED", "no-service-port")
VERDICTS = (FORWARDED, FORWARDED_REPLY, SOURCE_DENIED, NO_BACKEND, OTHER_PORT)


def parse_prefix(prefix: str) -> Verdict | None:
    """The verdict a log prefix names; None for a prefix that is not herald's."""
    for known in VERDICTS:
        if prefix.strip() == known.prefix:
            return known
    return None


@dataclass(frozen=True)
class ObserveObject:
    """One object for the `inet herald` table; `rank` names render.Rank's member."""

    rank: str
    kind: str
    name: str
    body: tuple[str, ...]


def log_statement(verdict: Verdict) -> str:
    return f'log prefix "{verdict.prefix}" group {LOG_GROUP} snaplen {SNAPLEN}'


def objects(
    families: tuple[tuple[str, str], ...] = (("ip", "v4"), ("ip6", "v6")),
) -> tuple[ObserveObject, ...]:
    """The limit, the counter, one chain per verdict and the base chains; `families` are
    (payload header, suffix) pairs as render.FAMILIES names them."""
    found = [
        ObserveObject(
            "SET", "limit", LIMIT, (f"rate over {RATE_PER_SECOND}/second burst {BURST} packets",)
        ),
        ObserveObject("SET", "counter", LOST_COUNTER, ()),
    ]
    for verdict in VERDICTS:
        found.append(
            ObserveObject(
                "LOOKUP_CHAIN",
                "chain",
                chain_of(verdict),
                (
                    f'limit name "{LIMIT}" counter name "{LOST_COUNTER}" return',
                    log_statement(verdict),
                ),
            )
        )
    watched = []
    for header, s in families:
        key = f"{header} daddr . meta l4proto . th dport"
        watched += [
            f"{key} @restricted-{s} {key} . {header} saddr != @allowed-{s} "
            f"goto {chain_of(SOURCE_DENIED)}",
            f"{key} @unserved-{s} ct state new goto {chain_of(NO_BACKEND)}",
            f"{header} daddr @vips-{s} {key} != @services-{s} ct state != related "
            f"goto {chain_of(OTHER_PORT)}",
            f"ct original {header} daddr @vips-{s} ct direction original "
            f"goto {chain_of(FORWARDED)}",
            # Confirmed: the reset or ICMP error of a refusal belongs to an entry that never
            # was, and is herald's answer rather than a backend's.
            f"ct original {header} daddr @vips-{s} ct direction reply ct status confirmed "
            f"goto {chain_of(FORWARDED_REPLY)}",
        ]
    for hook in ("prerouting", "output"):
        found.append(
            ObserveObject(
                "BASE_CHAIN",
                "chain",
                f"observe-{hook}",
                (f"type filter hook {hook} priority -120; policy accept;", *watched),
            )
        )
    return tuple(found)


def chain_of(verdict: Verdict) -> str:
    return "-".join(
        ("observe", verdict.verdict.lower(), *([verdict.reason] if verdict.reason else ()))
    ) + ("-reply" if verdict.reply else "")
