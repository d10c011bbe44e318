"""The captured messages of golden/ (README.md there says how they were made)."""

from __future__ import annotations

from pathlib import Path

from herald.observe import nflog

GOLDEN = Path(__file__).parent / "golden"


def datagrams() -> list[bytes]:
    return [bytes.fromhex(line) for line in (GOLDEN / "nflog-datagrams.hex").read_text().split()]


def packets() -> list[nflog.LoggedPacket]:
    return [
        nflog.decode_packet(m) for d in datagrams() for m in nflog.messages(d) if nflog.is_packet(m)
    ]


def ctnetlink(name: str) -> nflog.Message:
    data = bytes.fromhex((GOLDEN / f"ctnetlink-{name}.hex").read_text().strip())
    (message,) = nflog.messages(data)
    return message
