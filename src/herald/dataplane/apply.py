"""Puts rendered rules into the kernel in atomic transactions: declarations with nft,
elements as netlink batches (`netlink_nft`; nft text with `netlink=False` or no socket).

`Datapath.resync` replaces herald's tables whole (start-up: whatever a previous run left is
gone); `Datapath.sync` then changes only the services that differ from what it applied last:
their elements in the shared maps, all changed services in one transaction, and service by
service when nft refuses that one, so the refused service is named and leaves its previous
rules (and every other service) serving. Only `inet herald` and `netdev herald` are ever
touched.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from herald.dataplane.command import Runner, in_netns, run_command
from herald.dataplane.conntrack import Conntrack, Flow, stale_flows
from herald.dataplane.libnft import LibNft
from herald.dataplane.model import NO_PEERS, DataplaneService, NodeContext, Peers
from herald.dataplane.netlink_nft import (
    Batch,
    DeferredBatch,
    NetlinkElements,
    NetlinkUnavailable,
    element_batches,
    layouts,
    slot_batches,
)
from herald.dataplane.render import (
    SERVICE_SETS,
    TABLE,
    Element,
    NftObject,
    Rank,
    Ruleset,
    ServiceRules,
    base_for,
    declare,
    render_service,
    without_conflicts,
)

FAMILIES = ("inet", "netdev")
# Elements per transaction of a resync: nft needs about 2.4 KB of memory and 15-20 µs per
# Maglev slot element while it parses a transaction, so ten million slots (10,000 services)
# go in several transactions of this size (see `resync_scripts`).
RESYNC_CHUNK = 250_000
# The maps that send a flow into a service's DNAT or DSR chains: a resync in several
# transactions fills them last, once every slot they lead to is in place.
ENTRY_MAPS = frozenset({("inet", "dnat-v4"), ("inet", "dnat-v6")}) | {
    ("netdev", s) for s in SERVICE_SETS
}
# The elements a resync always writes as nft text: the services' keys, whose counters
# carry over, and the marks a split resync sets and clears.
TEXT_ELEMENTS = frozenset(("inet", s) for s in SERVICE_SETS) | {
    ("inet", "unserved-v4"),
    ("inet", "unserved-v6"),
}


class ApplyError(RuntimeError):
    """Rules not applied: nft refused them, they cannot be rendered on this node, or their
    VIP:port belongs to another service. `services` names them; every other service's
    rules were applied."""

    def __init__(self, services: Sequence[str], detail: str) -> None:
        self.services = tuple(services)
        super().__init__(f"services {', '.join(services) or '(base)'}: not applied: {detail}")


@dataclass(frozen=True)
class Counter:
    packets: int
    bytes: int


# A service's rules before and after a change; None when it did not exist or goes away.
Change = tuple[ServiceRules | None, ServiceRules | None]


class NftApi(Protocol):
    """What the datapath needs of nftables: `Nft` (the command) or `libnft.LibNft`."""

    @property
    def netns(self) -> str | None: ...

    def transaction(self, script: str, check_only: bool = False) -> str | None: ...

    def list_json(self, *what: str) -> list[dict[str, object]]: ...


@dataclass
class Nft:
    """The nft command, optionally inside a named network namespace."""

    netns: str | None = None
    runner: Runner = run_command

    def argv(self, *args: str) -> list[str]:
        return in_netns(self.netns, "nft", *args)

    def transaction(self, script: str, check_only: bool = False) -> str | None:
        """Run `script` as one transaction; the error text when nft refuses it."""
        flags = ("-c", "-f", "-") if check_only else ("-f", "-")
        result = self.runner(self.argv(*flags), script)
        return None if result.returncode == 0 else result.stderr.strip()

    def list_json(self, *what: str) -> list[dict[str, object]]:
        result = self.runner(self.argv("-j", "list", *what), "")
        if result.returncode != 0:
            return []
        items: list[dict[str, object]] = json.loads(result.stdout).get("nftables", [])
        return items


@dataclass
class Datapath:
    node: NodeContext
    nft: NftApi = field(default_factory=Nft)
    # Where stale UDP flows are forgotten; by default beside nft, in its namespace.
    conntrack: Conntrack | None = None
    # What the kernel holds: the shared objects, each service's rules, and how many
    # services list each element (a VIP shared by two services is one element, deleted
    # with the last of them).
    base: tuple[NftObject, ...] = ()
    services: dict[str, ServiceRules] = field(default_factory=dict)
    users: collections.Counter[Element] = field(default_factory=collections.Counter)
    # What the kernel should hold, kept up to date service by service so that a change
    # costs the same with 10 or 10,000 services: rendering is pure, so a service that did
    # not change is never rendered again (compared with `is`/`==` rather than hashed:
    # hashing every backend address on every sync would cost more than the change).
    rendered: dict[str, tuple[DataplaneService, ServiceRules]] = field(default_factory=dict)
    desired: dict[str, ServiceRules] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # VIP . proto . port -> service
    chain_users: collections.Counter[NftObject] = field(default_factory=collections.Counter)
    # Services left out because their VIP:port belongs to another one, services that
    # cannot be rendered on this node, and services nft refused last time (retried on
    # the next sync).
    conflicts: dict[str, str] = field(default_factory=dict)
    unrenderable: dict[str, str] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    resync_chunk: int = RESYNC_CHUNK
    # Counts the times herald's tables were replaced (tried, at least): what lives in the
    # kernel only (the flow-event rate the agent sets) must be set again after each.
    replaced: int = 0
    # The other nodes' MACs and which of them are unreachable (`set_peers`).
    peers: Peers = NO_PEERS
    # `set_peers` comes from the agent's neighbour watch, in another thread than `sync`.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    # Each service as the kernel serves it: what its UDP flows may be bound to (see
    # `forget_stale_flows`).
    committed: dict[str, DataplaneService] = field(default_factory=dict)
    # Elements go to the kernel as netlink batches (`netlink_nft`), declarations through
    # `nft`; False keeps everything on nft's text path (the reference). Only with a real
    # nft: a fake one records text.
    netlink: bool = True
    elements: NetlinkElements | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.conntrack is None:
            runner = self.nft.runner if isinstance(self.nft, Nft) else run_command
            self.conntrack = Conntrack(self.nft.netns, runner)
        real = isinstance(self.nft, LibNft) or (
            isinstance(self.nft, Nft) and self.nft.runner is run_command
        )
        if self.netlink and real and self.elements is None:
            try:
                self.elements = NetlinkElements(self.nft.netns)
            except NetlinkUnavailable:
                self.elements = None  # no root: the text path does it all

    def render(self, services: Iterable[DataplaneService]) -> set[str]:
        """Update the desired state; the keys of the services whose rules may differ."""
        incoming = {service.key: service for service in services}
        rendered = self.rendered
        # The one pass over every service: identity first, so an unchanged service costs a
        # lookup (this loop is most of a one-service change at 10,000 services).
        changed = [
            service
            for key, service in incoming.items()
            if (seen := rendered.get(key)) is None
            or (seen[0] is not service and seen[0] != service)
        ]
        touched = rendered.keys() - incoming.keys()
        for key in touched:
            del rendered[key]
        self.unrenderable = {}
        for service in changed:
            try:
                rendered[service.key] = (service, render_service(service, self.node))
            except ValueError as err:
                # This node cannot forward it as asked (DSR without an uplink, a table
                # too small for its backends): its previous rules, if any, stay.
                self.unrenderable[service.key] = str(err)
                continue
            touched.add(service.key)
        # A changed service gives up its claims and competes again, with the ones refused
        # before, for the claims nobody else holds: a service that did not change keeps
        # its VIP:ports.
        for key in touched:
            self.release(key)
        contenders = [rendered[k][1] for k in touched | self.conflicts.keys() if k in rendered]
        kept, self.conflicts = without_conflicts(contenders, self.services.keys(), self.owners)
        for rules in kept:
            self.desired[rules.key] = rules
            self.owners.update(dict.fromkeys(rules.claims(), rules.key))
            self.chain_users.update(rules.chains)
        return touched | {r.key for r in contenders}

    def release(self, key: str) -> None:
        rules = self.desired.pop(key, None)
        if rules is None:
            return
        for claim in rules.claims():
            del self.owners[claim]
        self.chain_users.subtract(rules.chains)
        for chain in rules.chains:
            if self.chain_users[chain] <= 0:
                del self.chain_users[chain]

    def desired_base(self) -> tuple[NftObject, ...]:
        return base_for(self.chain_users, self.node, self.peers)

    def set_peers(self, peers: Peers) -> None:
        """Change what the node knows of its peers: only the shared netdev chains change
        (one transaction, while DSR services exist), never a service's elements."""
        with self.lock:
            if peers == self.peers:
                return
            self.peers = peers
            if self.base:
                self.add_base(self.desired_base())

    def raise_conflicts(self, failed: Mapping[str, str]) -> None:
        problems = {**self.conflicts, **self.unrenderable, **failed}
        if problems:
            raise ApplyError(sorted(problems), "; ".join(problems.values()))

    def resync(self, services: Iterable[DataplaneService]) -> None:
        """Replace herald's tables with exactly `services`, keeping counter values."""
        with self.lock:
            self._resync(services)

    def _resync(self, services: Iterable[DataplaneService]) -> None:
        self.replaced += 1
        self.render(services)
        desired = Ruleset(self.desired_base(), tuple(sorted_rules(self.desired)))
        counters = self.element_counters()
        scripts: Sequence[str | DeferredBatch] = (
            resync_steps(desired, counters, self.resync_chunk)
            if self.elements is not None
            else resync_scripts(desired, counters, self.resync_chunk)
        )
        for part, script in enumerate(scripts):
            error = self.commit(script)
            if error is None:
                continue
            self.base, self.services = (), {}  # the next sync starts over
            if part == 0:
                raise ApplyError(self.refused_services(desired), error)
            raise ApplyError([], f"resync part {part + 1} of {len(scripts)}: {error}")
        self.base = desired.base
        self.services = dict(self.desired)
        self.users = collections.Counter(e for s in desired.services for e in s.elements)
        self.pending = set()
        self.forget_stale_flows(self.committed.keys() | self.rendered.keys())
        self.raise_conflicts({})

    def sync(self, services: Iterable[DataplaneService]) -> None:
        """Bring the kernel to `services`, touching only the services that changed."""
        with self.lock:
            self._sync(services)

    def _sync(self, services: Iterable[DataplaneService]) -> None:
        if not self.base:
            self._resync(services)
            return
        touched = self.render(services) | self.pending
        changed = [(self.services.get(key), self.desired.get(key)) for key in sorted(touched)]
        changed = [(old, new) for old, new in changed if old is not new and old != new]
        base = self.desired_base()
        try:
            self.add_base(base)
        except ApplyError:
            # Nothing changed in the kernel: every change is tried again on the next sync.
            self.pending = touched
            raise
        failed: dict[str, str] = {}
        # All changes in one transaction; if nft refuses it, one service at a time so that
        # the refused one is named and the others still apply.
        error = self.change(changed) if changed else None
        if error is not None and len(changed) == 1:
            failed[service_key(changed[0])] = error
        elif error is not None:
            for pair in changed:
                error = self.change([pair])
                if error is not None:
                    failed[service_key(pair)] = error
        self.pending = set(failed)
        # A refused service still uses the chains of its previous rules.
        still = [c for key in failed if key in self.services for c in self.services[key].chains]
        self.remove_base(base_for([*self.chain_users, *still], self.node, self.peers))
        self.forget_stale_flows(touched)
        self.raise_conflicts(failed)

    def forget_stale_flows(self, keys: Iterable[str]) -> None:
        """For each of `keys` whose rules the kernel now holds as desired (or holds none
        of), forget the UDP flows the previously committed version allowed and this one
        does not. A refused service keeps its old rules, so its flows stay until it
        commits."""
        stale: list[Flow] = []
        for key in sorted(keys):
            serving = self.services.get(key)
            if serving is not None and serving != self.desired.get(key):
                continue
            before = self.committed.pop(key, None)
            after = self.rendered[key][0] if serving is not None else None
            stale += stale_flows(before, after, self.node.node_name)
            if after is not None:
                self.committed[key] = after
        assert self.conntrack is not None
        self.conntrack.forget(stale)

    def change(self, pairs: Sequence[Change]) -> str | None:
        """Apply `pairs` in one transaction and record them; nft's error if refused."""
        deletions, additions = element_changes(pairs, self.users)
        error = self.commit(element_transaction(self.base, deletions, additions, self.elements))
        if error is not None:
            return error
        for old, new in pairs:
            if old is not None:
                self.users.subtract(old.elements)
                del self.services[old.key]
            if new is not None:
                self.users.update(new.elements)
                self.services[new.key] = new
        for element in {e for old, _ in pairs if old is not None for e in old.elements}:
            if self.users[element] <= 0:
                del self.users[element]
        return None

    def commit(self, transaction: str | Batch | DeferredBatch) -> str | None:
        if isinstance(transaction, str):
            return self.nft.transaction(transaction)
        assert self.elements is not None
        batch = transaction if isinstance(transaction, Batch) else transaction()
        return self.elements.commit(batch)

    def add_base(self, base: tuple[NftObject, ...]) -> None:
        """Create the shared objects that are new before any element refers to them."""
        old = {(o.family, o.name): o for o in self.base}
        new = [o for o in base if old.get((o.family, o.name)) != o]
        flush = "".join(
            f"flush chain {o.family} {TABLE} {o.name}\n"
            for o in new
            if o.kind == "chain" and (o.family, o.name) in old
        )
        if new:
            self.commit_base(flush + declare(new, {}))
        self.base = tuple({(o.family, o.name): o for o in (*self.base, *base)}.values())

    def remove_base(self, base: tuple[NftObject, ...]) -> None:
        """Delete the shared objects no service needs any more."""
        keep = {(o.family, o.name) for o in base}
        stale = [o for o in self.base if (o.family, o.name) not in keep]
        if not stale:
            return
        families_left = {o.family for o in base}
        script = "".join(
            f"delete table {family} {TABLE}\n"
            for family in FAMILIES
            if family not in families_left and any(o.family == family for o in stale)
        )
        script += delete([o for o in stale if o.family in families_left])
        self.commit_base(script)
        self.base = base

    def commit_base(self, script: str) -> None:
        error = self.nft.transaction(script)
        if error is not None:
            raise ApplyError([], error)

    def refused_services(self, desired: Ruleset) -> list[str]:
        """Which services make nft refuse the ruleset, each checked alone with `nft -c`."""
        refused = []
        for rules in desired.services:
            alone = Ruleset(base=base_for(rules.chains, self.node, self.peers), services=(rules,))
            if self.nft.transaction(replace_tables(alone), check_only=True) is not None:
                refused.append(rules.key)
        return refused

    def element_counters(self) -> dict[tuple[str, str], Counter]:
        """Packets and bytes per `VIP . protocol . port`, keyed by (set, key)."""
        found = {}
        for name in SERVICE_SETS:
            for item in self.nft.list_json("set", "inet", TABLE, name):
                listed = item.get("set")
                if isinstance(listed, dict):
                    for key, counter in counted_elements(listed.get("elem", [])):
                        found[(name, key)] = counter
        return found

    def counters(self) -> dict[str, Counter]:
        """Packets and bytes per service key, as counted since the service was created."""
        values = self.element_counters()
        result = {}
        for rules in sorted_rules(self.services):
            mine = [values.get((e.container, e.key)) for e in rules.elements if e.family == "inet"]
            counted = [c for c in mine if c is not None]
            result[rules.key] = Counter(
                sum(c.packets for c in counted), sum(c.bytes for c in counted)
            )
        return result


def service_key(change: Change) -> str:
    rules = change[1] or change[0]
    assert rules is not None
    return rules.key


def counted_elements(elements: object) -> Iterator[tuple[str, Counter]]:
    """`(key, counter)` of each element in a `nft -j` set listing; keys as render writes
    them (`203.0.113.10 . tcp . 80`)."""
    for item in elements if isinstance(elements, list) else ():
        elem = item.get("elem") if isinstance(item, dict) else None
        if not isinstance(elem, dict) or not isinstance(elem.get("counter"), dict):
            continue
        value = elem["val"]
        parts = value["concat"] if isinstance(value, dict) else [value]
        counter = elem["counter"]
        yield " . ".join(str(p) for p in parts), Counter(counter["packets"], counter["bytes"])


def sorted_rules(services: Mapping[str, ServiceRules]) -> list[ServiceRules]:
    return [services[key] for key in sorted(services)]


RESETS = "".join(f"table {f} {TABLE} {{}}\ndelete table {f} {TABLE}\n" for f in FAMILIES)


def replace_tables(ruleset: Ruleset) -> str:
    # `table X {}` first, so the delete succeeds whether or not the table exists.
    return RESETS + declare(ruleset.base, ruleset.element_texts())


def resync_scripts(
    ruleset: Ruleset, counters: Mapping[tuple[str, str], Counter], chunk: int
) -> list[str]:
    """The transactions of a resync, counters kept: one when the ruleset has at most
    `chunk` elements, else a sequence that never sends a new flow to a missing slot.

    The first transaction replaces the tables with everything but the Maglev slots and the
    entry maps, and marks every served key unserved, so new flows are refused (not
    blackholed) while the slots follow, `chunk` at a time; the last one clears the marks
    and fills the entry maps. Established flows keep their conntrack NAT binding
    throughout.
    """
    counted = {
        ("inet", *where): f" counter packets {c.packets} bytes {c.bytes}"
        for where, c in counters.items()
    }
    texts = ruleset.element_texts(counted)
    if sum(len(t) for t in texts.values()) <= chunk:
        return [RESETS + declare(ruleset.base, texts)]
    slot_maps = {(s.family, s.container) for r in ruleset.services for s in r.slots}
    entries = [
        e for r in ruleset.services for e in r.elements if (e.family, e.container) in ENTRY_MAPS
    ]
    held = [
        Element(e.family, f"unserved-{e.container[-2:]}", e.key)
        for e in entries
        if e.family == "inet"
    ]
    first = {w: t for w, t in texts.items() if w not in slot_maps | ENTRY_MAPS}
    for e in held:
        first.setdefault((e.family, e.container), []).append(e.key)
    scripts = [RESETS + declare(ruleset.base, first)]
    slots = [(where, text) for where in sorted(slot_maps) for text in texts[where]]
    for i in range(0, len(slots), chunk):
        part: dict[tuple[str, str], list[str]] = {}
        for where, text in slots[i : i + chunk]:
            part.setdefault(where, []).append(text)
        scripts.append(element_script("add", part))
    scripts.append(remove_elements(held) + add_elements(entries))
    return scripts


def resync_steps(
    ruleset: Ruleset, counters: Mapping[tuple[str, str], Counter], chunk: int
) -> list[str | DeferredBatch]:
    """`resync_scripts` with the elements as netlink batches of `chunk` elements between
    its first transaction (declarations, the services' counted keys, every served key
    unserved) and its last (marks cleared, the entry maps): the same order, so no new
    flow meets a missing element. Elements with counters stay text (the values kept)."""
    known = layouts(ruleset.base)

    def bulk(e: Element) -> bool:
        where = (e.family, e.container)
        return where in known and where not in TEXT_ELEMENTS and where not in ENTRY_MAPS

    slots = [s for r in ruleset.services for s in r.slots]
    elements = list(dict.fromkeys(e for r in ruleset.services for e in r.elements if bulk(e)))
    if not slots and not elements:
        return list(resync_scripts(ruleset, counters, chunk))
    frame = Ruleset(
        ruleset.base,
        tuple(
            replace(r, slots=(), elements=tuple(e for e in r.elements if not bulk(e)))
            for r in ruleset.services
        ),
    )
    # A chunk of 1 forces the split form; the frame has only the text elements, so it
    # is [first, last].
    scripts = resync_scripts(frame, counters, 1)
    if len(scripts) != 2:  # a frame of one element: nothing to gain
        return list(resync_scripts(ruleset, counters, chunk))
    first, last = scripts
    return [
        first,
        *element_batches(known, elements, chunk),
        *slot_batches(known, slots, chunk),
        last,
    ]


def element_transaction(
    base: Sequence[NftObject],
    deletions: Sequence[Element],
    additions: Sequence[Element],
    writer: NetlinkElements | None,
) -> str | Batch:
    """The deletions then additions as one netlink batch when there is a writer and it
    knows every set involved, else as nft text."""
    if writer is not None:
        try:
            # Each once, as `group` has them; a deletion is named by its key alone.
            gone = {(e.family, e.container, e.key): e for e in deletions}.values()
            return Batch(layouts(base)).delete(gone).add(dict.fromkeys(additions))
        except ValueError:
            pass  # a set the encoder does not know: nft encodes it
    return remove_elements(deletions) + add_elements(additions)


def element_changes(
    pairs: Sequence[Change],
    users: Mapping[Element, int],
) -> tuple[list[Element], list[Element]]:
    """The element deletions and additions turning each `old` into its `new`.

    Elements that other services also list (a shared VIP) are counted rather than compared,
    so they go with their last user and come with their first. Slots are compared position
    by position: a moved slot is deleted and added again (nft has no replace), in one
    transaction, so no packet sees it missing.
    """
    delta: collections.Counter[Element] = collections.Counter()
    deletions: list[Element] = []
    additions: list[Element] = []
    for old, new in pairs:
        delta.subtract(old.elements if old else ())
        delta.update(new.elements if new else ())
        old_slots = {(s.family, s.container, s.prefix): s for s in old.slots} if old else {}
        new_slots = {(s.family, s.container, s.prefix): s for s in new.slots} if new else {}
        for where, before in old_slots.items():
            after = new_slots.get(where)
            if after is None or len(after.values) != len(before.values):
                deletions += before.elements(range(len(before.values)))
                continue
            moved = [
                i
                for i, (a, b) in enumerate(zip(before.values, after.values, strict=True))
                if a != b
            ]
            deletions += before.elements(moved)
            additions += after.elements(moved)
        for where, after in new_slots.items():
            previous = old_slots.get(where)
            if previous is None or len(after.values) != len(previous.values):
                additions += after.elements(range(len(after.values)))
    for element, change in delta.items():
        if change < 0 and users.get(element, 0) + change <= 0:
            deletions.append(element)
        elif change > 0 and users.get(element, 0) <= 0:
            additions.append(element)
    return deletions, additions


def delete(objects: Sequence[NftObject]) -> str:
    # Referrers first: chains use maps and sets, owner maps jump to node chains.
    ordered = sorted(objects, key=lambda o: (o.rank is not Rank.NODE_CHAIN, o.rank), reverse=True)
    return "".join(f"delete {o.kind} {o.family} {TABLE} {o.name}\n" for o in ordered)


def remove_elements(elements: Sequence[Element]) -> str:
    # Only the key names an element to delete.
    return element_script("delete", group(replace(e, value="") for e in elements))


def add_elements(elements: Sequence[Element]) -> str:
    return element_script("add", group(elements))


def group(elements: Iterable[Element]) -> dict[tuple[str, str], list[str]]:
    """Element texts per (family, container), in order, each once."""
    grouped: dict[tuple[str, str], dict[str, None]] = {}
    for e in elements:
        grouped.setdefault((e.family, e.container), {})[e.text()] = None
    return {where: list(texts) for where, texts in grouped.items()}


def element_script(verb: str, texts: Mapping[tuple[str, str], Sequence[str]]) -> str:
    return "".join(
        f"{verb} element {family} {TABLE} {container} {{ {', '.join(found)} }}\n"
        for (family, container), found in sorted(texts.items())
        if found
    )
