"""TCP-MD5 passwords: where Cilium and MetalLB keep them, and the herald Secrets they become.

herald reads a BGPPeerConfig's password from a Secret in namespace herald-system (key
`password`). Cilium keeps it in a Secret of its own namespace (key `password`), MetalLB in a
basic-auth Secret of its namespace (key `password`) or inline in the BGPPeer. The Secret's
content is only known when it is among the imported objects; otherwise the report says
which Secret to copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from herald.api.core import Secret
from herald.api.references import SECRET_NAMESPACES
from herald.importers.build import Draft, Emitted, build
from herald.importers.objects import herald_meta, identify, origin_of
from herald.importers.report import Context, Origin
from herald.importers.source import SourceObject

HERALD_SECRET_NAMESPACE = SECRET_NAMESPACES[0]
SECRETS_FILE = "secret.yaml"
PASSWORD_KEY = "password"


@dataclass(frozen=True)
class SourceSecret:
    origin: Origin
    namespace: str
    name: str
    data: dict[str, str]
    string_data: dict[str, str]


@dataclass
class SecretIndex:
    """The Secrets among the imported objects, and which of them a peer used."""

    secrets: list[SourceSecret] = field(default_factory=list)
    used: set[tuple[str, str]] = field(default_factory=set)

    def find(self, name: str, namespaces: tuple[str, ...]) -> SourceSecret | None:
        """The Secret `name` in the first of `namespaces` that has one; with no namespaces,
        the only Secret of that name."""
        named = [secret for secret in self.secrets if secret.name == name]
        for namespace in namespaces:
            for secret in named:
                if secret.namespace == namespace:
                    return secret
        if not namespaces and len(named) == 1:
            return named[0]
        return None


def read_secrets(objects: list[SourceObject]) -> SecretIndex:
    """The Secrets among the imported objects. Only a password is ever copied out of one, so
    nothing else of them is read (or reported)."""
    index = SecretIndex()
    for obj in objects:
        _, _, name, namespace = identify(obj)
        index.secrets.append(
            SourceSecret(
                origin_of(obj),
                namespace,
                name,
                _strings(obj.raw.get("data")),
                _strings(obj.raw.get("stringData")),
            )
        )
    return index


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(key): item for key, item in value.items() if isinstance(item, str)}


def copy_secret(
    index: SecretIndex, name: str, namespaces: tuple[str, ...], ctx: Context, path: str
) -> Emitted | None:
    """herald's copy (namespace herald-system, key `password` only) of the Secret a peer names,
    or None with the report saying what to do."""
    where = " or ".join(namespaces) if namespaces else "any namespace"
    flag = f" -n {namespaces[0]}" if namespaces else ""
    secret = index.find(name, namespaces)
    if secret is None:
        ctx.not_converted(
            path,
            f"Secret {name!r} ({where}) is not among the imported objects, so its password "
            f"cannot be copied: import it too (kubectl get secret {name}{flag} -o yaml), or create "
            f"Secret {HERALD_SECRET_NAMESPACE}/{name} with key {PASSWORD_KEY}",
        )
        return None
    if PASSWORD_KEY not in secret.data and PASSWORD_KEY not in secret.string_data:
        ctx.not_converted(
            path,
            f"Secret {secret.namespace}/{name} has no key {PASSWORD_KEY}; herald needs the "
            "TCP-MD5 password under that key",
        )
        return None
    index.used.add((secret.namespace, secret.name))
    data = {}
    if PASSWORD_KEY in secret.string_data:
        data["stringData"] = {PASSWORD_KEY: secret.string_data[PASSWORD_KEY]}
    else:
        data["data"] = {PASSWORD_KEY: secret.data[PASSWORD_KEY]}
    if secret.namespace != HERALD_SECRET_NAMESPACE:
        ctx.changed(
            path,
            f"the password is copied from Secret {secret.namespace}/{name} into Secret "
            f"{HERALD_SECRET_NAMESPACE}/{name} ({SECRETS_FILE}), where herald reads it; keep "
            "that file as private as the Secret",
        )
    return _secret(name, data, (secret.origin, ctx.origin), ctx)


def password_secret(name: str, password: str, ctx: Context, path: str) -> Emitted | None:
    """A herald Secret holding a password the source wrote inline."""
    ctx.changed(
        path,
        f"the password written inline is moved into Secret {HERALD_SECRET_NAMESPACE}/{name} "
        f"({SECRETS_FILE}); keep that file private",
    )
    return _secret(name, {"stringData": {PASSWORD_KEY: password}}, (ctx.origin,), ctx)


def _secret(
    name: str, content: Mapping[str, object], origins: tuple[Origin, ...], ctx: Context
) -> Emitted | None:
    meta = herald_meta(name)
    meta["namespace"] = HERALD_SECRET_NAMESPACE
    secret = build(
        Secret, Draft({"apiVersion": "v1", "kind": "Secret", "metadata": meta, **content}, ctx)
    )
    return None if secret is None else Emitted(secret, origins, SECRETS_FILE)
