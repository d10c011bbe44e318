"""LoadBalancerIPPool: the addresses LB-IPAM hands out (Cilium's CiliumLoadBalancerIPPool)."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from herald.api.base import Condition, CoreModel, HeraldModel, LabelSelector, ObjectMeta

# Special selector keys, as in Cilium: a pool can select services by namespace and name.
SERVICE_NAMESPACE_KEY = "io.kubernetes.service.namespace"
SERVICE_NAME_KEY = "io.kubernetes.service.name"


class IPBlock(HeraldModel):
    """One block of addresses: either `cidr`, or `start` and `stop` (inclusive)."""

    cidr: str | None = Field(
        default=None, description="A CIDR such as 203.0.113.0/24 or 2001:db8:100::/64."
    )
    start: str | None = Field(default=None, description="First address of a range.")
    stop: str | None = Field(
        default=None, description="Last address of a range (inclusive); default: `start`."
    )

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError:
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a CIDR; write one such as 203.0.113.0/24 or 2001:db8::/64"
                ) from None
            raise ValueError(f"{value!r} has host bits set; did you mean {network}?") from None
        return value

    @field_validator("start", "stop")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address; write one such as 203.0.113.10"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_form(self) -> IPBlock:
        if self.cidr is not None and (self.start is not None or self.stop is not None):
            raise ValueError("give either `cidr` or `start`/`stop`, not both")
        if self.cidr is None and self.start is None:
            raise ValueError("a block needs `cidr`, or `start` (and optionally `stop`)")
        if self.start is not None and self.stop is not None:
            first, last = ipaddress.ip_address(self.start), ipaddress.ip_address(self.stop)
            if first.version != last.version:
                raise ValueError("`start` and `stop` must be of the same IP family")
            if int(last) < int(first):
                raise ValueError(f"`stop` {self.stop} comes before `start` {self.start}")
        return self

    def bounds(self) -> tuple[int, int, int]:
        """(IP version, first address, last address) as integers, inclusive."""
        if self.cidr is not None:
            network = ipaddress.ip_network(self.cidr, strict=False)
            return (
                network.version,
                int(network.network_address),
                int(network.broadcast_address),
            )
        assert self.start is not None
        first = ipaddress.ip_address(self.start)
        last = ipaddress.ip_address(self.stop or self.start)
        return first.version, int(first), int(last)


class PoolSpec(HeraldModel):
    blocks: tuple[IPBlock, ...] = Field(
        min_length=1, description="Address blocks of the pool (CIDRs or start/stop ranges)."
    )
    allow_first_last_ips: Literal["Yes", "No"] = Field(
        default="Yes",
        alias="allowFirstLastIPs",
        description=(
            "Whether the first and last address of each CIDR block may be allocated "
            "(network and broadcast addresses). Blocks of /31, /32, /127, /128 always may."
        ),
    )
    disabled: bool = Field(
        default=False,
        description="A disabled pool keeps its existing allocations but gives out no new ones.",
    )
    service_selector: LabelSelector | None = Field(
        default=None,
        description=(
            "Which Services may get addresses from this pool; none selects every Service. "
            f"Besides labels, `{SERVICE_NAMESPACE_KEY}` and `{SERVICE_NAME_KEY}` match the "
            "Service's namespace and name."
        ),
    )

    @model_validator(mode="after")
    def _blocks_disjoint(self) -> PoolSpec:
        spans = sorted((block.bounds(), index) for index, block in enumerate(self.blocks))
        # Sorted by start, a block overlaps an earlier one iff it starts before the furthest
        # end seen so far in its family.
        furthest: dict[int, tuple[int, int]] = {}
        for (version, first, last), index in spans:
            if version in furthest and first <= furthest[version][0]:
                raise ValueError(
                    f"blocks[{index}] overlaps blocks[{furthest[version][1]}]; "
                    "blocks of one pool must not overlap"
                )
            if version not in furthest or last > furthest[version][0]:
                furthest[version] = (last, index)
        return self


class PoolStatus(CoreModel):
    conditions: tuple[Condition, ...] = ()


class LoadBalancerIPPool(HeraldModel):
    """A pool of addresses for LoadBalancer Services. Cluster-scoped."""

    api_version: Literal["herald.io/v1alpha1"] = "herald.io/v1alpha1"
    kind: Literal["LoadBalancerIPPool"] = "LoadBalancerIPPool"
    metadata: ObjectMeta
    spec: PoolSpec
    status: PoolStatus | None = None
