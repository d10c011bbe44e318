"""The flow events the web view has seen: the last ones (for the table and a Service's
last flows) and the counts and rates of the map's edges.

The map's edges follow a request: client -> router -> the node it entered (the node that
logged it) -> Service -> pod. Only request events are counted (a reply is the same
connection's other half); rates are over the last `window` seconds. Pure: time is passed in.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from typing import Any

from herald.observe.event import REQUEST, FlowEvent
from herald.observe.filter import FlowFilter

ANY = "*"  # an edge end that is every router (which router a client used is not logged)
CLIENTS_SHOWN = 12
OTHER_CLIENTS = "other clients"

Edge = tuple[str, str, str, str]  # kind, from, to, verdict


def edges_of(event: FlowEvent) -> tuple[Edge, ...]:
    if event.direction != REQUEST:
        return ()
    verdict = event.verdict
    service = event.service or f"{event.vip}:{event.vip_port}"
    found: list[Edge] = [
        ("client", event.client, ANY, verdict),
        ("router", ANY, event.node, verdict),
        ("node", event.node, service, verdict),
    ]
    if event.pod or event.backend:
        found.append(("pod", service, event.pod or event.backend, verdict))
    return tuple(found)


class FlowStats:
    def __init__(self, keep: int = 2000, window: float = 10.0) -> None:
        self.window = window
        self.events: deque[FlowEvent] = deque(maxlen=keep)
        self.counts: Counter[Edge] = Counter()
        self.total = 0
        self._recent: deque[tuple[float, tuple[Edge, ...]]] = deque()

    def add(self, event: FlowEvent) -> None:
        self.events.append(event)
        self.total += 1
        edges = edges_of(event)
        self.counts.update(edges)
        if edges:
            self._recent.append((event.time, edges))

    def rates(self, now: float) -> Counter[Edge]:
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()
        counted: Counter[Edge] = Counter()
        for _, edges in self._recent:
            counted.update(edges)
        return counted

    def snapshot(self, now: float) -> dict[str, Any]:
        """Every edge with its count and rate; clients beyond the busiest few are one
        `other clients` node, so that a scan does not draw thousands of boxes."""
        recent = self.rates(now)
        clients = Counter[str]()
        for (kind, source, _, _), n in self.counts.items():
            if kind == "client":
                clients[source] += n
        shown = {c for c, _ in clients.most_common(CLIENTS_SHOWN)}
        merged: dict[Edge, list[float]] = {}
        for edge, n in self.counts.items():
            kind, source, target, verdict = edge
            if kind == "client" and source not in shown:
                source = OTHER_CLIENTS
            entry = merged.setdefault((kind, source, target, verdict), [0, 0.0])
            entry[0] += n
            entry[1] += recent.get(edge, 0) / self.window
        return {
            "total": self.total,
            "window": self.window,
            "edges": [
                {
                    "kind": kind,
                    "from": source,
                    "to": target,
                    "verdict": verdict,
                    "count": int(values[0]),
                    "rate": round(values[1], 3),
                }
                for (kind, source, target, verdict), values in sorted(merged.items())
            ],
        }

    def last(self, flow_filter: FlowFilter, count: int) -> list[FlowEvent]:
        found = [e for e in self.events if flow_filter.matches(e)]
        return found[max(0, len(found) - count) :]


def filter_from_query(query: Mapping[str, Any], getall: Any = None) -> FlowFilter:
    """A `FlowFilter` from the page's query string, with `herald observe`'s option names
    (`service`, `pod`, `node`, `ip`, `port`, `verdict`, `protocol`, `namespace`); empty
    values are no criterion. `getall(name)` lists every value of a repeated parameter."""

    def values(name: str) -> tuple[str, ...]:
        raw: Iterable[str] = getall(name, []) if getall is not None else [query.get(name, "")]
        return tuple(v.strip() for part in raw for v in str(part).split(",") if v.strip())

    ports = []
    for text in values("port"):
        if not text.isdigit() or int(text) > 65535:
            raise ValueError(f"port: {text!r} is not a port number")
        ports.append(int(text))
    return FlowFilter(
        namespaces=values("namespace"),
        services=values("service"),
        pods=values("pod"),
        nodes=values("node"),
        ips=values("ip"),
        ports=tuple(ports),
        verdicts=tuple(v.upper() for v in values("verdict")),
        protocols=tuple(p.upper() for p in values("protocol")),
    )
