"""What every source object has (apiVersion, kind, metadata, status), read once for all kinds.

The fields Kubernetes itself writes (uid, resourceVersion, managedFields, status, ...) describe
the source object in its cluster, not configuration: they are passed over by design, as
`kubectl get -o yaml` prints them on everything. Everything else a converter does not read is
reported by `close`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from herald.importers.fields import Fields
from herald.importers.report import Context, Finding, Origin
from herald.importers.source import SourceObject

# Written by the API server or by controllers, never by the user.
SERVER_SET = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "generateName",
)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True)
class Meta:
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Opened:
    """A source object being read: its fields, metadata and findings context."""

    fields: Fields
    meta: Meta
    ctx: Context

    @property
    def origin(self) -> Origin:
        return self.ctx.origin


def identify(obj: SourceObject) -> tuple[str, str, str, str]:
    """(apiVersion, kind, name, namespace) as written, "" where missing or not text."""
    raw = obj.raw

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    return (
        text(raw.get("apiVersion")),
        text(raw.get("kind")),
        text(meta.get("name")),
        text(meta.get("namespace")),
    )


def origin_of(obj: SourceObject) -> Origin:
    _, kind, name, namespace = identify(obj)
    return Origin(obj.location, obj.item, kind, f"{namespace}/{name}" if namespace else name)


def open_object(obj: SourceObject, findings: list[Finding]) -> Opened:
    """Start reading `obj`: its kind and metadata are read, status is passed over."""
    ctx = Context(origin_of(obj), findings)
    fields = Fields(obj.raw, "", ctx)
    fields.ignore("apiVersion", "kind", "status")
    metadata = fields.sub("metadata")
    name, namespace, labels = "", "", {}
    if metadata is None:
        ctx.error("metadata", "missing; every object needs metadata.name")
    else:
        metadata.ignore(*SERVER_SET)
        name = metadata.text("name") or ""
        if not name:
            ctx.error("metadata.name", "missing; every object needs a name")
        namespace = metadata.text("namespace") or ""
        labels = metadata.text_map("labels")
        annotations = metadata.text_map("annotations")
        annotations.pop(LAST_APPLIED, None)
        if annotations:
            ctx.ignored(
                "metadata.annotations",
                f"{', '.join(sorted(annotations))}: annotations of the source object itself; "
                "herald reads none on this kind, so they are not copied",
            )
    return Opened(fields, Meta(name, namespace, labels), ctx)


def close(opened: Opened) -> None:
    """Report every field of the object that no converter read."""
    for path in opened.fields.unread():
        opened.ctx.not_converted(
            path,
            f"not a field herald import knows in {opened.origin.kind} (a typo, or newer than "
            "herald import), so it has no herald equivalent here; left out",
        )


def herald_meta(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return meta
