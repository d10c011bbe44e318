"""Which flow events `herald observe` shows: every given criterion must hold (as Hubble's
flags combine). A criterion with several values holds when any value does."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from herald.observe.event import FlowEvent

VERDICTS = ("FORWARDED", "DROPPED")


@dataclass(frozen=True)
class FlowFilter:
    namespaces: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # "name" or "namespace/name"
    pods: tuple[str, ...] = ()  # "name" or "namespace/name"
    nodes: tuple[str, ...] = ()  # the node that logged the event
    ips: tuple[str, ...] = ()  # client, VIP or backend
    ports: tuple[int, ...] = ()  # client, VIP or backend port
    verdicts: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    since: float | None = None  # wall-clock seconds

    def matches(self, event: FlowEvent) -> bool:
        return (
            (not self.namespaces or bool(event.namespaces & set(self.namespaces)))
            and (not self.services or any(named(event.service, s) for s in self.services))
            and (not self.pods or any(named(event.pod, p) for p in self.pods))
            and (not self.nodes or event.node in self.nodes)
            and (not self.ips or bool({event.client, event.vip, event.backend} & set(self.ips)))
            and (
                not self.ports
                or bool({event.client_port, event.vip_port, event.backend_port} & set(self.ports))
            )
            and (not self.verdicts or event.verdict in {v.upper() for v in self.verdicts})
            and (not self.protocols or event.protocol in {p.upper() for p in self.protocols})
            and (self.since is None or event.time >= self.since)
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowFilter:
        fields = cls.__dataclass_fields__
        known: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields
        }
        return cls(**known)


def named(key: str, wanted: str) -> bool:
    """`wanted` names `key` ("namespace/name") by its full key or by its name alone."""
    return bool(key) and (key == wanted or ("/" not in wanted and key.split("/", 1)[1] == wanted))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: float) -> float:
    """`--since`: a duration before `now` (`90s`, `5m`, `1h`) or an ISO 8601 time
    (`2026-12-02T21:06:41Z`; without a zone, local time)."""
    found = _DURATION.match(text.strip())
    if found:
        return now - float(found.group(1)) * _UNITS[found.group(2)]
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration (90s, 5m, 1h, 2d) or a time (2026-12-02T21:06:41Z)"
        ) from None
