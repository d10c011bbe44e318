"""Puts rendered rules into the kernel with `nft -f`, one atomic transaction per change.

`Datapath.resync` replaces herald's tables whole (start-up: whatever a previous run left is
gone); `Datapath.sync` then changes only the services that differ from what it applied last,
one transaction per service, so a service nft refuses is named and leaves its previous rules
(and every other service) serving. Only `inet herald` and `netdev herald` are ever touched.
"""

from __future__ import annotations

import collections
import json
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from herald.dataplane.model import DataplaneService, NodeContext
from herald.dataplane.render import (
    HEADER,
    TABLE,
    Element,
    NftObject,
    Rank,
    Ruleset,
    ServiceRules,
    base_objects,
    render_service,
    service_prefix,
    without_conflicts,
)

FAMILIES = ("inet", "netdev")


class ApplyError(RuntimeError):
    """nft refused a change; `services` names the services whose rules were not applied."""

    def __init__(self, services: Sequence[str], detail: str) -> None:
        self.services = tuple(services)
        super().__init__(f"services {', '.join(services) or '(base)'}: nft refused: {detail}")


@dataclass(frozen=True)
class Counter:
    packets: int
    bytes: int


Runner = Callable[[Sequence[str], str], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)


@dataclass
class Nft:
    """The nft command, optionally inside a named network namespace."""

    netns: str | None = None
    runner: Runner = run_command

    def argv(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*prefix, "nft", *args]

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
    nft: Nft = field(default_factory=Nft)
    base: tuple[NftObject, ...] = ()
    services: dict[str, ServiceRules] = field(default_factory=dict)
    # Rendering is pure, so a service that did not change is never rendered again. Keyed by
    # service key and compared with `is`/`==` rather than hashed: hashing every backend
    # address on every sync would cost more than the change itself.
    rendered: dict[str, tuple[DataplaneService, ServiceRules]] = field(default_factory=dict)
    # Services left out of the last render because their VIP:port belongs to another one.
    conflicts: dict[str, str] = field(default_factory=dict)

    def render(self, services: Iterable[DataplaneService]) -> Ruleset:
        fresh = {}
        for service in services:
            seen = self.rendered.get(service.key)
            if seen is not None and (seen[0] is service or seen[0] == service):
                fresh[service.key] = seen
            else:
                fresh[service.key] = (service, render_service(service, self.node))
        self.rendered = fresh
        ordered, self.conflicts = without_conflicts(
            [rules for _, rules in fresh.values()], self.services.keys()
        )
        return Ruleset(base=base_objects(ordered, self.node), services=ordered)

    def raise_conflicts(self, failed: Mapping[str, str]) -> None:
        problems = {**self.conflicts, **failed}
        if problems:
            raise ApplyError(sorted(problems), "; ".join(problems.values()))

    def resync(self, services: Iterable[DataplaneService]) -> None:
        """Replace herald's tables with exactly `services`, keeping counter values."""
        desired = self.render(services)
        kept = keep_counters(desired, self.counters())
        error = self.nft.transaction(replace_tables(kept))
        if error is not None:
            raise ApplyError(self.refused_services(desired), error)
        self.base = desired.base
        self.services = {s.key: s for s in desired.services}
        self.raise_conflicts({})

    def sync(self, services: Iterable[DataplaneService]) -> None:
        """Bring the kernel to `services`, touching only the services that changed."""
        if not self.base:
            self.resync(services)
            return
        ruleset = self.render(services)
        desired = {s.key: s for s in ruleset.services}
        base = ruleset.base
        self.add_base(base)
        failed: dict[str, str] = {}
        users = collections.Counter(e for s in self.services.values() for e in s.elements)
        for key in sorted(desired.keys() | self.services.keys()):
            old, new = self.services.get(key), desired.get(key)
            if old == new:
                continue
            old_elements = old.elements if old else ()
            shared = {e for e in old_elements if users[e] > 1}
            error = self.nft.transaction(service_change(old, new, shared))
            if error is not None:
                failed[key] = error
                continue
            users.subtract(old_elements)
            users.update(new.elements if new else ())
            if new is None:
                del self.services[key]
            else:
                self.services[key] = new
        self.remove_base(base)
        self.raise_conflicts(failed)

    def add_base(self, base: tuple[NftObject, ...]) -> None:
        """Create the shared objects that are new before any service refers to them."""
        old = {(o.family, o.name): o for o in self.base}
        script = []
        for obj in base:
            before = old.get((obj.family, obj.name))
            if before == obj:
                continue
            if before is not None and obj.kind == "chain":
                script.append(f"flush chain {obj.family} {TABLE} {obj.name}\n")
            script.append(declare([obj]))
        if script:
            self.commit_base("".join(script))
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
            alone = Ruleset(base=desired.base, services=(rules,))
            if self.nft.transaction(replace_tables(alone), check_only=True) is not None:
                refused.append(rules.key)
        return refused

    def counters(self) -> dict[str, Counter]:
        """Packets and bytes per service key, as counted since the service was created."""
        prefix = service_prefix("")
        found = {}
        for item in self.nft.list_json("counters", "table", "inet", TABLE):
            counter = item.get("counter")
            if not isinstance(counter, dict):
                continue
            name = str(counter["name"])
            if name.startswith(prefix):
                found[name.removeprefix(prefix)] = Counter(
                    int(counter["packets"]), int(counter["bytes"])
                )
        return found


def replace_tables(ruleset: Ruleset) -> str:
    # `table X {}` first, so the delete succeeds whether or not the table exists.
    resets = "".join(f"table {f} {TABLE} {{}}\ndelete table {f} {TABLE}\n" for f in FAMILIES)
    return resets + ruleset.text().removeprefix(HEADER)


def keep_counters(ruleset: Ruleset, values: Mapping[str, Counter]) -> Ruleset:
    def keep(obj: NftObject) -> NftObject:
        value = values.get(obj.name.removeprefix(service_prefix("")))
        if obj.kind != "counter" or value is None:
            return obj
        return replace(obj, body=(f"packets {value.packets} bytes {value.bytes}",))

    services = tuple(
        replace(s, objects=tuple(keep(o) for o in s.objects)) for s in ruleset.services
    )
    return replace(ruleset, services=services)


def service_change(old: ServiceRules | None, new: ServiceRules | None, shared: set[Element]) -> str:
    """One transaction turning a service's objects from `old` into `new`.

    Objects present in both are flushed and refilled rather than deleted, so the dispatch
    elements that jump to them stay valid; the service's counter is never reset. A shared
    element (a VIP of two services, listed in `shared`) is left for the other service.
    """
    old_objects = {(o.family, o.name): o for o in old.objects} if old else {}
    new_objects = {(o.family, o.name): o for o in new.objects} if new else {}
    old_elements = set(old.elements) if old else set()
    new_elements = set(new.elements) if new else set()
    script = [remove_elements(sorted(old_elements - new_elements - shared))]
    gone = []
    for key, obj in old_objects.items():
        successor = new_objects.get(key)
        if successor is None or header(successor) != header(obj):
            gone.append(obj)
        elif obj.kind != "counter" and successor != obj:
            script.append(f"flush {obj.kind} {obj.family} {TABLE} {obj.name}\n")
    script.append(delete(gone))
    kept = {key for key, obj in old_objects.items() if obj not in gone}
    changed = [
        o
        for key, o in new_objects.items()
        if key not in kept or (o != old_objects[key] and o.kind != "counter")
    ]
    script.append(declare(changed))
    script.append(add_elements(sorted(new_elements - old_elements)))
    return "".join(script)


def header(obj: NftObject) -> tuple[str, ...]:
    """What cannot change without recreating the object: a map's or set's type and flags."""
    return () if obj.kind in ("chain", "counter") else obj.body


def declare(objects: Sequence[NftObject]) -> str:
    blocks = []
    for family in FAMILIES:
        mine = sorted((o for o in objects if o.family == family), key=lambda o: (o.rank, o.name))
        if mine:
            body = "".join(o.declaration() for o in mine)
            blocks.append(f"table {family} {TABLE} {{\n{body}}}\n")
    return "".join(blocks)


def delete(objects: Sequence[NftObject]) -> str:
    # Referrers first: chains use maps and sets, owner maps jump to node chains.
    ordered = sorted(objects, key=lambda o: (o.rank is not Rank.NODE_CHAIN, o.rank), reverse=True)
    return "".join(f"delete {o.kind} {o.family} {TABLE} {o.name}\n" for o in ordered)


def remove_elements(elements: Sequence[Element]) -> str:
    return _elements("delete", elements)


def add_elements(elements: Sequence[Element]) -> str:
    return _elements("add", elements)


def _elements(verb: str, elements: Sequence[Element]) -> str:
    lines = []
    for family, container in sorted({(e.family, e.container) for e in elements}):
        # Only the key names an element to delete; the verdict part is dropped.
        texts = [
            e.text.split(" : ")[0] if verb == "delete" else e.text
            for e in elements
            if (e.family, e.container) == (family, container)
        ]
        lines.append(f"{verb} element {family} {TABLE} {container} {{ {', '.join(texts)} }}\n")
    return "".join(lines)
