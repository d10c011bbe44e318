"""Label selectors as the import reads, combines and writes them, and the labels it invents.

herald selects Services, nodes and BGPAdvertisements by label, where MetalLB selects address
pools and BGP peers by name; the import bridges the two with two labels of its own, named
here and in docs/migration.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from herald.importers.fields import Fields

# Services that get their address from (or are announced for) a pool herald cannot select by
# pool: `herald.io/pool: <pool name>` on the Service (docs/migration.md, "Pools by label").
POOL_LABEL = "herald.io/pool"
# Written on each BGPAdvertisement the import makes, so that a BGPPeerConfig's families can
# select exactly the advertisements its source peer was given.
ADVERTISEMENT_LABEL = "herald.io/advertisement"

Selector = dict[str, Any]


def read_selector(
    fields: Fields | None,
    labels_key: str = "matchLabels",
    expressions_key: str = "matchExpressions",
) -> Selector | None:
    """A Kubernetes label selector as herald writes it; None when there is none (an empty
    one, `{}`, stays: it selects everything)."""
    if fields is None:
        return None
    selector: Selector = {}
    labels = fields.text_map(labels_key)
    if labels:
        selector["matchLabels"] = labels
    expressions = []
    for requirement in fields.subs(expressions_key):
        expression: dict[str, Any] = {
            "key": requirement.text("key"),
            "operator": requirement.text("operator"),
        }
        values = requirement.texts("values")
        if values:
            expression["values"] = values
        expressions.append(expression)
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def both(*selectors: Selector | None) -> Selector | None:
    """What all of `selectors` select (None selects everything). A key two of them require
    with different values is kept as two requirements, which nothing satisfies, as in the
    sources."""
    present = [selector for selector in selectors if selector is not None]
    if not present:
        return None
    labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for selector in present:
        for key, value in selector.get("matchLabels", {}).items():
            if key in labels and labels[key] != value:
                expressions.append({"key": key, "operator": "In", "values": [value]})
            else:
                labels[key] = value
        expressions.extend(selector.get("matchExpressions", []))
    merged: Selector = {}
    if labels:
        merged["matchLabels"] = labels
    if expressions:
        merged["matchExpressions"] = expressions
    return merged


def one_of(key: str, values: Iterable[str]) -> Selector:
    """Selects objects whose label `key` has one of `values`."""
    return {"matchExpressions": [{"key": key, "operator": "In", "values": sorted(set(values))}]}


def canonical(selector: Selector | None) -> str:
    """A text equal for equal selectors, to group objects by what they select."""
    return json.dumps(selector, sort_keys=True)


def label_value(name: str) -> str:
    """`name` as a label value (at most 63 characters of [A-Za-z0-9._-], alphanumeric at both
    ends); a longer or odder name is cut and given a short digest, so it stays unique."""
    if len(name) <= 63 and re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", name)[:54].strip("._-") or "x"
    return f"{stem}-{digest}"


def dns_name(text: str) -> str:
    """`text` (an IP address, a name) as a Kubernetes object name: lower case, [a-z0-9-.]."""
    name = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    return name or "x"
