"""The IP address and network types every part of herald shares, and their one order
(family first, then the address bytes: how every listing and every table sorts them)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def address_order(address: IPAddress) -> tuple[int, bytes]:
    return address.version, address.packed


def network_order(network: IPNetwork) -> tuple[int, bytes, int]:
    return network.version, network.network_address.packed, network.prefixlen
