"""A cursor over received bytes that fails with the caller's error, never IndexError."""

from __future__ import annotations

from collections.abc import Callable

from herald.bgp.wire.errors import CodecError


class Reader:
    """Reads big-endian fields; running short raises `short()`.

    Each context (an OPEN, an attribute, an NLRI field) has its own error for a truncated
    field, so the caller supplies it instead of the reader guessing.
    """

    __slots__ = ("_data", "_pos", "_short")

    def __init__(self, data: bytes, short: Callable[[], CodecError]) -> None:
        self._data = data
        self._pos = 0
        self._short = short

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise self._short()
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def u32(self) -> int:
        return self.uint(4)
