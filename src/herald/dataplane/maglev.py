"""Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4).

Each backend walks its own permutation of the M table slots (an offset and a skip, both
from hashes of the backend's name) and the backends take turns claiming the next free slot
of their permutation until the table is full. Every backend ends up with almost the same
number of slots, and removing one backend mostly frees only that backend's slots.

Weights: a backend of weight w takes a turn in a round only while it has claimed fewer slots
than `round * w / max_weight`, so slot counts follow the weights.

The hashes are keyed BLAKE2b over the backend name and the cluster-wide seed, never
Python's `hash()`, so every node and every process builds the same table.

The fill loop runs in C (`_maglev.c`, built by `pip install`) when that module imports, and
in Python otherwise. `python_fill` stays the reference the C loop is tested against, byte for
byte; `IMPLEMENTATION` says which one `build` uses, and the fallback is logged as a warning.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The table sizes Cilium offers: primes, so that every skip in 1..M-1 is coprime with M
# and each permutation visits every slot.
PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
SLOTS_PER_BACKEND = 100
# Below this many slots per backend, a backend's share of new flows varies by more than
# about 10 % (Maglev's imbalance grows as M/N shrinks): a Service that needs more is refused.
MIN_SLOTS_PER_BACKEND = 10
# Cilium's backend weights are 16-bit too; the bound keeps the C loop's products in 64 bits.
MAX_WEIGHT = 65535


def table_size(backend_count: int, explicit: int | None = None) -> int:
    """The smallest listed prime with at least 100 slots per backend, or `explicit`.

    Past 1,310 backends the largest table is used with fewer slots each (Cilium's tables
    have the same ceiling), down to MIN_SLOTS_PER_BACKEND."""
    if explicit is not None:
        if explicit not in PRIMES:
            raise ValueError(f"maglev table size must be one of {PRIMES}, got {explicit}")
        return explicit
    wanted = SLOTS_PER_BACKEND * max(backend_count, 1)
    for prime in PRIMES:
        if prime >= wanted:
            return prime
    if backend_count * MIN_SLOTS_PER_BACKEND <= PRIMES[-1]:
        return PRIMES[-1]
    raise ValueError(
        f"{backend_count} backends: more than {PRIMES[-1] // MIN_SLOTS_PER_BACKEND} cannot "
        f"share one Maglev table of {PRIMES[-1]} slots evenly; split the Service"
    )


@dataclass(frozen=True)
class MaglevTable:
    """`slots[i]` is the index into `names` of the backend owning slot i."""

    names: tuple[str, ...]
    slots: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.slots)

    def owner(self, slot: int) -> str:
        return self.names[self.slots[slot]]

    def owners(self) -> tuple[str, ...]:
        """Every slot's backend name, in slot order (one C-level pass, not `owner` M times)."""
        return tuple(map(self.names.__getitem__, self.slots))

    def counts(self) -> dict[str, int]:
        result = dict.fromkeys(self.names, 0)
        for index in self.slots:
            result[self.names[index]] += 1
        return result


def _hashes(names: Sequence[str], seed: int, purpose: bytes) -> list[int]:
    # The key is absorbed once and the keyed state copied per name: the same digests as one
    # keyed BLAKE2b per name, at less than half the cost.
    keyed = hashlib.blake2b(digest_size=8, key=seed.to_bytes(8, "big"), person=purpose)
    result = []
    for name in names:
        state = keyed.copy()
        state.update(name.encode())
        result.append(int.from_bytes(state.digest(), "big"))
    return result


def _permutations(names: Sequence[str], seed: int, size: int) -> tuple[list[int], list[int]]:
    """Each backend's walk: its first slot (offset) and its stride (skip, 1..size-1)."""
    offsets = [h % size for h in _hashes(names, seed, b"herald-offset")]
    skips = [h % (size - 1) + 1 for h in _hashes(names, seed, b"herald-skip")]
    return offsets, skips


# (offsets, skips, weights, size) -> the owner index of every slot.
Fill = Callable[[Sequence[int], Sequence[int], Sequence[int], int], Sequence[int]]


def python_fill(
    offsets: Sequence[int], skips: Sequence[int], weights: Sequence[int], size: int
) -> list[int]:
    """The reference fill loop: backends take turns claiming their next free slot."""
    if not offsets:
        return []
    max_weight = max(weights)
    next_step = [0] * len(offsets)
    claimed = [0] * len(offsets)
    table = [-1] * size
    filled = 0
    turn = 0
    while True:
        turn += 1
        for i, offset in enumerate(offsets):
            if claimed[i] * max_weight >= turn * weights[i]:
                continue
            step = next_step[i]
            slot = (offset + step * skips[i]) % size
            while table[slot] >= 0:
                step += 1
                slot = (offset + step * skips[i]) % size
            table[slot] = i
            next_step[i] = step + 1
            claimed[i] += 1
            filled += 1
            if filled == size:
                return table


def _compiled_fill() -> tuple[Fill, str]:
    try:
        compiled = importlib.import_module("herald.dataplane._maglev")
    except ImportError as err:
        log.warning(
            "event=maglev_fallback implementation=python error=%r: the compiled fill loop "
            "did not import (reinstall with a C compiler and Python headers: scripts/setup.sh); "
            "tables are identical, 10-70x slower to build",
            str(err),
        )
        return python_fill, "python"
    fill: Fill = compiled.fill
    return fill, "c"


_fill, IMPLEMENTATION = _compiled_fill()


def build(
    backends: Sequence[tuple[str, int]], seed: int, size: int, *, fill: Fill | None = None
) -> MaglevTable:
    """Fill a table of `size` slots from `(name, weight)` pairs.

    Names must be unique and weights in 1..MAX_WEIGHT; the result does not depend on the
    order of the pairs. `fill` replaces the loop in use (tests pass `python_fill`).
    """
    ordered = sorted(backends)
    names = tuple(name for name, _ in ordered)
    if len(set(names)) != len(names):
        raise ValueError("maglev backend names must be unique")
    if size not in PRIMES:
        raise ValueError(f"maglev table size must be one of {PRIMES}, got {size}")
    weights = [weight for _, weight in ordered]
    for name, weight in ordered:
        if not 1 <= weight <= MAX_WEIGHT:
            raise ValueError(f"maglev backend {name}: weight must be 1..{MAX_WEIGHT}, got {weight}")
    if not ordered:
        return MaglevTable(names=(), slots=())
    offsets, skips = _permutations(names, seed, size)
    slots = (fill or _fill)(offsets, skips, weights, size)
    return MaglevTable(names=names, slots=tuple(slots))
