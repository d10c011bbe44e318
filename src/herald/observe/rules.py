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

The table is rendered with the default rate. An agent given another (`--flow-rate`,
`--flow-burst`) sets it after each datapath commit with `rate_script`: the kernel cannot
change a named limit in place, so one transaction empties the verdict chains, replaces the
limit and fills them again; with rate 0 they stay empty and nothing is logged.
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
TABLE = "inet herald"


@dataclass(frozen=True)
class FlowRate:
    """A node's budget of flow events: `per_second` (0: flow events off) and `burst`."""

    per_second: int = RATE_PER_SECOND
    burst: int = BURST

    def __post_init__(self) -> None:
        if self.per_second < 0 or self.burst < 1:
            raise ValueError(f"flow rate must be >= 0/s with a burst >= 1, got {self}")

    @property
    def on(self) -> bool:
        return self.per_second > 0

    @property
    def limit(self) -> str:
        return f"rate over {self.per_second}/second burst {self.burst} packets"

    @classmethod
    def parse(cls, rate: str, burst: int = BURST) -> FlowRate:
        """`N`, `N/s` or `N/second`."""
        number, _, unit = rate.strip().partition("/")
        if unit not in ("", "s", "second") or not number.isdigit():
            raise ValueError(f"flow rate {rate!r}: give N, N/s or N/second")
        return cls(int(number), burst)


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
        ObserveObject("SET", "limit", LIMIT, (FlowRate().limit,)),
        ObserveObject("SET", "counter", LOST_COUNTER, ()),
    ]
    for verdict in VERDICTS:
        found.append(
            ObserveObject("LOOKUP_CHAIN", "chain", chain_of(verdict), verdict_rules(verdict))
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


def verdict_rules(verdict: Verdict) -> tuple[str, str]:
    """A verdict chain's rules: beyond the limit, count and return; else log."""
    return (f'limit name "{LIMIT}" counter name "{LOST_COUNTER}" return', log_statement(verdict))


def rate_script(rate: FlowRate) -> str:
    """One nft transaction giving the table `rate` (see the module's docstring)."""
    lines = [f"flush chain {TABLE} {chain_of(v)}" for v in VERDICTS]
    if rate.on:
        lines += [f"delete limit {TABLE} {LIMIT}", f"add limit {TABLE} {LIMIT} {{ {rate.limit} }}"]
        lines += [
            f"add rule {TABLE} {chain_of(v)} {rule}" for v in VERDICTS for rule in verdict_rules(v)
        ]
    return "\n".join(lines) + "\n"


def applied_rate(limit: dict[str, object] | None, logging: bool) -> FlowRate | None:
    """The rate the kernel's table has, from the limit object as `nft -j` lists it and
    whether the verdict chains hold their rules; None when it is none herald sets."""
    if not logging:
        return FlowRate(0, BURST)
    if limit is None or limit.get("per") != "second" or limit.get("unit", "packets") != "packets":
        return None
    rate, burst = limit.get("rate"), limit.get("burst", 5)
    if not isinstance(rate, int) or not isinstance(burst, int) or not limit.get("inv"):
        return None
    return FlowRate(rate, max(burst, 1))


def chain_of(verdict: Verdict) -> str:
    return "-".join(
        ("observe", verdict.verdict.lower(), *([verdict.reason] if verdict.reason else ()))
    ) + ("-reply" if verdict.reply else "")
