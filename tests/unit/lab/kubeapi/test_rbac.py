"""The RBAC decision: bindings, subjects, rules, wildcards, subresources, resource names."""

from __future__ import annotations

from herald.lab.kubeapi.rbac import (
    ADMIN,
    Policy,
    forbidden_message,
    token_for_service_account,
    user_from_token,
)

SA = user_from_token("Bearer " + token_for_service_account("herald-system", "controller"))


def role(name: str, *rules: dict[str, list[str]], namespace: str = "") -> dict[str, object]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"metadata": meta, "rules": list(rules)}


def binding(
    role_kind: str, role_name: str, subject: dict[str, str], namespace: str = ""
) -> dict[str, object]:
    meta = {"name": f"b-{role_name}", **({"namespace": namespace} if namespace else {})}
    return {
        "metadata": meta,
        "roleRef": {"kind": role_kind, "name": role_name},
        "subjects": [subject],
    }


SUBJECT = {"kind": "ServiceAccount", "name": "controller", "namespace": "herald-system"}
POLICY = Policy.of(
    [
        role(
            "read-services",
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
        ),
        role("status", {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch"]}),
        role(
            "events",
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        ),
    ],
    [
        binding("ClusterRole", "read-services", SUBJECT),
        binding(
            "ClusterRole",
            "status",
            {"kind": "Group", "name": "system:serviceaccounts:herald-system"},
        ),
    ],
    [
        role(
            "lease",
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["*"],
                "resourceNames": ["herald"],
            },
            namespace="herald-system",
        )
    ],
    [
        binding("Role", "lease", SUBJECT, namespace="herald-system"),
        binding("ClusterRole", "events", SUBJECT, namespace="default"),
    ],
)


def test_users_from_tokens() -> None:
    assert SA.name == "system:serviceaccount:herald-system:controller"
    assert "system:serviceaccounts:herald-system" in SA.groups and not SA.is_admin
    assert user_from_token("") == ADMIN and user_from_token("Bearer whatever").is_admin


def test_cluster_bindings_by_subject_and_group() -> None:
    assert POLICY.allows(SA, "list", "", "services", "", "", "")
    assert POLICY.allows(SA, "watch", "", "services", "", "default", "")
    assert not POLICY.allows(SA, "patch", "", "services", "", "default", "web")
    assert POLICY.allows(SA, "patch", "", "services", "status", "default", "web")
    other = user_from_token(token_for_service_account("elsewhere", "controller"))
    assert not POLICY.allows(other, "list", "", "services", "", "", "")
    assert POLICY.allows(ADMIN, "delete", "apps", "deployments", "", "x", "y")


def test_role_bindings_hold_in_their_namespace_only_and_names_restrict() -> None:
    assert POLICY.allows(
        SA, "update", "coordination.k8s.io", "leases", "", "herald-system", "herald"
    )
    assert not POLICY.allows(
        SA, "update", "coordination.k8s.io", "leases", "", "herald-system", "other"
    )
    assert not POLICY.allows(SA, "update", "coordination.k8s.io", "leases", "", "default", "herald")
    # A RoleBinding to a ClusterRole grants it in the binding's namespace.
    assert POLICY.allows(SA, "create", "events.k8s.io", "events", "", "default", "")
    assert not POLICY.allows(SA, "create", "events.k8s.io", "events", "", "kube-system", "")


def test_forbidden_messages_read_as_kube_apiserver_writes_them() -> None:
    assert forbidden_message(SA, "patch", "", "services", "", "default", "web") == (
        'services "web" is forbidden: User "system:serviceaccount:herald-system:controller" '
        'cannot patch resource "services" in API group "" in the namespace "default"'
    )
    assert forbidden_message(SA, "list", "apps", "deployments", "", "", "").endswith(
        'cannot list resource "deployments" in API group "apps" at the cluster scope'
    )
