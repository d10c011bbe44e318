"""Named datapath inputs, one per feature, rendered into the golden files."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from herald.dataplane.model import (
    Backend,
    DataplaneService,
    ForwardingMode,
    NodeContext,
    Protocol,
    ServicePort,
    SessionAffinity,
    TrafficPolicy,
)

NODE = NodeContext(
    node_name="n1",
    hash_seed=0x5EED,
    node_addresses=(
        ("n1", ip_address("192.0.2.21")),
        ("n2", ip_address("192.0.2.22")),
        ("n1", ip_address("2001:db8:2::21")),
        ("n2", ip_address("2001:db8:2::22")),
    ),
    interface="eth0",
)
HTTP = ServicePort("http", Protocol.TCP, 80, 8080)


def pods(*specs: tuple[str, str]) -> tuple[Backend, ...]:
    return tuple(Backend(ip_address(address), node) for address, node in specs)


THREE = pods(("198.18.1.2", "n1"), ("198.18.1.3", "n1"), ("198.18.2.2", "n2"))


def web(**changes: object) -> DataplaneService:
    fields: dict[str, object] = {
        "key": "default/web",
        "vips": (ip_address("203.0.113.10"),),
        "ports": (HTTP,),
        "backends": THREE,
    }
    fields.update(changes)
    return DataplaneService(**fields)  # type: ignore[arg-type]


SCENARIOS: dict[str, list[DataplaneService]] = {
    "snat": [web()],
    "local_policy": [web(external_traffic_policy=TrafficPolicy.LOCAL)],
    "client_ip_affinity": [web(session_affinity=SessionAffinity.CLIENT_IP)],
    "source_ranges": [
        web(
            vips=(ip_address("203.0.113.10"), ip_address("2001:db8:113::10")),
            source_ranges=(
                ip_network("198.51.100.0/25"),
                ip_network("198.51.100.0/26"),
                ip_network("198.51.100.128/26"),
            ),
        )
    ],
    "no_backends": [web(backends=())],
    "terminating_only": [
        web(
            backends=(
                Backend(ip_address("198.18.1.2"), "n1", ready=False, terminating=True),
                Backend(
                    ip_address("198.18.1.3"), "n1", ready=False, serving=False, terminating=True
                ),
            )
        )
    ],
    "dual_stack_udp_sctp": [
        DataplaneService(
            key="dns/resolver",
            vips=(ip_address("203.0.113.53"), ip_address("2001:db8:113::53")),
            ports=(
                ServicePort("dns", Protocol.UDP, 53, 5353),
                ServicePort("dns-tcp", Protocol.TCP, 53, 5353),
                ServicePort("sig", Protocol.SCTP, 3868, 3868),
            ),
            backends=pods(
                ("198.18.1.5", "n1"), ("2001:db8:18:1::5", "n1"), ("2001:db8:18:2::5", "n2")
            ),
            maglev_size=251,
        )
    ],
    "weighted": [
        web(
            backends=(
                Backend(ip_address("198.18.1.2"), "n1", weight=3),
                Backend(ip_address("198.18.2.2"), "n2", weight=1),
            )
        )
    ],
    "dsr": [web(forwarding_mode=ForwardingMode.DSR)],
    "local_dsr": [
        web(forwarding_mode=ForwardingMode.DSR, external_traffic_policy=TrafficPolicy.LOCAL)
    ],
    "shared_vip": [
        web(),
        DataplaneService(
            key="default/mail",
            vips=(ip_address("203.0.113.10"),),
            ports=(ServicePort("smtp", Protocol.TCP, 25, 2525),),
            backends=pods(("198.18.2.3", "n2")),
            external_traffic_policy=TrafficPolicy.LOCAL,
        ),
    ],
}
