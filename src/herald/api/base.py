"""Common ground of every API object: model configuration, metadata, selectors, conditions.

Core Kubernetes kinds tolerate fields herald does not read (a Service carries far more than
herald needs); herald's own kinds forbid unknown fields, so a typo is an error and not a
silently ignored setting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class CoreModel(BaseModel):
    """A part of a Kubernetes core object: unknown fields are ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class HeraldModel(BaseModel):
    """A part of one of herald's own kinds: unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class ObjectMeta(CoreModel):
    name: str = Field(min_length=1, max_length=253, description="Object name.")
    namespace: str | None = Field(
        default=None, description="Namespace (namespaced kinds only; default `default`)."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    creation_timestamp: str | None = Field(
        default=None,
        description="RFC 3339 time the object was created; orders pools by age.",
    )
    uid: str | None = None
    generation: int | None = None


class LabelSelectorRequirement(HeraldModel):
    key: str = Field(min_length=1, description="Label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key's value relates to `values`."
    )
    values: tuple[str, ...] = Field(
        default=(),
        description="Values for In/NotIn (non-empty); must be empty for Exists/DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value in `values`")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no `values`; remove them")
        return self


class LabelSelector(HeraldModel):
    """A Kubernetes label selector. An empty selector selects everything."""

    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels that must all be present with these values."
    )
    match_expressions: tuple[LabelSelectorRequirement, ...] = Field(
        default=(), description="Requirements that must all hold."
    )


class Condition(CoreModel):
    """A status condition as Kubernetes API conventions define it."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None
