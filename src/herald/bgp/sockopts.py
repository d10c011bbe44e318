"""Socket options of a BGP transport: TCP-MD5 (RFC 2385), TTL for eBGP multihop, GTSM (RFC 5082).

Linux only. The option values are built here as bytes so that their layout can be checked
without a socket; `apply_*` set them. TCP-MD5 must be on a socket before the handshake:
on a connecting socket before `connect`, on a listening socket (one key per peer) before
the peer's SYN arrives.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from ipaddress import IPv4Address, IPv6Address

from herald.addresses import IPAddress

TCP_MD5SIG = 14  # linux/tcp.h
TCP_MD5SIG_MAXKEYLEN = 80
IP_MINTTL = 21  # linux/in.h; not exported by Python's socket module
IPV6_MINHOPCOUNT = 73  # linux/in6.h
MAX_TTL = 255
_SOCKADDR_STORAGE = 128


def _sockaddr(address: IPAddress, socket_family: int) -> bytes:
    """A struct sockaddr_storage for `address` as seen by a socket of `socket_family`.

    An IPv6 socket (a dual-stack listener) names an IPv4 peer by its IPv4-mapped address;
    the kernel then files the key under the IPv4 address.
    """
    if socket_family == socket.AF_INET6:
        if isinstance(address, IPv4Address):
            address = IPv6Address(f"::ffff:{address}")
        raw = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, address.packed, 0)
    else:
        if not isinstance(address, IPv4Address):
            raise ValueError(f"an IPv4 socket cannot carry an MD5 key for {address}")
        raw = struct.pack("=HH4s", socket.AF_INET, 0, address.packed)
    return raw.ljust(_SOCKADDR_STORAGE, b"\0")


def md5sig(address: IPAddress, password: str | None, socket_family: int) -> bytes:
    """struct tcp_md5sig: address, flags, prefix length, key length, ifindex, key.

    An empty key removes the peer's key (how a removed peer stops being accepted).
    """
    key = (password or "").encode()
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"TCP-MD5 password longer than {TCP_MD5SIG_MAXKEYLEN} octets")
    head = struct.pack("=BBHi", 0, 0, len(key), 0)
    return _sockaddr(address, socket_family) + head + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")


def apply_md5(sock: socket.socket, address: IPAddress, password: str | None) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, md5sig(address, password, sock.family))


def minimum_ttl(hops: int) -> int:
    """GTSM: a peer `hops` routers away sends with TTL 255 and arrives with 256 - hops.

    `hops` counts as FRR's `ttl-security hops`: 1 is a directly connected peer.
    """
    if not 1 <= hops <= MAX_TTL:
        raise ValueError(f"GTSM hops {hops} outside 1..255")
    return MAX_TTL + 1 - hops


def apply_ttl(sock: socket.socket, ttl: int | None = None, gtsm_hops: int | None = None) -> None:
    """Outgoing TTL (eBGP multihop, or 255 under GTSM) and, under GTSM, the minimum accepted."""
    v6 = sock.family == socket.AF_INET6
    level = socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP
    if gtsm_hops is not None:
        sock.setsockopt(level, socket.IPV6_UNICAST_HOPS if v6 else socket.IP_TTL, MAX_TTL)
        sock.setsockopt(level, IPV6_MINHOPCOUNT if v6 else IP_MINTTL, minimum_ttl(gtsm_hops))
        if v6:
            # A dual-stack socket may carry IPv4: its IPv4 options apply then.
            for option, value in ((socket.IP_TTL, MAX_TTL), (IP_MINTTL, minimum_ttl(gtsm_hops))):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IP, option, value)
    elif ttl is not None:
        sock.setsockopt(level, socket.IPV6_UNICAST_HOPS if v6 else socket.IP_TTL, ttl)
        if v6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
