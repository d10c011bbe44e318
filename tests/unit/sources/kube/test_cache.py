"""The watch cache: list, events, bookmarks, re-list after 410 (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from herald.sources.kube.cache import KindCache, UnknownEvent


def obj(name: str, version: str, namespace: str = "default", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": version},
        **extra,
    }


def test_events_apply_in_order_and_move_the_resume_point() -> None:
    cache = KindCache()
    assert cache.replace([obj("a", "5")], "7") is True
    assert cache.resource_version == "7"
    assert cache.apply("ADDED", obj("b", "8"))
    assert cache.apply("MODIFIED", obj("a", "9", spec={"x": 1}))
    assert cache.apply("DELETED", obj("b", "10"))
    assert sorted(cache.objects) == [("default", "a")]
    assert cache.objects[("default", "a")]["spec"] == {"x": 1}
    assert cache.resource_version == "10"


def test_a_bookmark_moves_the_resume_point_only() -> None:
    cache = KindCache()
    cache.replace([obj("a", "5")], "5")
    generation = cache.generation
    assert not cache.apply("BOOKMARK", {"metadata": {"resourceVersion": "42"}})
    assert cache.resource_version == "42"
    assert cache.generation == generation


def test_a_relist_finds_what_a_broken_watch_missed() -> None:
    cache = KindCache()
    cache.replace([obj("a", "1"), obj("b", "2")], "2")
    cache.forget_version()
    assert cache.resource_version is None
    # Meanwhile b was deleted and c created: both show as a change.
    assert cache.replace([obj("a", "1"), obj("c", "3")], "3")
    assert sorted(cache.objects) == [("default", "a"), ("default", "c")]
    # The same list again changes nothing.
    generation = cache.generation
    assert not cache.replace([obj("a", "1"), obj("c", "3")], "4")
    assert cache.generation == generation


def test_a_replayed_event_is_no_change() -> None:
    cache = KindCache()
    cache.replace([obj("a", "5")], "5")
    assert not cache.apply("MODIFIED", obj("a", "5"))
    assert not cache.apply("DELETED", obj("zz", "6"))


def test_objects_in_different_namespaces_are_different_objects() -> None:
    cache = KindCache()
    cache.replace([obj("a", "1", "x"), obj("a", "2", "y")], "2")
    assert len(cache.objects) == 2


def test_an_unknown_event_type_is_refused() -> None:
    with pytest.raises(UnknownEvent):
        KindCache().apply("EXPLODED", obj("a", "1"))
