"""What Cilium's and MetalLB's BGP advertisements attach to routes, as herald writes it:
communities, LOCAL_PREF and route aggregation.
"""

from __future__ import annotations

from typing import Any

from herald.api.bgp import WELL_KNOWN_COMMUNITIES, parse_large_community
from herald.importers.build import Draft

# Whether herald's advertisement entries aggregate (`aggregationLength`, src/herald/api/bgp.py):
# without, an aggregation is reported as not converted. The one switch for it;
# tests/unit/importers/test_import.py::test_aggregation_follows_the_model keeps it in step.
AGGREGATION_SUPPORTED = True

# Family -> the advertisement entry's field holding its aggregation length.
AGGREGATION_FIELDS = {"ipv4": "aggregationLength", "ipv6": "aggregationLengthV6"}


def aggregate(
    entry: dict[str, Any],
    draft: Draft,
    herald_path: str,
    lengths: dict[str, tuple[int | None, str]],
) -> None:
    """Aggregation of an advertisement entry (`lengths`: family -> (prefix length or None
    for none, source path)): written into `entry` when herald has it, else reported."""
    wanted = {family: value for family, value in lengths.items() if value[0] is not None}
    if not wanted:
        return
    if AGGREGATION_SUPPORTED:
        for family, (length, path) in wanted.items():
            entry[AGGREGATION_FIELDS[family]] = length
            draft.came_from(f"{herald_path}.{AGGREGATION_FIELDS[family]}", path)
        return
    for family, (length, path) in wanted.items():
        draft.ctx.not_converted(
            path,
            f"herald does not aggregate routes yet: each Service address is announced as a "
            f"/{32 if family == 'ipv4' else 128} instead of within a /{length}; routers that "
            "filter on the aggregate need a rule for the host routes",
        )


# Cilium's well-known community names that herald knows by another name or not at all,
# with their RFC 1997 values (herald writes the latter as standard communities).
CILIUM_WELL_KNOWN = {
    "planned-shut": 0xFFFF0000,
    "route-filter-translated-v4": 0xFFFF0002,
    "route-filter-v4": 0xFFFF0003,
    "route-filter-translated-v6": 0xFFFF0004,
    "route-filter-v6": 0xFFFF0005,
}


def well_known(name: str) -> tuple[str, str] | None:
    """A well-known community name as herald writes it: ("wellKnown", name) or ("standard",
    "65535:n"); None when unknown."""
    if name in WELL_KNOWN_COMMUNITIES:
        return "wellKnown", name
    value = CILIUM_WELL_KNOWN.get(name)
    if value is None:
        return None
    for herald_name, herald_value in WELL_KNOWN_COMMUNITIES.items():
        if herald_value == value:
            return "wellKnown", herald_name
    return "standard", f"{value >> 16}:{value & 0xFFFF}"


def metallb_community(text: str) -> tuple[str, str] | None:
    """MetalLB's community forms: `a:b` (standard) and `large:a:b:c`; None otherwise."""
    if text.startswith("large:"):
        value = text.removeprefix("large:")
        try:
            parse_large_community(value)
        except ValueError:
            return None
        return "large", value
    high, sep, low = text.partition(":")
    if sep and high.isdigit() and low.isdigit():
        return "standard", text
    return None
