"""The Table form of objects that `kubectl get` asks for (`Accept: ...;as=Table;g=meta.k8s.io`).

Columns follow kube-apiserver's printers for the built-in kinds herald uses, a custom
resource's additionalPrinterColumns, and the default `Name, Created At` for the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from herald.lab.kubeapi.resources import PrinterColumn, ResourceType

Obj = dict[str, Any]
Cell = Any


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, the AGE kubectl prints."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(obj: Obj, now: datetime) -> str:
    created = _parse_time(str((obj.get("metadata") or {}).get("creationTimestamp", "")))
    if created is None:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.-]+)==\"([^\"]*)\"\)\]")


def json_path(obj: Any, path: str) -> Any:
    """The first value a printer column's JSONPath names, None when absent."""
    values = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return None
        pos = m.end()
        field, index, filter_key, filter_value = m.groups()
        nxt: list[Any] = []
        for value in values:
            if field is not None and isinstance(value, dict) and field in value:
                nxt.append(value[field])
            elif index == "*" and isinstance(value, list):
                nxt.extend(value)
            elif index is not None and index != "*" and isinstance(value, list):
                if int(index) < len(value):
                    nxt.append(value[int(index)])
            elif filter_key is not None and isinstance(value, list):
                nxt.extend(
                    item
                    for item in value
                    if isinstance(item, dict)
                    and str(json_path(item, "." + filter_key)) == filter_value
                )
        values = nxt
    return values[0] if values else None


def _column(name: str, kind: str = "string", fmt: str = "", priority: int = 0) -> Obj:
    return {
        "name": name,
        "type": kind,
        "format": fmt,
        "description": "",
        "priority": priority,
    }


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _service_ports(spec: Obj) -> str:
    ports = []
    for port in spec.get("ports") or []:
        text = str(port.get("port"))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(ports) or "<none>"


def _service_external_ip(obj: Obj) -> str:
    spec = obj.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    external = list(spec.get("externalIPs") or [])
    if kind == "ExternalName":
        return str(spec.get("externalName", "<none>"))
    if kind == "LoadBalancer":
        ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ips = [
            str(i.get("ip") or i.get("hostname"))
            for i in ingress
            if i.get("ip") or i.get("hostname")
        ]
        ips += [ip for ip in external if ip not in ips]
        return ",".join(ips) if ips else "<pending>"
    return ",".join(external) if external else "<none>"


def _selector(labels: dict[str, str] | None) -> str:
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _service_row(obj: Obj, now: datetime) -> list[Cell]:
    spec = obj.get("spec") or {}
    return [
        _name(obj),
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        _service_external_ip(obj),
        _service_ports(spec),
        age(obj, now),
        _selector(spec.get("selector")),
    ]


def _node_row(obj: Obj, now: datetime) -> list[Cell]:
    status = obj.get("status") or {}
    ready = next(
        (c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"),
        None,
    )
    state = {"True": "Ready", "False": "NotReady"}.get(str(ready), "Unknown")
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    prefix = "node-role.kubernetes.io/"
    roles = sorted(
        k[len(prefix) :] for k in (obj["metadata"].get("labels") or {}) if k.startswith(prefix)
    )
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        _name(obj),
        state,
        ",".join(roles) or "<none>",
        age(obj, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def _endpointslice_row(obj: Obj, now: datetime) -> list[Cell]:
    ports = ",".join(str(p.get("port", "<unset>")) for p in obj.get("ports") or []) or "<unset>"
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(addresses[:3]) or "<unset>"
    if len(addresses) > 3:
        shown += f" + {len(addresses) - 3} more..."
    return [_name(obj), obj.get("addressType", ""), ports, shown, age(obj, now)]


def _workload_images(obj: Obj) -> tuple[str, str]:
    containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers"
    ) or []
    return (
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
    )


def _deployment_row(obj: Obj, now: datetime) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _workload_images(obj)
    return [
        _name(obj),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(obj, now),
        names,
        images,
        _selector((spec.get("selector") or {}).get("matchLabels")),
    ]


def _daemonset_row(obj: Obj, now: datetime) -> list[Cell]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    names, images = _workload_images(obj)
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector")
    return [
        _name(obj),
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        _selector(node_selector),
        age(obj, now),
        names,
        images,
        _selector((spec.get("selector") or {}).get("matchLabels")),
    ]


Printer = tuple[list[Obj], Callable[[Obj, datetime], list[Cell]]]

_NAME = _column("Name", fmt="name")
_AGE = _column("Age")
_WORKLOAD_WIDE = [
    _column("Containers", priority=1),
    _column("Images", priority=1),
    _column("Selector", priority=1),
]

_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "Service"): (
        [
            _NAME,
            _column("Type"),
            _column("Cluster-IP"),
            _column("External-IP"),
            _column("Port(s)"),
            _AGE,
            _column("Selector", priority=1),
        ],
        _service_row,
    ),
    ("", "Node"): (
        [
            _NAME,
            _column("Status"),
            _column("Roles"),
            _AGE,
            _column("Version"),
            _column("Internal-IP", priority=1),
            _column("External-IP", priority=1),
            _column("OS-Image", priority=1),
            _column("Kernel-Version", priority=1),
            _column("Container-Runtime", priority=1),
        ],
        _node_row,
    ),
    ("", "Namespace"): (
        [_NAME, _column("Status"), _AGE],
        lambda o, now: [_name(o), (o.get("status") or {}).get("phase", ""), age(o, now)],
    ),
    ("", "ConfigMap"): (
        [_NAME, _column("Data", "integer"), _AGE],
        lambda o, now: [
            _name(o),
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            age(o, now),
        ],
    ),
    ("", "Secret"): (
        [_NAME, _column("Type"), _column("Data", "integer"), _AGE],
        lambda o, now: [
            _name(o),
            o.get("type", "Opaque"),
            len(o.get("data") or {}) + len(o.get("stringData") or {}),
            age(o, now),
        ],
    ),
    ("", "ServiceAccount"): (
        [_NAME, _column("Secrets", "integer"), _AGE],
        lambda o, now: [_name(o), len(o.get("secrets") or []), age(o, now)],
    ),
    ("", "Event"): (
        [
            _column("Last Seen"),
            _column("Type"),
            _column("Reason"),
            _column("Object"),
            _column("Message"),
        ],
        lambda o, now: [
            age(
                {
                    "metadata": {
                        "creationTimestamp": o.get("lastTimestamp")
                        or o["metadata"].get("creationTimestamp")
                    }
                },
                now,
            ),
            o.get("type", ""),
            o.get("reason", ""),
            f"{str((o.get('involvedObject') or {}).get('kind', '')).lower()}/"
            f"{(o.get('involvedObject') or {}).get('name', '')}",
            o.get("message", ""),
        ],
    ),
    ("discovery.k8s.io", "EndpointSlice"): (
        [_NAME, _column("AddressType"), _column("Ports"), _column("Endpoints"), _AGE],
        _endpointslice_row,
    ),
    ("apps", "Deployment"): (
        [
            _NAME,
            _column("Ready"),
            _column("Up-to-date", "integer"),
            _column("Available", "integer"),
            _AGE,
            *_WORKLOAD_WIDE,
        ],
        _deployment_row,
    ),
    ("apps", "DaemonSet"): (
        [
            _NAME,
            _column("Desired", "integer"),
            _column("Current", "integer"),
            _column("Ready", "integer"),
            _column("Up-to-date", "integer"),
            _column("Available", "integer"),
            _column("Node Selector"),
            _AGE,
            *_WORKLOAD_WIDE,
        ],
        _daemonset_row,
    ),
    ("coordination.k8s.io", "Lease"): (
        [_NAME, _column("Holder"), _AGE],
        lambda o, now: [
            _name(o),
            (o.get("spec") or {}).get("holderIdentity", ""),
            age(o, now),
        ],
    ),
}


def _custom_cell(obj: Obj, column: PrinterColumn, now: datetime) -> Cell:
    value = json_path(obj, column.json_path)
    if value is None:
        return None
    if column.type == "date":
        created = _parse_time(str(value))
        return human_duration((now - created).total_seconds()) if created else str(value)
    if column.type == "integer" and isinstance(value, int | float | str):
        try:
            return int(value)
        except ValueError:
            return value
    if column.type in ("boolean", "number"):
        return value
    return value if isinstance(value, str) else str(value)


def _printer(rtype: ResourceType) -> Printer:
    if rtype.printer_columns is not None:
        columns = [_NAME] + [
            _column(c.name, c.type, c.format, c.priority) for c in rtype.printer_columns
        ]
        custom = rtype.printer_columns
        return columns, lambda o, now: [
            _name(o),
            *(_custom_cell(o, c, now) for c in custom),
        ]
    printer = _PRINTERS.get((rtype.group, rtype.kind))
    if printer is not None:
        return printer
    return (
        [_NAME, _column("Created At", "date")],
        lambda o, now: [_name(o), o["metadata"].get("creationTimestamp")],
    )


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "Object":
        return obj
    if include == "None":
        return None
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def to_table(
    rtype: ResourceType,
    objs: list[Obj],
    now: datetime,
    resource_version: str,
    include_object: str = "Metadata",
    headers: bool = True,
) -> Obj:
    """A meta.k8s.io/v1 Table of `objs`; watch events after the first carry no headers."""
    columns, row = _printer(rtype)
    table: Obj = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns if headers else None,
        "rows": [{"cells": row(o, now), "object": _row_object(o, include_object)} for o in objs],
    }
    return table
