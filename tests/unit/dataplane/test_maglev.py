from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.dataplane import maglev

SEED = 0x5EED


def names(count: int) -> list[str]:
    return [f"198.18.{i // 200}.{i % 200 + 2}" for i in range(count)]


def moved_fraction(before: maglev.MaglevTable, after: maglev.MaglevTable) -> float:
    moved = sum(1 for slot in range(before.size) if before.owner(slot) != after.owner(slot))
    return moved / before.size


@pytest.mark.parametrize(
    ("backends", "expected"),
    [(0, 251), (1, 251), (2, 251), (3, 509), (10, 1021), (11, 2039), (1310, 131071)],
)
def test_table_size_is_smallest_prime_with_100_slots_per_backend(
    backends: int, expected: int
) -> None:
    assert maglev.table_size(backends) == expected


def test_table_size_explicit_must_be_a_listed_prime() -> None:
    assert maglev.table_size(50, explicit=251) == 251
    with pytest.raises(ValueError, match="one of"):
        maglev.table_size(3, explicit=1000)


def test_past_1310_backends_the_largest_table_takes_them_with_fewer_slots_each() -> None:
    assert maglev.table_size(1311) == maglev.table_size(1500) == 131071
    assert maglev.table_size(13107) == 131071
    with pytest.raises(ValueError, match="split the Service"):
        maglev.table_size(13108)


def test_a_1500_backend_table_is_balanced() -> None:
    names = [f"198.18.{i // 250}.{i % 250}" for i in range(1500)]
    counts = maglev.build([(n, 1) for n in names], seed=7, size=131071).counts().values()
    # 131071 / 1500 = 87.4 slots each; Maglev keeps every backend within a few slots.
    assert min(counts) >= 80 and max(counts) <= 95


def test_empty_table() -> None:
    assert maglev.build([], SEED, 251).slots == ()


def test_every_slot_is_owned() -> None:
    table = maglev.build([(n, 1) for n in names(7)], SEED, 1021)
    assert table.size == 1021
    assert set(table.slots) == set(range(7))


def test_order_of_input_does_not_matter() -> None:
    backends = [(n, 1) for n in names(9)]
    assert maglev.build(backends, SEED, 1021) == maglev.build(backends[::-1], SEED, 1021)


def test_seed_changes_the_table() -> None:
    backends = [(n, 1) for n in names(5)]
    assert maglev.build(backends, 1, 509) != maglev.build(backends, 2, 509)


def test_table_is_stable_across_processes() -> None:
    # A fixed expectation: Python's randomised hash() would break this between runs.
    table = maglev.build([("a", 1), ("b", 1), ("c", 1)], 0, 251)
    assert [table.owner(slot) for slot in range(12)] == EXPECTED_FIRST_SLOTS


EXPECTED_FIRST_SLOTS = ["c", "a", "a", "b", "c", "a", "a", "c", "b", "a", "b", "c"]


def test_owners_lists_every_slot_in_order() -> None:
    table = maglev.build([("a", 1), ("b", 1), ("c", 1)], 0, 251)
    assert table.owners() == tuple(table.owner(slot) for slot in range(251))
    assert list(table.owners()[:12]) == EXPECTED_FIRST_SLOTS


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        maglev.build([("a", 1), ("a", 2)], SEED, 251)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(count=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_balance_equal_weights(count: int, seed: int) -> None:
    size = maglev.table_size(count)
    table = maglev.build([(n, 1) for n in names(count)], seed, size)
    share = size / count
    for owned in table.counts().values():
        assert abs(owned - share) <= 0.01 * share


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    weights=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_balance_follows_weights(weights: list[int], seed: int) -> None:
    size = maglev.table_size(sum(weights))
    table = maglev.build(list(zip(names(len(weights)), weights, strict=True)), seed, size)
    total = sum(weights)
    counts = table.counts()
    for name, weight in zip(names(len(weights)), weights, strict=True):
        share = size * weight / total
        # Within 1% of the share, or one slot when the share is under 100 slots.
        assert abs(counts[name] - share) <= max(0.01 * share, 1.0)


# The paper's algorithm is not perfectly minimal: when a backend leaves, the others' turns
# shift and some slots change hands between surviving backends. Measured at the default size
# (M >= 100 x N) the excess over the unavoidable 1/N reaches 7%, at M >= 1600 x N it stays
# under 1%. The tests hold the algorithm to both measured bounds; docs/datapath.md explains.
EXCESS_AT_100 = 0.08
EXCESS_AT_1600 = 0.01


def size_for(count: int, per_backend: int) -> int:
    return next(p for p in maglev.PRIMES if p >= per_backend * count)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    count=st.integers(2, 40),
    victim=st.integers(0, 39),
    seed=st.integers(0, 2**32 - 1),
    per_backend=st.sampled_from([100, 1600]),
)
def test_removing_one_backend_moves_little(
    count: int, victim: int, seed: int, per_backend: int
) -> None:
    if per_backend == 1600:
        count = min(count, 20)
    backends = [(n, 1) for n in names(count)]
    size = size_for(count, per_backend)
    before = maglev.build(backends, seed, size)
    del backends[victim % count]
    after = maglev.build(backends, seed, size)
    excess = EXCESS_AT_100 if per_backend == 100 else EXCESS_AT_1600
    assert moved_fraction(before, after) <= 1 / count + excess


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    count=st.integers(1, 39),
    seed=st.integers(0, 2**32 - 1),
    per_backend=st.sampled_from([100, 1600]),
)
def test_adding_one_backend_moves_little(count: int, seed: int, per_backend: int) -> None:
    if per_backend == 1600:
        count = min(count, 19)
    backends = [(n, 1) for n in names(count + 1)]
    size = size_for(count + 1, per_backend)
    before = maglev.build(backends[:count], seed, size)
    after = maglev.build(backends, seed, size)
    excess = EXCESS_AT_100 if per_backend == 100 else EXCESS_AT_1600
    assert moved_fraction(before, after) <= 1 / (count + 1) + excess
