"""Who a request comes from, and whether RBAC lets them make it: kube-apiserver's authorizer.

A bearer token names its user (the test double trusts it): `admin` (or any unknown token)
is the cluster admin in `system:masters`, `serviceaccount:NAMESPACE:NAME` is that service
account. With authorization on, a request is allowed only when a (Cluster)RoleBinding for
the user or one of its groups binds a rule that grants the verb on the resource, as the RBAC
authorizer decides; everyone authenticated may read discovery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

ADMIN_TOKEN = "admin"
_SA_PREFIX = "serviceaccount:"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups


ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"))


def token_for_service_account(namespace: str, name: str) -> str:
    return f"{_SA_PREFIX}{namespace}:{name}"


def user_from_token(authorization: str) -> User:
    token = authorization.removeprefix("Bearer ").strip()
    if token.startswith(_SA_PREFIX):
        namespace, _, name = token[len(_SA_PREFIX) :].partition(":")
        return User(
            f"system:serviceaccount:{namespace}:{name}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )
    return ADMIN


def _subject_matches(subject: Obj, user: User) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        name = f"system:serviceaccount:{subject.get('namespace', '')}:{subject.get('name', '')}"
        return name == user.name
    if kind == "User":
        return bool(subject.get("name") == user.name)
    if kind == "Group":
        return subject.get("name") in user.groups
    return False


def _rule_allows(
    rule: Obj, verb: str, group: str, resource: str, subresource: str, name: str
) -> bool:
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    names = rule.get("resourceNames") or []
    wanted = f"{resource}/{subresource}" if subresource else resource
    return (
        ("*" in verbs or verb in verbs)
        and ("*" in groups or group in groups)
        and (
            "*" in resources
            or wanted in resources
            or (bool(subresource) and f"*/{subresource}" in resources)
        )
        and (not names or name in names)
    )


@dataclass(frozen=True)
class Policy:
    """The RBAC objects in force: read from the store for each decision."""

    cluster_roles: dict[str, Obj]
    cluster_role_bindings: list[Obj]
    roles: dict[tuple[str, str], Obj]
    role_bindings: list[Obj]

    @staticmethod
    def of(
        cluster_roles: Iterable[Obj],
        cluster_role_bindings: Iterable[Obj],
        roles: Iterable[Obj],
        role_bindings: Iterable[Obj],
    ) -> Policy:
        return Policy(
            {r["metadata"]["name"]: r for r in cluster_roles},
            list(cluster_role_bindings),
            {(r["metadata"].get("namespace", ""), r["metadata"]["name"]): r for r in roles},
            list(role_bindings),
        )

    def _rules(self, binding: Obj, namespace: str) -> list[Obj]:
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = self.cluster_roles.get(str(ref.get("name")))
        else:
            role = self.roles.get((namespace, str(ref.get("name"))))
        return list((role or {}).get("rules") or [])

    def allows(
        self,
        user: User,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str,
    ) -> bool:
        if user.is_admin:
            return True
        rules: list[Obj] = []
        for binding in self.cluster_role_bindings:
            if any(_subject_matches(s, user) for s in binding.get("subjects") or []):
                rules += self._rules(binding, "")
        if namespace:
            for binding in self.role_bindings:
                if binding["metadata"].get("namespace") != namespace:
                    continue
                if any(_subject_matches(s, user) for s in binding.get("subjects") or []):
                    rules += self._rules(binding, namespace)
        return any(_rule_allows(r, verb, group, resource, subresource, name) for r in rules)


def forbidden_message(
    user: User, verb: str, group: str, resource: str, subresource: str, namespace: str, name: str
) -> str:
    wanted = f"{resource}/{subresource}" if subresource else resource
    what = f'{resource} "{name}"' if name else resource
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (
        f'{what} is forbidden: User "{user.name}" cannot {verb} resource "{wanted}" '
        f'in API group "{group}" {where}'
    )
