"""A hand-driven BGP peer over real TCP: the test writes every message it sends, so it can
send what no well-behaved speaker would (a wrong first AS, a refresh for a family never
negotiated) and read exactly what the speaker answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from ipaddress import IPv4Address

from herald.bgp.wire import (
    ExtendedMessage,
    FourOctetAs,
    Framer,
    Keepalive,
    Message,
    MultiProtocol,
    Negotiated,
    Open,
    RouteRefreshCapability,
    decode_message,
    negotiate,
)
from herald.bgp.wire.negotiated import IPV4_UNICAST, Family


class RawPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = Framer()
        self.negotiated = Negotiated()
        self.received: list[Message] = []

    @classmethod
    async def establish(
        cls,
        local: IPv4Address,
        remote: IPv4Address,
        port: int,
        asn: int,
        router_id: IPv4Address,
        families: tuple[Family, ...] = (IPV4_UNICAST,),
    ) -> RawPeer:
        """Connect from `local`, exchange OPENs and KEEPALIVEs: Established."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((str(local), 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (str(remote), port))
        peer = cls(*await asyncio.open_connection(sock=sock))
        capabilities = (
            *(MultiProtocol(f) for f in families),
            RouteRefreshCapability(),
            FourOctetAs(asn),
            ExtendedMessage(),
        )
        peer.send(Open(asn, 90, router_id, capabilities))
        their_open = await peer.next(lambda m: isinstance(m, Open))
        assert isinstance(their_open, Open)
        peer.negotiated = negotiate(capabilities, their_open.capabilities)
        peer.framer.max_message_size = peer.negotiated.max_message_size
        peer.send(Keepalive())
        await peer.next(lambda m: isinstance(m, Keepalive))
        return peer

    def send(self, message: Message) -> None:
        self.writer.write(message.encode(self.negotiated))

    async def next(self, wanted: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """The next message `wanted` accepts (the others are kept in `received`)."""
        async with asyncio.timeout(timeout):
            while True:
                for frame in self.framer.frames():
                    message = decode_message(frame, self.negotiated).message
                    self.received.append(message)
                    if wanted(message):
                        return message
                data = await self.reader.read(1 << 16)
                if not data:
                    raise ConnectionError("the speaker closed the connection")
                self.framer.feed(data)

    def close(self) -> None:
        self.writer.close()
