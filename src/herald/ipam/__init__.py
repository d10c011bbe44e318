"""LB-IPAM: gives LoadBalancer Services addresses from pools (pure: no I/O, no clock)."""

from herald.ipam.allocator import Allocator, allocate
from herald.ipam.request import ServiceRequest, requests_from_services
from herald.ipam.result import Allocation, PoolUsage, Reason

__all__ = [
    "Allocation",
    "Allocator",
    "PoolUsage",
    "Reason",
    "ServiceRequest",
    "allocate",
    "requests_from_services",
]
