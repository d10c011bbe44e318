"""The kinds the server serves: built-in Kubernetes resources and those CRDs register."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_READ_WRITE = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class PrinterColumn:
    """One column of `kubectl get` output for a custom resource (additionalPrinterColumns)."""

    name: str
    type: str
    json_path: str
    priority: int = 0
    description: str = ""
    format: str = ""


@dataclass(frozen=True)
class ResourceType:
    """One resource as discovery lists it: /apis/<group>/<version>/<plural>."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    verbs: tuple[str, ...] = _READ_WRITE
    # Only custom resources carry these; built-ins have printers in table.py.
    printer_columns: tuple[PrinterColumn, ...] | None = None
    custom: bool = False
    storage: bool = True
    served: bool = True
    # For custom resources: "schema", the version's openAPIV3Schema, and "selectableFields".
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


def _t(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    status: bool = False,
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=short,
        has_status=status,
        categories=categories,
    )


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _t("", "v1", "namespaces", "Namespace", False, ("ns",), status=True),
    _t("", "v1", "nodes", "Node", False, ("no",), status=True),
    _t("", "v1", "services", "Service", True, ("svc",), status=True, categories=("all",)),
    _t("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    _t("", "v1", "pods", "Pod", True, ("po",), status=True, categories=("all",)),
    _t("", "v1", "secrets", "Secret", True),
    _t("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    _t("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    _t("", "v1", "events", "Event", True, ("ev",)),
    _t("apps", "v1", "deployments", "Deployment", True, ("deploy",), True, ("all",)),
    _t("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), True, ("all",)),
    _t("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), True, ("all",)),
    _t("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), True, ("all",)),
    _t("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), True),
    _t("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    _t("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    _t("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    _t("coordination.k8s.io", "v1", "leases", "Lease", True),
    _t("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
    _t("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _t("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _t("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _t("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _t(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        status=True,
    ),
)

# Groups in the order kube-apiserver lists them (legacy core first, then by priority).
BUILTIN_GROUP_ORDER = (
    "",
    "apps",
    "events.k8s.io",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
)


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves, one per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out: list[ResourceType] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        columns = tuple(
            PrinterColumn(
                name=str(col["name"]),
                type=str(col.get("type", "string")),
                json_path=str(col["jsonPath"]),
                priority=int(col.get("priority", 0)),
                description=str(col.get("description", "")),
                format=str(col.get("format", "")),
            )
            for col in version.get("additionalPrinterColumns") or []
        )
        if not columns:
            # Without declared columns kube-apiserver prints the object's age.
            columns = (PrinterColumn("Age", "date", ".metadata.creationTimestamp"),)
        out.append(
            ResourceType(
                group=str(spec["group"]),
                version=str(version["name"]),
                plural=str(names["plural"]),
                kind=str(names["kind"]),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=str(names.get("singular") or names["kind"].lower()),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                has_status="status" in (version.get("subresources") or {}),
                printer_columns=columns,
                custom=True,
                storage=bool(version.get("storage", False)),
                extra={
                    "schema": (version.get("schema") or {}).get("openAPIV3Schema"),
                    "selectableFields": frozenset(
                        str(f["jsonPath"]).lstrip(".")
                        for f in version.get("selectableFields") or []
                    ),
                },
            )
        )
    return out


class ResourceRegistry:
    """The served resource types; CRDs add and remove theirs while the server runs."""

    def __init__(self, builtin: Iterable[ResourceType] = BUILTIN_TYPES) -> None:
        self._builtin = list(builtin)
        self._custom: dict[str, list[ResourceType]] = {}

    def set_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        if types:
            self._custom[crd_name] = types
        else:
            self._custom.pop(crd_name, None)

    def remove_crd(self, crd_name: str) -> None:
        self._custom.pop(crd_name, None)

    def all(self) -> list[ResourceType]:
        out = list(self._builtin)
        for name in sorted(self._custom):
            out.extend(self._custom[name])
        return out

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        for rtype in self.all():
            if (rtype.group, rtype.version, rtype.plural) == (group, version, plural):
                return rtype
        return None

    def group_versions(self) -> list[tuple[str, list[str]]]:
        """Each served group with its versions, preferred (storage) version first."""
        versions: dict[str, list[str]] = {}
        preferred: dict[str, str] = {}
        for rtype in self.all():
            seen = versions.setdefault(rtype.group, [])
            if rtype.version not in seen:
                seen.append(rtype.version)
            if rtype.storage:
                preferred.setdefault(rtype.group, rtype.version)
        order = [g for g in BUILTIN_GROUP_ORDER if g in versions]
        order += sorted(g for g in versions if g not in BUILTIN_GROUP_ORDER)
        out = []
        for group in order:
            vs = versions[group]
            first = preferred.get(group, vs[0])
            out.append((group, [first] + [v for v in vs if v != first]))
        return out

    def types_in(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self.all() if t.group == group and t.version == version]
