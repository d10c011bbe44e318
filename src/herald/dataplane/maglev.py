"""Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4).

Each backend walks its own permutation of the M table slots (an offset and a skip, both
from hashes of the backend's name) and the backends take turns claiming the next free slot
of their permutation until the table is full. Every backend ends up with almost the same
number of slots, and removing one backend mostly frees only that backend's slots.

Weights: a backend of weight w takes a turn in a round only while it has claimed fewer slots
than `round * w / max_weight`, so slot counts follow the weights.

The hashes are keyed BLAKE2b over the backend name and the cluster-wide seed, never
Python's `hash()`, so every node and every process builds the same table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# The table sizes Cilium offers: primes, so that every skip in 1..M-1 is coprime with M
# and each permutation visits every slot.
PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
SLOTS_PER_BACKEND = 100
# Below this many slots per backend, a backend's share of new flows varies by more than
# about 10 % (Maglev's imbalance grows as M/N shrinks): a Service that needs more is refused.
MIN_SLOTS_PER_BACKEND = 10


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

    def counts(self) -> dict[str, int]:
        result = dict.fromkeys(self.names, 0)
        for index in self.slots:
            result[self.names[index]] += 1
        return result


def _hash(name: str, seed: int, purpose: bytes) -> int:
    digest = hashlib.blake2b(
        name.encode(), digest_size=8, key=seed.to_bytes(8, "big"), person=purpose
    ).digest()
    return int.from_bytes(digest, "big")


def _permutation(name: str, seed: int, size: int) -> tuple[int, int]:
    offset = _hash(name, seed, b"herald-offset") % size
    skip = _hash(name, seed, b"herald-skip") % (size - 1) + 1
    return offset, skip


def build(backends: Sequence[tuple[str, int]], seed: int, size: int) -> MaglevTable:
    """Fill a table of `size` slots from `(name, weight)` pairs.

    Names must be unique; the result does not depend on their order.
    """
    ordered = sorted(backends)
    names = tuple(name for name, _ in ordered)
    if len(set(names)) != len(names):
        raise ValueError("maglev backend names must be unique")
    if not ordered:
        return MaglevTable(names=(), slots=())
    weights = [weight for _, weight in ordered]
    max_weight = max(weights)
    permutations = [_permutation(name, seed, size) for name in names]
    next_step = [0] * len(names)
    claimed = [0] * len(names)
    table = [-1] * size
    filled = 0
    turn = 0
    while True:
        turn += 1
        for i, (offset, skip) in enumerate(permutations):
            if claimed[i] * max_weight >= turn * weights[i]:
                continue
            step = next_step[i]
            slot = (offset + step * skip) % size
            while table[slot] >= 0:
                step += 1
                slot = (offset + step * skip) % size
            table[slot] = i
            next_step[i] = step + 1
            claimed[i] += 1
            filled += 1
            if filled == size:
                return MaglevTable(names=names, slots=tuple(table))
