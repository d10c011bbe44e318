"""Reading a source object field by field, so that nothing in it is silently dropped.

Every read is type-checked (a wrong type is an error at its field path, and the read gives
None) and remembered: after a converter has read what it knows, `unread()` lists every field
it did not look at, which the import then reports as not converted. The converters thereby
never need a list of the fields they ignore, and a field a newer Cilium or MetalLB adds is
named in the report instead of vanishing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from herald.importers.report import Context


def key_path(parent: str, key: str) -> str:
    """`parent.key`, with keys holding `.` or `/` in brackets as herald's errors write them."""
    if "." in key or "/" in key:
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


class Fields:
    """A mapping of the input at `path` (relative to its object), read through typed getters."""

    def __init__(self, value: Mapping[str, Any], path: str, ctx: Context) -> None:
        self._value = value
        self.path = path
        self.ctx = ctx
        self._read: set[str] = set()
        self._children: list[Fields] = []

    # -- what is there -----------------------------------------------------------------------

    def at(self, key: str) -> str:
        return key_path(self.path, key)

    def has(self, key: str) -> bool:
        """Present and not null (YAML's `key:` with nothing after it counts as absent)."""
        return self._value.get(key) is not None

    # -- typed reads -------------------------------------------------------------------------

    def raw(self, key: str) -> Any:
        """The value as it is, marked as read (with everything inside it)."""
        self._read.add(key)
        return self._value.get(key)

    def ignore(self, *keys: str) -> None:
        """Fields deliberately not converted (server-set metadata, status)."""
        self._read.update(keys)

    def text(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # YAML reads 179 or 1.5 as numbers where a string is meant
        self._wrong(key, "a string", value)
        return None

    def integer(self, key: str) -> int | None:
        value = self.raw(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        self._wrong(key, "an integer", value)
        return None

    def flag(self, key: str) -> bool | None:
        value = self.raw(key)
        if value is None or isinstance(value, bool):
            return value
        self._wrong(key, "true or false", value)
        return None

    def texts(self, key: str) -> list[str]:
        """A list of strings (numbers taken as their text); [] when absent."""
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong(key, "a list of strings", value)
            return []
        found: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                found.append(str(item))
            else:
                self.ctx.error(
                    f"{self.at(key)}[{index}]", f"expected a string, got {_describe(item)}"
                )
        return found

    def text_map(self, key: str) -> dict[str, str]:
        """A mapping of strings to strings (labels, data); {} when absent."""
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self._wrong(key, "a mapping of strings", value)
            return {}
        found: dict[str, str] = {}
        for name, item in value.items():
            if item is None:  # `key:` with no value: Kubernetes reads it as ""
                found[str(name)] = ""
                continue
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                self.ctx.error(
                    key_path(self.at(key), str(name)),
                    f"expected a string, got {_describe(item)}",
                )
                continue
            found[str(name)] = str(item)
        return found

    def sub(self, key: str) -> Fields | None:
        """A nested mapping, read field by field itself; None when absent."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self._wrong(key, "a mapping", value)
            return None
        return self._child(value, self.at(key))

    def subs(self, key: str) -> list[Fields]:
        """A list of mappings, each read field by field; [] when absent."""
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong(key, "a list", value)
            return []
        found: list[Fields] = []
        for index, item in enumerate(value):
            path = f"{self.at(key)}[{index}]"
            if isinstance(item, dict):
                found.append(self._child(item, path))
            else:
                self.ctx.error(path, f"expected a mapping, got {_describe(item)}")
        return found

    # -- what nobody read --------------------------------------------------------------------

    def unread(self) -> list[str]:
        """Paths of the fields present but never read, nested mappings included."""
        found = [
            self.at(key)
            for key, value in self._value.items()
            if key not in self._read and value is not None
        ]
        for child in self._children:
            found.extend(child.unread())
        return found

    def _child(self, value: Mapping[str, Any], path: str) -> Fields:
        child = Fields(value, path, self.ctx)
        self._children.append(child)
        return child

    def _wrong(self, key: str, expected: str, value: Any) -> None:
        self.ctx.error(self.at(key), f"expected {expected}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{value!r}"
