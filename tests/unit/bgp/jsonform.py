"""Codec values <-> plain JSON, for golden files that a person can read and write.

Dataclasses become objects tagged ("@type") with their class name (defaults left out), enums their
member name, addresses and networks strings, bytes hex, families "ipv6-unicast".
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from herald.bgp.wire import attributes, capabilities, errors, messages, negotiated, prefix
from herald.bgp.wire.negotiated import Afi, Family, Safi

_MODULES = (attributes, capabilities, errors, messages, negotiated, prefix)
REGISTRY: dict[str, type] = {
    name: obj
    for module in _MODULES
    for name, obj in vars(module).items()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and not name.startswith("_")
}


def family_to_json(family: Family) -> str:
    return str(family)


def family_from_json(text: str) -> Family:
    afi, safi = text.split("-")
    return Family(
        Afi[afi.upper()] if not afi.isdigit() else int(afi),
        Safi[safi.upper()] if not safi.isdigit() else int(safi),
    )


def to_json(value: Any) -> Any:
    if isinstance(value, Family):
        return family_to_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"@type": type(value).__name__}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            default = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            if item != default or default is dataclasses.MISSING:
                out[f.name] = to_json(item)
        return out
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, IPv4Address | IPv6Address | IPv4Network | IPv6Network):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, frozenset):
        return sorted(to_json(v) for v in value)
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


def from_json(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _from_union(args, value)
    if origin is tuple:
        return tuple(from_json(args[0], v) for v in value)
    if origin is frozenset:
        return frozenset(from_json(args[0], v) for v in value)
    if hint is Family:
        return family_from_json(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(REGISTRY[value["@type"]] if "@type" in value else hint, value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint[value]
    if hint is bytes:
        return bytes.fromhex(value)
    if hint in (IPv4Address, IPv6Address, IPv4Network, IPv6Network):
        return hint(value)
    return value


def _from_union(args: tuple[Any, ...], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return _dataclass(REGISTRY[value["@type"]], value)
    kinds = set(args) - {type(None)}
    if kinds <= {IPv4Address, IPv6Address}:
        return ip_address(value)
    if kinds <= {IPv4Network, IPv6Network}:
        return ip_network(value)
    (only,) = kinds
    return from_json(only, value)


def _dataclass(cls: type, value: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls, vars(_module_of(cls)))
    kwargs = {k: from_json(hints[k], v) for k, v in value.items() if k != "@type"}
    return cls(**kwargs)


def _module_of(cls: type) -> types.ModuleType:
    import sys

    return sys.modules[cls.__module__]
