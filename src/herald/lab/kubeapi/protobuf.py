"""Reading the few protobuf bodies kubectl sends: Namespaces, ConfigMaps and Secrets.

kubectl 1.2x's imperative generators (`kubectl create namespace|configmap|secret`) send
`application/vnd.kubernetes.protobuf`: the magic `k8s\\0`, then a runtime.Unknown message
(typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2) whose `raw` is the object. Only the fields
of those three kinds (k8s.io/api core/v1 generated.proto) are read; any other kind is 415.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

from herald.lab.kubeapi import errors

MAGIC = b"k8s\x00"
Obj = dict[str, Any]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise errors.bad_request("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(data, pos)
            yield number, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise errors.bad_request(f"unsupported protobuf wire type {wire}")


def _text(value: int | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(value: int | bytes) -> tuple[str, bytes]:
    key, item = "", b""
    for number, part in _fields(value if isinstance(value, bytes) else b""):
        if number == 1:
            key = _text(part)
        elif number == 2 and isinstance(part, bytes):
            item = part
    return key, item


def _metadata(data: bytes) -> Obj:
    meta: Obj = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    maps = {11: "labels", 12: "annotations"}
    for number, value in _fields(data):
        if number in names:
            meta[names[number]] = _text(value)
        elif number in maps:
            key, item = _entry(value)
            meta.setdefault(maps[number], {})[key] = item.decode()
        elif number == 14:
            meta.setdefault("finalizers", []).append(_text(value))
    return meta


def _object(
    data: bytes,
    strings: dict[int, str],
    texts: dict[int, str],
    blobs: dict[int, str],
    flags: dict[int, str],
) -> Obj:
    obj: Obj = {}
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = _metadata(value)
        elif number in strings:
            key, item = _entry(value)
            obj.setdefault(strings[number], {})[key] = item.decode()
        elif number in blobs:
            key, item = _entry(value)
            obj.setdefault(blobs[number], {})[key] = base64.b64encode(item).decode()
        elif number in texts:
            obj[texts[number]] = _text(value)
        elif number in flags:
            obj[flags[number]] = bool(value)
    return obj


def _namespace(data: bytes) -> Obj:
    obj: Obj = {}
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            obj["metadata"] = _metadata(value)
        elif number == 2 and isinstance(value, bytes):
            finalizers = [_text(v) for n, v in _fields(value) if n == 1]
            obj["spec"] = {"finalizers": finalizers} if finalizers else {}
    return obj


_KINDS: dict[str, Callable[[bytes], Obj]] = {
    "Namespace": _namespace,
    "ConfigMap": lambda raw: _object(raw, {2: "data"}, {}, {3: "binaryData"}, {4: "immutable"}),
    "Secret": lambda raw: _object(
        raw, {4: "stringData"}, {3: "type"}, {2: "data"}, {5: "immutable"}
    ),
}


def decode(body: bytes, content_type: str) -> Obj:
    """The JSON form of a protobuf-encoded object; 415 for kinds not read here."""
    unsupported = errors.ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml; got {content_type}",
    )
    if not body.startswith(MAGIC):
        raise unsupported
    api_version = kind = ""
    raw = b""
    for number, value in _fields(body[len(MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            for sub, part in _fields(value):
                if sub == 1:
                    api_version = _text(part)
                elif sub == 2:
                    kind = _text(part)
        elif number == 2 and isinstance(value, bytes):
            raw = value
    reader = _KINDS.get(kind)
    if reader is None or api_version != "v1":
        raise unsupported
    return {"apiVersion": api_version, "kind": kind, **reader(raw)}
