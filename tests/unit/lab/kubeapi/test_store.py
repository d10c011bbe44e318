"""The store: revisions, optimistic concurrency, watch history and its compaction."""

from __future__ import annotations

import pytest

from herald.lab.kubeapi.errors import ApiError
from herald.lab.kubeapi.store import Store


def obj(name: str, ns: str = "default", **fields: object) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": ns}, **fields}


def test_every_write_takes_the_next_revision() -> None:
    store = Store()
    a = store.create("", "services", obj("a"))
    b = store.create("", "services", obj("b"))
    a2 = store.update("", "services", {**a, "spec": {"x": 1}})
    gone = store.delete("", "services", "default", "b")
    assert [a["metadata"]["resourceVersion"], b["metadata"]["resourceVersion"]] == ["1", "2"]
    assert a2["metadata"]["resourceVersion"] == "3"
    assert gone["metadata"]["resourceVersion"] == "4"
    assert store.revision == 4
    assert [o["metadata"]["name"] for o in store.list("", "services")] == ["a"]


def test_create_of_an_existing_name_is_already_exists() -> None:
    store = Store()
    store.create("", "services", obj("a"))
    with pytest.raises(ApiError) as err:
        store.create("", "services", obj("a"))
    assert (err.value.code, err.value.reason) == (409, "AlreadyExists")
    # The same name in another namespace is another object.
    store.create("", "services", obj("a", ns="other"))


def test_update_with_a_stale_resource_version_is_a_conflict() -> None:
    store = Store()
    first = store.create("", "services", obj("a"))
    store.update("", "services", {**first, "spec": {"v": 1}})
    with pytest.raises(ApiError) as err:
        store.update("", "services", {**first, "spec": {"v": 2}})
    assert (err.value.code, err.value.reason) == (409, "Conflict")
    unconditional = {**first, "metadata": {"name": "a", "namespace": "default"}, "spec": {"v": 3}}
    assert store.update("", "services", unconditional)["spec"] == {"v": 3}


def test_delete_honours_preconditions_and_reports_missing_objects() -> None:
    store = Store()
    a = store.create("", "services", obj("a"))
    with pytest.raises(ApiError) as err:
        store.delete("", "services", "default", "a", uid="not-its-uid")
    assert err.value.code == 409
    store.delete("", "services", "default", "a", resource_version=a["metadata"]["resourceVersion"])
    with pytest.raises(ApiError) as err:
        store.delete("", "services", "default", "a")
    assert (err.value.code, err.value.reason) == (404, "NotFound")


def test_events_after_a_revision_are_those_of_the_resource_in_order() -> None:
    store = Store()
    a = store.create("", "services", obj("a"))
    store.create("", "nodes", {"metadata": {"name": "n1"}})
    store.update("", "services", {**a, "spec": {"v": 1}})
    store.delete("", "services", "default", "a")
    events = store.events_after("", "services", 1)
    assert [(e.type, e.revision) for e in events] == [("MODIFIED", 3), ("DELETED", 4)]
    assert events[0].previous is not None and "spec" not in events[0].previous
    assert store.events_after("", "services", 4) == []


def test_history_past_its_limit_or_compacted_is_gone() -> None:
    store = Store(history_limit=2)
    a = store.create("", "services", obj("a"))
    for v in range(3):
        a = store.update("", "services", {**a, "spec": {"v": v}})
    assert store.compacted_revision == 2
    with pytest.raises(ApiError) as err:
        store.events_after("", "services", 1)
    assert (err.value.code, err.value.reason) == (410, "Expired")
    assert [e.revision for e in store.events_after("", "services", 2)] == [3, 4]
    store.compact()
    with pytest.raises(ApiError):
        store.events_after("", "services", 3)
    assert store.events_after("", "services", 4) == []


def test_stored_objects_are_copies() -> None:
    store = Store()
    created = store.create("", "services", obj("a", spec={"v": 1}))
    created["spec"]["v"] = 2
    got = store.get("", "services", "default", "a")
    assert got is not None and got["spec"] == {"v": 1}
