"""What one watched collection holds, kept from a list and the watch events after it (pure).

The API server's contract: a list returns every object and the collection's
resourceVersion; a watch started from that resourceVersion delivers every change after it,
in order, and a BOOKMARK only moves the resourceVersion on. Resuming from the last
resourceVersion seen therefore loses nothing; when the server no longer has the history
(410 Gone), a fresh list replaces the cache, and objects missing from it were deleted
meanwhile. resourceVersions are opaque: they are stored and sent back, never compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# (namespace or "", name)
ObjectKey = tuple[str, str]

ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"


class UnknownEvent(ValueError):
    """A watch event of a type the protocol does not have."""


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def resource_version(obj: Mapping[str, Any]) -> str | None:
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None


@dataclass
class KindCache:
    """The objects of one collection as last listed and watched, and where to resume."""

    objects: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    # Where a watch resumes; None until the first list.
    resource_version: str | None = None
    # Bumped on every change of `objects`: readers rebuild only when it moved.
    generation: int = 0

    def replace(self, items: Iterable[dict[str, Any]], version: str) -> bool:
        """A list's result: the objects as they are at `version`. True if anything changed
        (what a watch that was down missed: an object added, changed or deleted)."""
        fresh = {object_key(obj): obj for obj in items}
        changed = _versions(fresh) != _versions(self.objects)
        self.objects = fresh
        self.resource_version = version
        if changed:
            self.generation += 1
        return changed

    def apply(self, event_type: str, obj: dict[str, Any]) -> bool:
        """One watch event; True if the objects changed (a BOOKMARK never changes them)."""
        version = resource_version(obj)
        if event_type == BOOKMARK:
            if version is not None:
                self.resource_version = version
            return False
        key = object_key(obj)
        if event_type in (ADDED, MODIFIED):
            before = self.objects.get(key)
            self.objects[key] = obj
            changed = before is None or resource_version(before) != version
        elif event_type == DELETED:
            changed = self.objects.pop(key, None) is not None
        else:
            raise UnknownEvent(f"watch event type {event_type!r}")
        if version is not None:
            self.resource_version = version
        if changed:
            self.generation += 1
        return changed

    def forget_version(self) -> None:
        """The server no longer has our resourceVersion (410 Gone): list again."""
        self.resource_version = None


def _versions(objects: Mapping[ObjectKey, Mapping[str, Any]]) -> dict[ObjectKey, str | None]:
    return {key: resource_version(obj) for key, obj in objects.items()}
