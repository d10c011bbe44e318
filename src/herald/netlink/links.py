"""The node's interfaces and the networks of their addresses, read over netlink."""

from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute

from herald.dataplane.model import IPNetwork


def interface_networks() -> dict[str, tuple[IPNetwork, ...]]:
    """{interface name: networks of its addresses}, every interface of this namespace (also
    those without an address: an L2 policy may name them by pattern)."""
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        networks: dict[str, list[IPNetwork]] = {name: [] for name in names.values()}
        for addr in ipr.get_addr():
            name = names.get(addr["index"])
            # IFA_LOCAL is the address itself on point-to-point links, where IFA_ADDRESS is
            # the peer's; elsewhere only IFA_ADDRESS may be present.
            address = addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS")
            if name is None or address is None:
                continue
            interface = ipaddress.ip_interface(f"{address}/{addr['prefixlen']}")
            networks[name].append(interface.network)
    return {name: tuple(nets) for name, nets in sorted(networks.items())}
