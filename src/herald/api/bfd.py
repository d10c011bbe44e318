"""BFDProfile: Bidirectional Forwarding Detection timers (MetalLB's BFDProfile)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from herald.api.base import HeraldModel, ObjectMeta


class BFDProfileSpec(HeraldModel):
    receive_interval: int = Field(
        default=300,
        ge=10,
        le=60000,
        description="Minimum interval, in milliseconds, between BFD packets herald accepts.",
    )
    transmit_interval: int = Field(
        default=300,
        ge=10,
        le=60000,
        description="Minimum interval, in milliseconds, between BFD packets herald sends.",
    )
    detect_multiplier: int = Field(
        default=3,
        ge=2,
        le=255,
        description="Packets missed in a row before the session is declared down.",
    )
    echo_interval: int = Field(
        default=50,
        ge=10,
        le=60000,
        description="Minimum interval, in milliseconds, of echo packets (echo mode only; "
        "not supported).",
    )
    echo_mode: bool = Field(
        default=False,
        description="Enables BFD echo mode. Not supported: the agent reports it and runs "
        "without echo.",
    )
    passive_mode: bool = Field(
        default=False, description="Waits for the peer to start the session instead of starting it."
    )
    minimum_ttl: int = Field(
        default=254,
        ge=1,
        le=254,
        description="Lowest TTL accepted on incoming BFD control packets (multihop). herald "
        "runs single-hop BFD only, which accepts TTL 255 alone.",
    )


class BFDProfile(HeraldModel):
    """A set of BFD timers that BGP peers refer to by name. Cluster-scoped."""

    api_version: Literal["herald.io/v1alpha1"] = "herald.io/v1alpha1"
    kind: Literal["BFDProfile"] = "BFDProfile"
    metadata: ObjectMeta
    spec: BFDProfileSpec = BFDProfileSpec()
