"""A flow event: one packet herald forwarded or dropped, as `herald observe` shows it.

`to_event` (pure) turns a decoded NFLOG packet into a `FlowEvent` with what the agent knows:
the conntrack entry gives the client, the VIP and the backend the DNAT chose (the reply
tuple's source); the node's plan (`Directory`) names the Service behind the VIP and the pod
and node behind the backend address (the EndpointSlice's targetRef and nodeName).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from herald.dataplane.model import DataplaneService, ForwardingMode, TrafficPolicy
from herald.observe import rules
from herald.observe.nflog import PROTOCOLS, LoggedPacket

REQUEST, REPLY = "request", "reply"
TO_ENDPOINT, TO_NODE, DSR, TO_UNKNOWN = "to-endpoint", "to-node", "dsr", "to-unknown-backend"


@dataclass(frozen=True)
class FlowEvent:
    time: float  # wall-clock seconds
    node: str
    direction: str  # REQUEST: client to backend; REPLY: backend to client
    protocol: str  # "TCP", "UDP", ...
    client: str
    client_port: int | None
    vip: str
    vip_port: int | None
    verdict: str  # "FORWARDED" or "DROPPED"
    reason: str
    service: str = ""  # "namespace/name" of the Service behind the VIP and port
    backend: str = ""  # the pod's address, after DNAT
    backend_port: int | None = None
    pod: str = ""  # "namespace/name"
    backend_node: str = ""
    tcp_flags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["tcp_flags"] = list(self.tcp_flags)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> FlowEvent:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["tcp_flags"] = tuple(known.get("tcp_flags") or ())  # type: ignore[arg-type]
        return cls(**known)  # type: ignore[arg-type]

    @property
    def namespaces(self) -> frozenset[str]:
        return frozenset(k.split("/", 1)[0] for k in (self.service, self.pod) if k)


@dataclass(frozen=True)
class BackendInfo:
    pod: str
    node: str


@dataclass(frozen=True)
class ServiceInfo:
    key: str
    dsr: bool


@dataclass(frozen=True)
class Directory:
    """What the node's plan says about addresses: the Service of each `VIP, protocol,
    port` and the pod and node of each backend address."""

    services: Mapping[tuple[str, str, int], ServiceInfo] = field(default_factory=dict)
    backends: Mapping[str, BackendInfo] = field(default_factory=dict)

    @classmethod
    def of(cls, services: Iterable[DataplaneService]) -> Directory:
        found: dict[tuple[str, str, int], ServiceInfo] = {}
        backends: dict[str, BackendInfo] = {}
        for service in services:
            dsr = (
                service.forwarding_mode is ForwardingMode.DSR
                and service.external_traffic_policy is TrafficPolicy.CLUSTER
            )
            for vip in service.vips:
                for port in service.ports:
                    key = (str(vip), port.protocol.value.upper(), port.port)
                    found[key] = ServiceInfo(service.key, dsr)
            for backend in service.backends:
                backends[str(backend.address)] = BackendInfo(backend.pod, backend.node)
        return cls(found, backends)


def to_event(packet: LoggedPacket, node: str, directory: Directory, now: float) -> FlowEvent:
    """The event of one logged packet; `now` stands in when the kernel gave no timestamp."""
    verdict = rules.parse_prefix(packet.prefix) or rules.Verdict("UNKNOWN", packet.prefix)
    protocol = PROTOCOLS.get(packet.protocol, str(packet.protocol))
    original, reply = packet.original, packet.reply
    replying = verdict.reply or packet.reply_direction
    if original is not None:
        client, client_port = str(original.source), original.source_port
        vip, vip_port = str(original.destination), original.destination_port
    elif replying:
        # Without the conntrack entry a reply names only the backend; its destination
        # may be the node's masquerade address rather than the client.
        client, client_port = str(packet.destination), packet.destination_port
        vip, vip_port = "", None
    else:
        client, client_port = str(packet.source), packet.source_port
        vip, vip_port = str(packet.destination), packet.destination_port
    backend, backend_port = "", None
    translated = reply is not None and (str(reply.source), reply.source_port) != (vip, vip_port)
    if verdict.verdict == "FORWARDED" and reply is not None and translated:
        backend, backend_port = str(reply.source), reply.source_port
    elif verdict.verdict == "FORWARDED" and original is None and replying:
        backend, backend_port = str(packet.source), packet.source_port
    service = directory.services.get((vip, protocol, vip_port or 0))
    found = directory.backends.get(backend)
    reason = verdict.reason
    if verdict.verdict == "FORWARDED":
        if service is not None and service.dsr:
            reason = DSR
        elif found is None:
            reason = TO_UNKNOWN
        else:
            reason = TO_ENDPOINT if found.node == node else TO_NODE
    return FlowEvent(
        time=packet.timestamp if packet.timestamp is not None else now,
        node=node,
        direction=REPLY if replying else REQUEST,
        protocol=protocol,
        client=client,
        client_port=client_port,
        vip=vip,
        vip_port=vip_port,
        verdict=verdict.verdict,
        reason=reason,
        service=service.key if service else "",
        backend=backend,
        backend_port=backend_port,
        pod=found.pod if found else "",
        backend_node=found.node if found else "",
        tcp_flags=packet.tcp_flags,
    )
