"""The Service annotations LB-IPAM reads, and the one place that decides what they ask for.

Besides herald's own (`herald.io/…`), Cilium's LB-IPAM annotations and MetalLB's are read
where they stand, so that a Service moved from either needs no edit. `ipam_settings` is the
only reader: manifest validation reports its errors and `herald validate` its warnings, and
the allocator's ServiceRequest takes its values, so what is checked is what is allocated.

Precedence, per setting (requested addresses, sharing key, sharing namespaces, pool):
- herald's annotation wins over every other;
- of the names one implementation gives a setting, the one it reads first wins, as there
  (Cilium's `lbipam.cilium.io/…` before `io.cilium/lb-ipam-…`, MetalLB's `metallb.io/…`
  before `metallb.universe.tf/…`);
- Cilium's and MetalLB's annotations disagreeing with no herald annotation to settle it is
  an error: the Service was served by one of them, and nothing says which.
An annotation that loses and asks for something else is a warning, never silently dropped.
Agreement is by meaning: the same addresses or namespaces in any order are the same.

An empty foreign annotation is unset, as Cilium and MetalLB read it (charts render unset
values as ""); an empty herald annotation stays an error, as it always was.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from herald.addresses import IPAddress, address_order

__all__ = [
    "ADDRESS_POOL",
    "ANNOTATION_IPS",
    "ANNOTATION_SHARING_CROSS_NAMESPACE",
    "ANNOTATION_SHARING_KEY",
    "IPS",
    "SHARING_CROSS_NAMESPACE",
    "SHARING_KEY",
    "Finding",
    "IPAMSettings",
    "ipam_settings",
]

HERALD, CILIUM, METALLB = "herald", "Cilium", "MetalLB"

ANNOTATION_IPS = "herald.io/ips"
ANNOTATION_SHARING_KEY = "herald.io/sharing-key"
ANNOTATION_SHARING_CROSS_NAMESPACE = "herald.io/sharing-cross-namespace"

# Per setting, (who defines it, annotation) in the order herald reads them.
Table = tuple[tuple[str, str], ...]

IPS: Table = (
    (HERALD, ANNOTATION_IPS),
    (CILIUM, "lbipam.cilium.io/ips"),
    (CILIUM, "io.cilium/lb-ipam-ips"),
    (METALLB, "metallb.io/loadBalancerIPs"),
    (METALLB, "metallb.universe.tf/loadBalancerIPs"),
)
SHARING_KEY: Table = (
    (HERALD, ANNOTATION_SHARING_KEY),
    (CILIUM, "lbipam.cilium.io/sharing-key"),
    (CILIUM, "io.cilium/lb-ipam-sharing-key"),
    (METALLB, "metallb.io/allow-shared-ip"),
    (METALLB, "metallb.universe.tf/allow-shared-ip"),
)
# MetalLB has none: it lets Services of any namespaces share (see `ipam_settings`).
SHARING_CROSS_NAMESPACE: Table = (
    (HERALD, ANNOTATION_SHARING_CROSS_NAMESPACE),
    (CILIUM, "lbipam.cilium.io/sharing-cross-namespace"),
    (CILIUM, "io.cilium/lb-ipam-sharing-cross-namespace"),
)
# herald itself chooses pools by their serviceSelector; only MetalLB names one.
ADDRESS_POOL: Table = (
    (METALLB, "metallb.io/address-pool"),
    (METALLB, "metallb.universe.tf/address-pool"),
)

_ALL = frozenset(
    name for table in (IPS, SHARING_KEY, SHARING_CROSS_NAMESPACE, ADDRESS_POOL) for _, name in table
)
_ANY_NAMESPACE = frozenset({"*"})

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Finding:
    """Something wrong or doubtful about one annotation, saying what to do about it."""

    annotation: str
    message: str

    @property
    def path(self) -> str:
        return f"metadata.annotations[{self.annotation}]"


@dataclass(frozen=True, slots=True)
class IPAMSettings:
    """What a Service's annotations (and spec.loadBalancerIP) ask of LB-IPAM."""

    # Requested addresses in address order, each once; () asks for any.
    requested: tuple[IPAddress, ...] = ()
    sharing_key: str | None = None
    # Namespaces the Service may share with besides its own ("*": any).
    sharing_namespaces: frozenset[str] = frozenset()
    # The only pool to take addresses from; None: any pool that selects the Service.
    pool: str | None = None
    errors: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()


def ipam_settings(
    annotations: Mapping[str, str], load_balancer_ip: str | None = None, *, foreign: bool = True
) -> IPAMSettings:
    """The effective LB-IPAM settings of a Service, with every error and warning about the
    annotations they come from. `foreign=False` reads herald's annotations only: Cilium's and
    MetalLB's belong to them on Services herald does not serve."""
    lb_ip = ipaddress.ip_address(load_balancer_ip) if load_balancer_ip else None
    if _ALL.isdisjoint(annotations):
        return IPAMSettings(requested=(lb_ip,) if lb_ip else ())
    errors: list[Finding] = []
    warnings: list[Finding] = []

    def read(table: Table, parse: Callable[[str], T], show: Callable[[T], str]) -> _Found[T] | None:
        return _read(annotations, table, parse, show, foreign, errors, warnings)

    ips = read(IPS, _addresses, _show_addresses)
    key = read(SHARING_KEY, _sharing_key, repr)
    cross = read(SHARING_CROSS_NAMESPACE, _namespaces, _show_namespaces)
    pool = read(ADDRESS_POOL, str.strip, repr)

    requested: tuple[IPAddress, ...] = (lb_ip,) if lb_ip else ()
    if ips is not None:
        requested = ips.value
        if lb_ip is not None and lb_ip not in ips.value:
            warnings.append(
                Finding(
                    ips.name,
                    f"spec.loadBalancerIP {lb_ip} is not requested: this annotation wins over "
                    "it and does not list it; add it here or remove spec.loadBalancerIP",
                )
            )
    namespaces: frozenset[str] = frozenset()
    if cross is not None:
        namespaces = cross.value
    elif key is not None and key.owner == METALLB:
        # MetalLB lets Services share whatever their namespaces; one only MetalLB's key lets
        # share keeps that, and still shares only with Services that allow its namespace.
        namespaces = _ANY_NAMESPACE
    return IPAMSettings(
        requested=requested,
        sharing_key=key.value if key else None,
        sharing_namespaces=namespaces,
        pool=pool.value if pool else None,
        errors=tuple(errors),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True, slots=True)
class _Found(Generic[T]):
    owner: str
    name: str
    value: T


def _read(
    annotations: Mapping[str, str],
    table: Table,
    parse: Callable[[str], T],
    show: Callable[[T], str],
    foreign: bool,
    errors: list[Finding],
    warnings: list[Finding],
) -> _Found[T] | None:
    """The winning annotation of one setting; what the others say goes to errors/warnings."""
    found: list[_Found[T]] = []
    for owner, name in table:
        raw = annotations.get(name)
        if raw is None or (owner != HERALD and (not foreign or not raw.strip())):
            continue
        try:
            found.append(_Found(owner, name, parse(raw)))
        except ValueError as err:
            errors.append(Finding(name, str(err)))
    if not found:
        return None
    winner = found[0]
    firsts: dict[str, _Found[T]] = {}
    for entry in found:
        firsts.setdefault(entry.owner, entry)
    herald_name = next((name for owner, name in table if owner == HERALD), None)
    for entry in found[1:]:
        first = firsts[entry.owner]
        if entry is not first:
            if entry.value != first.value:
                warnings.append(
                    Finding(
                        entry.name,
                        f"ignored: {first.name} is read first, as {entry.owner} does, and asks "
                        f"for {show(first.value)}, not {show(entry.value)}; remove this older "
                        "annotation or make it say the same",
                    )
                )
        elif entry.value == winner.value:
            continue
        elif winner.owner == HERALD:
            warnings.append(
                Finding(
                    entry.name,
                    f"ignored: {winner.name} wins and asks for {show(winner.value)}, not "
                    f"{show(entry.value)}; remove this annotation or make it say the same",
                )
            )
        else:
            settle = f", or set {herald_name}, which wins over both" if herald_name else ""
            errors.append(
                Finding(
                    entry.name,
                    f"asks for {show(entry.value)} but {winner.name} asks for "
                    f"{show(winner.value)}, and herald cannot tell which one the Service was "
                    f"served by: remove one{settle}",
                )
            )
    return winner


def _addresses(text: str) -> tuple[IPAddress, ...]:
    found: set[IPAddress] = set()
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            raise ValueError(
                "empty entry; write a comma-separated list of IP addresses such as "
                "'203.0.113.10,2001:db8::10'"
            )
        try:
            found.add(ipaddress.ip_address(entry))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address; write one such as 203.0.113.10 or 2001:db8::10"
            ) from None
    return tuple(sorted(found, key=address_order))


def _show_addresses(addresses: tuple[IPAddress, ...]) -> str:
    return ", ".join(str(address) for address in addresses)


def _sharing_key(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


def _namespaces(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _show_namespaces(namespaces: frozenset[str]) -> str:
    return repr(",".join(sorted(namespaces)))
