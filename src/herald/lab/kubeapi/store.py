"""Objects, resourceVersions and watch history: the server's etcd, as pure data.

One revision counter for every object, as etcd keeps: each write takes the next revision,
which becomes the object's `metadata.resourceVersion`. Every write is also appended to a
history of watch events; the history keeps the last `history_limit` events, and `compact`
drops the rest at once. A watch that asks to resume from a revision older than the history
gets `410 Expired`, which is how clients learn they must list again.

No IO and no clock here: callers stamp uid and timestamps, the server wakes its watchers.
Stored objects are never changed in place (a write replaces them), so watch history and
read-only listings share them; `get` and `list` hand out copies unless told otherwise.
"""

from __future__ import annotations

import bisect
import builtins
import json
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from herald.lab.kubeapi import errors

Obj = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class WatchEvent:
    """One change, as a watch stream reports it (ADDED, MODIFIED or DELETED)."""

    type: str
    group: str
    resource: str
    namespace: str
    name: str
    revision: int
    object: Obj
    # The object before a MODIFIED event: a selector-filtered watch needs both sides.
    previous: Obj | None = None


def _meta(obj: Obj) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    assert isinstance(meta, dict)
    return meta


def _key(obj: Obj) -> tuple[str, str]:
    meta = _meta(obj)
    return (str(meta.get("namespace") or ""), str(meta["name"]))


def clone(value: T) -> T:
    """A deep copy of a JSON value; a JSON round trip is several times faster than
    copy.deepcopy, and every object here came from JSON (or YAML of JSON's types)."""
    return cast(T, json.loads(json.dumps(value)))


def parse_resource_version(value: str) -> int:
    """A resourceVersion as the revision it names; 400 if it is not one of ours."""
    try:
        revision = int(value)
    except ValueError:
        raise errors.bad_request(f'invalid resource version "{value}"') from None
    if revision < 0:
        raise errors.bad_request(f'invalid resource version "{value}"')
    return revision


class Store:
    """Objects keyed by (group, resource) then (namespace, name), with watch history."""

    def __init__(self, history_limit: int = 100_000) -> None:
        self.history_limit = history_limit
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._history: list[WatchEvent] = []
        self._revisions: list[int] = []
        self._revision = 0
        # Watches may resume from any revision >= this one.
        self._compacted = 0

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    def get(self, group: str, resource: str, namespace: str, name: str) -> Obj | None:
        obj = self._objects.get((group, resource), {}).get((namespace, name))
        return clone(obj) if obj is not None else None

    def list(
        self, group: str, resource: str, namespace: str | None = None, copies: bool = True
    ) -> list[Obj]:
        """Objects sorted by namespace and name; `copies=False` for callers that only read."""
        objs = self._objects.get((group, resource), {})
        return [
            clone(objs[key]) if copies else objs[key]
            for key in sorted(objs)
            if namespace is None or key[0] == namespace
        ]

    def create(self, group: str, resource: str, obj: Obj) -> Obj:
        key = _key(obj)
        objs = self._objects.setdefault((group, resource), {})
        if key in objs:
            raise errors.already_exists(group, resource, key[1])
        return self._write("ADDED", group, resource, obj)

    def update(self, group: str, resource: str, obj: Obj) -> Obj:
        """Replace an object; a non-empty resourceVersion in `obj` must be the stored one."""
        key = _key(obj)
        current = self._objects.get((group, resource), {}).get(key)
        if current is None:
            raise errors.not_found(group, resource, key[1])
        expected = str(_meta(obj).get("resourceVersion") or "")
        if expected and expected != _meta(current)["resourceVersion"]:
            raise errors.conflict(group, resource, key[1])
        return self._write("MODIFIED", group, resource, obj)

    def delete(
        self,
        group: str,
        resource: str,
        namespace: str,
        name: str,
        resource_version: str = "",
        uid: str = "",
    ) -> Obj:
        objs = self._objects.get((group, resource), {})
        current = objs.get((namespace, name))
        if current is None:
            raise errors.not_found(group, resource, name)
        meta = _meta(current)
        if (resource_version and resource_version != meta["resourceVersion"]) or (
            uid and uid != meta.get("uid")
        ):
            raise errors.conflict(group, resource, name)
        del objs[(namespace, name)]
        gone = clone(current)
        self._revision += 1
        _meta(gone)["resourceVersion"] = str(self._revision)
        self._record("DELETED", group, resource, gone, None)
        return clone(gone)

    def events_after(
        self, group: str, resource: str, revision: int, namespace: str | None = None
    ) -> builtins.list[WatchEvent]:
        """The changes to a resource after `revision`; 410 Expired if history lost some."""
        if revision < self._compacted:
            raise errors.expired(str(revision), self._compacted)
        start = bisect.bisect_right(self._revisions, revision)
        return [
            event
            for event in self._history[start:]
            if event.group == group
            and event.resource == resource
            and (namespace is None or event.namespace == namespace)
        ]

    def compact(self, revision: int | None = None) -> None:
        """Forget the history up to `revision` (default: all of it), as etcd compaction does."""
        upto = self._revision if revision is None else min(revision, self._revision)
        cut = bisect.bisect_right(self._revisions, upto)
        del self._history[:cut]
        del self._revisions[:cut]
        self._compacted = max(self._compacted, upto)

    def _write(self, kind: str, group: str, resource: str, obj: Obj) -> Obj:
        stored = clone(obj)
        self._revision += 1
        _meta(stored)["resourceVersion"] = str(self._revision)
        objs = self._objects.setdefault((group, resource), {})
        previous = objs.get(_key(stored))
        objs[_key(stored)] = stored
        self._record(kind, group, resource, stored, previous)
        return clone(stored)

    def _record(self, kind: str, group: str, resource: str, obj: Obj, previous: Obj | None) -> None:
        namespace, name = _key(obj)
        self._history.append(
            WatchEvent(kind, group, resource, namespace, name, self._revision, obj, previous)
        )
        self._revisions.append(self._revision)
        if len(self._history) > self.history_limit:
            drop = len(self._history) - self.history_limit
            self._compacted = self._revisions[drop - 1]
            del self._history[:drop]
            del self._revisions[:drop]
