"""The output as text: one YAML file per source kind (`<kind>.yaml`, e.g.
`ciliumloadbalancerippool.yaml`, `bgppeer.yaml`, `configmap.yaml` for the ConfigMap formats)
and `secret.yaml` for every password Secret, so that the file to keep private is one file.

Within a file objects come in herald's kind order, then by name; each is preceded by a
comment naming the source objects it came from. Only the fields the conversion set are
written: what the source said, not every default of herald's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from herald.importers.build import Emitted
from herald.importers.report import Origin

REPORT_FILE = "import-report.txt"
HEADER = "# Written by `herald import`; its report says what was and was not converted.\n"

KIND_ORDER = (
    "LoadBalancerIPPool",
    "BGPClusterConfig",
    "BGPPeerConfig",
    "BGPAdvertisement",
    "L2AnnouncementPolicy",
    "BFDProfile",
    "Secret",
)


def manifest(emitted: Emitted) -> dict[str, Any]:
    """The object as its manifest: apiVersion, kind and metadata first, then what was set."""
    obj = emitted.obj
    data = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    head = {
        "apiVersion": type(obj).model_fields["api_version"].default,
        "kind": emitted.kind,
        "metadata": data.pop("metadata", {"name": emitted.name}),
    }
    data.pop("apiVersion", None)
    data.pop("kind", None)
    return {**head, **data}


def sort_key(emitted: Emitted) -> tuple[int, str, str]:
    return (KIND_ORDER.index(emitted.kind), emitted.namespace, emitted.name)


def files(emitted: Iterable[Emitted]) -> dict[str, list[Emitted]]:
    """The objects of each output file, in the order they are written; files by name."""
    grouped: dict[str, list[Emitted]] = {}
    for item in emitted:
        grouped.setdefault(item.file, []).append(item)
    return {name: sorted(grouped[name], key=sort_key) for name in sorted(grouped)}


def _documents(objects: Iterable[Emitted]) -> list[str]:
    documents = []
    for item in objects:
        comment = "\n".join(f"# from {_where(origin)}" for origin in item.origins)
        body = yaml.safe_dump(manifest(item), sort_keys=False, allow_unicode=True, width=100)
        documents.append(f"{comment}\n{body}")
    return documents


def render(emitted: Iterable[Emitted]) -> dict[str, str]:
    """Output file name -> its text."""
    return {
        name: HEADER + "---\n".join(_documents(objects)) for name, objects in files(emitted).items()
    }


def joined(emitted: Iterable[Emitted]) -> str:
    """Every file's documents as one stream (standard output), each file named in a comment."""
    documents = []
    for name, objects in files(emitted).items():
        for index, document in enumerate(_documents(objects)):
            documents.append(f"# --- {name}\n{document}" if index == 0 else document)
    return HEADER + "---\n".join(documents)


def _where(origin: Origin) -> str:
    item = f" items[{origin.item}]" if origin.item >= 0 else ""
    return f"{origin.location}{item} {origin.text}"
