"""A flow event as one compact line in Hubble's style, or as one JSON object.

    Dec  2 21:06:41.382 k8s-worker1: 198.51.100.10:36946 -> default/web1-4:8080
      (on k8s-worker5) via 203.0.113.0:80 FORWARDED to-node (TCP Flags: SYN)

(one line). A reply reads `client <- backend`; a dropped packet has no backend and names
the Service instead: `client -> VIP (default/web1-lb) DROPPED no-usable-backend`.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo

from herald.observe.event import REPLY, FlowEvent


def endpoint(address: str, port: int | None) -> str:
    host = f"[{address}]" if ":" in address else address
    return host if port is None else f"{host}:{port}"


def timestamp(seconds: float, zone: tzinfo | None = None) -> str:
    moment = datetime.fromtimestamp(seconds, zone) if zone else datetime.fromtimestamp(seconds)
    return f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S}.{moment.microsecond // 1000:03d}"


def line(event: FlowEvent, zone: tzinfo | None = None) -> str:
    client = endpoint(event.client, event.client_port)
    vip = endpoint(event.vip, event.vip_port)
    if event.backend:
        name = event.pod or event.backend
        backend = (
            endpoint(name, event.backend_port)
            if event.pod
            else endpoint(event.backend, event.backend_port)
        )
        if event.backend_node:
            backend += f" (on {event.backend_node})"
        arrow = "<-" if event.direction == REPLY else "->"
        path = f"{client} {arrow} {backend}" + (f" via {vip}" if event.vip else "")
    else:
        arrow = "<-" if event.direction == REPLY else "->"
        path = f"{client} {arrow} {vip}" + (f" ({event.service})" if event.service else "")
    if event.protocol == "TCP":
        detail = f"TCP Flags: {', '.join(event.tcp_flags) or 'none'}"
    else:
        detail = event.protocol
    verdict = f"{event.verdict} {event.reason}".rstrip()
    return f"{timestamp(event.time, zone)} {event.node}: {path} {verdict} ({detail})"


def json_line(event: FlowEvent) -> str:
    return json.dumps(event.to_json(), separators=(",", ":"))
