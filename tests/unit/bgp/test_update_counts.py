"""UPDATE messages are counted per session, apart from the other messages (MetalLB's
`metallb_bgp_updates_total`): two speakers over loopback TCP."""

from __future__ import annotations

from ipaddress import ip_network

from herald.bgp.export import RouteAttributes
from herald.bgp.session import is_update
from herald.bgp.speaker import Speaker
from herald.bgp.wire.header import MessageType, encode_header

from .loopback import A, B, pair, run, until

ROUTES = {
    ip_network("203.0.113.10/32"): RouteAttributes(),
    ip_network("203.0.113.11/32"): RouteAttributes(med=5),
}


def test_is_update_reads_the_header_type() -> None:
    assert is_update(encode_header(MessageType.UPDATE, 4) + b"\x00" * 4)
    assert not is_update(encode_header(MessageType.KEEPALIVE, 0))
    assert not is_update(b"\xff" * 10)  # shorter than a header


def test_updates_sent_and_received_are_counted_one_per_message() -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        a.set_routes(B, ROUTES)
        await until(lambda: len(b.received_routes(A)) == 2)
        sent = a.status()[0]
        await until(lambda: b.status()[0].updates_in == sent.updates_out)
        assert sent.updates_out >= 1
        # OPEN and KEEPALIVEs are messages, not UPDATEs.
        assert sent.updates_out < sent.messages_out
        a.withdraw(B, ip_network("203.0.113.11/32"))
        await until(lambda: len(b.received_routes(A)) == 1)
        await until(lambda: b.status()[0].updates_in == sent.updates_out + 1)
        after = a.status()[0]
        assert after.updates_out == sent.updates_out + 1  # one withdrawal, one UPDATE
        assert after.updates_in == b.status()[0].updates_out

    run(pair(body))
