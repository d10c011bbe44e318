"""Making herald objects out of converted data, valid by construction.

A converter writes a `Draft`: the herald manifest as a dict, and for each field the source
field it came from. `build` validates it with herald's own models. A value the source
accepted but herald refuses (an AS herald reserves, a timer beyond herald's range) is left out
where that is safe (herald's default applies, or a list loses that one item) and reported at
the source field; where leaving it out would widen what the object selects (a selector, an
interface list) the object is not converted at all. Either way the output holds only objects
that pass `herald validate`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from herald.api.kinds import kind_name
from herald.api.manifests import describe_error, error_location, path_text
from herald.importers.report import Context, Origin

M = TypeVar("M", bound=BaseModel)

# Fields that narrow what an object applies to: leaving one (or one of its items) out would
# make the object select more than its source did, so a refused value there drops the object.
NARROWING = frozenset(
    {"matchLabels", "matchExpressions", "serviceSelector", "nodeSelector", "selector",
     "interfaces"}
)  # fmt: skip

# Enough for every field of the largest object to be refused once.
_MAX_REPAIRS = 64


@dataclass(frozen=True)
class Emitted:
    """A herald object the import writes: what it is, what it came from, and its file."""

    obj: BaseModel
    origins: tuple[Origin, ...]
    file: str

    @property
    def kind(self) -> str:
        return str(self.obj.kind)  # type: ignore[attr-defined]

    @property
    def name(self) -> str:
        return str(self.obj.metadata.name)  # type: ignore[attr-defined]

    @property
    def namespace(self) -> str:
        return str(self.obj.metadata.namespace or "")  # type: ignore[attr-defined]


@dataclass
class Draft:
    """A herald manifest being written, and where in the sources each of its fields came from
    (herald field path -> the source object's context and its field path)."""

    data: dict[str, Any]
    ctx: Context
    sources: dict[str, tuple[Context, str]] = field(default_factory=dict)

    def came_from(self, herald_path: str, source_path: str, ctx: Context | None = None) -> None:
        self.sources[herald_path] = (ctx or self.ctx, source_path)

    def where(self, herald_path: str) -> tuple[Context, str]:
        """The source field nearest to `herald_path` (its own, or its closest parent's)."""
        for prefix in _prefixes(herald_path):
            if prefix in self.sources:
                return self.sources[prefix]
        return self.ctx, ""


def build(model: type[M], draft: Draft) -> M | None:
    """`draft` as a `model`, with what herald refuses left out and reported; None (reported
    as not converted) when no valid object can be made without widening it."""
    data = copy.deepcopy(draft.data)
    kind = kind_name(model)
    for _ in range(_MAX_REPAIRS):
        try:
            return model.model_validate(data)
        except ValidationError as err:
            error = _first(err.errors())
        loc = error_location(error)
        path, message = describe_error(model, error)
        ctx, source = draft.where(path)
        narrowing = any(part in NARROWING for part in loc if isinstance(part, str))
        item = _enclosing_item(loc)
        whole = error["type"] in ("missing", "too_short") or len(loc) < 2
        if narrowing or (item is None and whole):
            ctx.not_converted(
                source,
                f"the herald {kind} it would become is invalid ({path}: {message}); the "
                "object is not converted",
            )
            return None
        target = item if item is not None else loc
        _remove(data, target)
        if item is not None and path_text(item) != path:
            consequence = "the entry holding it is left out"
        else:
            consequence = "left out, so herald's default applies"
        ctx.not_converted(source, f"herald refuses it ({path}: {message}); {consequence}")
    draft.ctx.not_converted("", f"the herald {kind} it would become stays invalid; not converted")
    return None


def _first(errors: list[Any]) -> Any:
    """The error to repair first: not a list's "too short" when its items failed too (their
    own errors say why), deepest first so that a leaf is repaired before its parent."""
    locs = [tuple(e["loc"]) for e in errors]

    def deeper_exists(index: int) -> bool:
        loc = locs[index]
        return any(other[: len(loc)] == loc and other != loc for other in locs)

    candidates = [e for i, e in enumerate(errors) if not deeper_exists(i)]
    return (candidates or errors)[0]


def _enclosing_item(loc: list[Any]) -> list[Any] | None:
    """The location of the innermost list item holding `loc` (or being it), if any."""
    for end in range(len(loc), 0, -1):
        if isinstance(loc[end - 1], int):
            return loc[:end]
    return None


def _remove(data: Any, loc: list[Any]) -> None:
    parent = data
    for part in loc[:-1]:
        parent = parent[part]
    last = loc[-1]
    if isinstance(parent, list):
        parent.pop(last)
    elif isinstance(parent, dict):
        parent.pop(last, None)


def _prefixes(path: str) -> list[str]:
    """`spec.a[0].b` -> [`spec.a[0].b`, `spec.a[0]`, `spec.a`, `spec`, ``]."""
    cuts = [match.start() for match in re.finditer(r"[.\[]", path)]
    return [path, *(path[:cut] for cut in reversed(cuts)), ""]
