"""L2AnnouncementPolicy: which nodes answer ARP/NDP for which services on which interfaces
(Cilium's CiliumL2AnnouncementPolicy)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from herald.api.base import HeraldModel, LabelSelector, ObjectMeta


class L2AnnouncementPolicySpec(HeraldModel):
    service_selector: LabelSelector | None = Field(
        default=None, description="Services announced under this policy; none selects all."
    )
    node_selector: LabelSelector | None = Field(
        default=None, description="Nodes that may announce; none selects all nodes."
    )
    interfaces: tuple[str, ...] = Field(
        default=(),
        description=(
            "Regular expressions of interface names to announce on (e.g. `^eth[0-9]+`); "
            "none means every interface with an address in the VIP's subnet."
        ),
    )
    load_balancer_ips: bool = Field(
        default=True,
        alias="loadBalancerIPs",
        description="Announce the Services' load balancer IPs (status.loadBalancer.ingress).",
    )
    external_ips: bool = Field(
        default=False,
        alias="externalIPs",
        description="Announce the Services' spec.externalIPs.",
    )

    @field_validator("interfaces")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a regular expression: {err}") from None
        return value


class L2AnnouncementPolicy(HeraldModel):
    """Selects services to announce with ARP/NDP. Cluster-scoped."""

    api_version: Literal["herald.io/v1alpha1"] = "herald.io/v1alpha1"
    kind: Literal["L2AnnouncementPolicy"] = "L2AnnouncementPolicy"
    metadata: ObjectMeta
    spec: L2AnnouncementPolicySpec = L2AnnouncementPolicySpec()
