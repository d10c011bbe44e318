"""A kubeconfig file that points kubectl and client libraries at the test server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def kubeconfig(
    server_url: str,
    namespace: str = "default",
    token: str = "admin",
    ca_pem: bytes | None = None,
    name: str = "herald-lab",
) -> dict[str, Any]:
    """One cluster, one user with a bearer token (see rbac.py), one current context."""
    cluster: dict[str, Any] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": name, "user": name, "namespace": namespace},
            }
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path | str,
    server_url: str,
    namespace: str = "default",
    token: str = "admin",
    ca_pem: bytes | None = None,
) -> Path:
    """Written whole or not at all (a rename), so a process waiting for it never reads half."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(
        yaml.safe_dump(kubeconfig(server_url, namespace, token, ca_pem), sort_keys=False)
    )
    partial.chmod(0o600)
    partial.replace(target)
    return target
