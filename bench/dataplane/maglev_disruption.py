"""How many slots move when one of N backends leaves, beyond the unavoidable 1/N, for
herald's Maglev tables and two other history-free, balanced constructions tried against
the issue's target (1/N + 1% at M >= 100 x N). Pure Python, no root.

    .venv/bin/python bench/dataplane/maglev_disruption.py

For each size, a few random backend sets; for each set, every backend leaves once; the
worst and mean excess are reported. Writes the section maglev-disruption of
bench/results/dataplane.json.
"""

from __future__ import annotations

import hashlib
import random
import statistics
from collections.abc import Callable, Sequence

from herald.dataplane import maglev
from results import record

SEED = 0x5EED
Build = Callable[[Sequence[str], int], list[str]]


def score(*parts: object) -> int:
    text = "|".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def herald_maglev(names: Sequence[str], size: int) -> list[str]:
    table = maglev.build([(n, 1) for n in names], SEED, size)
    return [table.owner(slot) for slot in range(size)]


def global_greedy(names: Sequence[str], size: int) -> list[str]:
    """All (slot, backend) pairs in hash order; a pair is taken while its slot is free and
    its backend under its balanced share (the first `size mod N` to fill get one more)."""
    high = -(-size // len(names))
    room_for_high = size - (high - 1) * len(names)
    owner: list[str | None] = [None] * size
    count = dict.fromkeys(names, 0)
    at_high = 0
    for _, slot, name in sorted((score(s, n), s, n) for s in range(size) for n in names):
        limit = high if at_high < room_for_high else high - 1
        if owner[slot] is None and count[name] < limit:
            owner[slot] = name
            count[name] += 1
            at_high += count[name] == high
    return [o for o in owner if o is not None]


def sequential_stealing(names: Sequence[str], size: int) -> list[str]:
    """Backends join in hash order; each takes, from every earlier backend, what it holds
    above its new balanced share, the slots it reaches first on its Maglev permutation."""
    order = sorted(names, key=lambda n: score("order", n))
    owner = [order[0]] * size
    count = {order[0]: size}
    for joined, new in enumerate(order[1:], start=2):
        base, extra = divmod(size, joined)
        share = {m: base + (i < extra) for i, m in enumerate(order[:joined])}
        quota = {m: count[m] - share[m] for m in order[: joined - 1]}
        offset, skip = maglev._permutation(new, SEED, size)
        count[new] = 0
        step = 0
        while count[new] < share[new]:
            slot = (offset + step * skip) % size
            step += 1
            if quota.get(owner[slot], 0) > 0:
                quota[owner[slot]] -= 1
                count[owner[slot]] -= 1
                owner[slot] = new
                count[new] += 1
    return owner


def excess(build: Build, count: int, size: int, sets: int) -> tuple[float, float]:
    rng = random.Random(count * 7919 + size)
    found = []
    for _ in range(sets):
        names = sorted({f"198.18.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(count)})
        before = build(names, size)
        for gone in names:
            after = build([n for n in names if n != gone], size)
            moved = sum(a != b for a, b in zip(before, after, strict=True)) / size
            found.append(moved - 1 / len(names))
    return max(found), statistics.mean(found)


def main() -> None:
    constructions: dict[str, Build] = {
        "maglev": herald_maglev,
        "global_greedy": global_greedy,
        "sequential_stealing": sequential_stealing,
    }
    cases = [(5, 509), (10, 1021), (20, 2039)]
    rows: dict[str, dict[str, list[float]]] = {}
    for name, build in constructions.items():
        for count, size in cases:
            worst, mean = excess(build, count, size, sets=3)
            rows.setdefault(name, {})[f"N={count} M={size}"] = [
                round(worst * 100, 2),
                round(mean * 100, 2),
            ]
    for size in (2039, 4093, 8191, 16381):
        worst, mean = excess(herald_maglev, 10, size, sets=6)
        rows["maglev"][f"N=10 M={size}"] = [round(worst * 100, 2), round(mean * 100, 2)]
    record(
        "maglev-disruption",
        {"excess_over_1_over_n_percent_worst_mean": rows, "target_percent": 1.0},
    )


if __name__ == "__main__":
    main()
