"""The BGP listening socket: accepts connections and hands each to its peer's session.

Connections from addresses that are not configured peers are closed at once. TCP-MD5 keys
live on the listening socket, one per peer, so that the kernel completes the handshake
only with a correctly signed SYN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from ipaddress import IPv6Address, ip_address

from herald.addresses import IPAddress
from herald.bgp.session import Session, normalise_address
from herald.bgp.sockopts import MAX_TTL, apply_md5, apply_ttl

log = logging.getLogger(__name__)


class Listener:
    def __init__(
        self, address: str, port: int, find_session: Callable[[IPAddress], Session | None]
    ) -> None:
        self.address = address
        self.port = port
        self._find_session = find_session
        self._socket: socket.socket | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        family = (
            socket.AF_INET6 if isinstance(ip_address(self.address), IPv6Address) else socket.AF_INET
        )
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # "::" takes IPv4 peers too (they appear IPv4-mapped).
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            # The SYN-ACK leaves with the listener's TTL: 255 lets GTSM peers (RFC 5082)
            # accept it; accepted sockets then get each peer's own TTL settings.
            apply_ttl(sock, MAX_TTL)
            sock.bind((self.address, self.port))
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise OSError(
                e.errno,
                f"cannot listen on [{self.address}]:{self.port}: {e.strerror}; "
                "choose another --listen address or port",
            ) from e
        self._socket = sock
        self._server = await asyncio.start_server(self._accepted, sock=sock)
        self.port = sock.getsockname()[1]
        log.info("event=listening address=%s port=%d", self.address, self.port)

    def set_password(self, peer: IPAddress, password: str | None) -> None:
        """Install (or, with None, remove) the TCP-MD5 key for `peer` on the listening socket."""
        if self._socket is None:
            return
        if isinstance(peer, IPv6Address) and self._socket.family == socket.AF_INET:
            log.warning("event=md5_skipped peer=%s reason=ipv4_listener", peer)
            return
        try:
            apply_md5(self._socket, peer, password)
        except OSError as e:
            if password:  # removing a key that is not there is fine
                raise OSError(e.errno, f"TCP-MD5 key for {peer}: {e.strerror}") from e

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        self._socket = None

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio's callback: an exception would leave the connection open and unread (the
        # peer waiting minutes for an OPEN), so it is closed and the peer tries again.
        remote = None
        try:
            peername = writer.get_extra_info("peername")
            remote = normalise_address(ip_address(peername[0]))
            session = self._find_session(remote)
            if session is None:
                log.info("event=connection_refused remote=%s reason=unknown_peer", remote)
                writer.close()
                return
            session.accept(reader, writer)
        except Exception as error:
            log.error(
                "event=task_failed task=accept peer=%s error=%r action=close",
                remote, error, exc_info=error,
            )  # fmt: skip
            writer.close()
