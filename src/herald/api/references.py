"""Checks between objects: every name one object refers to must exist in the snapshot."""

from __future__ import annotations

from herald.api.problems import Location, Problem
from herald.api.snapshot import ClusterState

# Where herald looks for Secrets named by BGPPeerConfig.authSecretRef.
SECRET_NAMESPACES = ("herald-system", "default")


def check_references(state: ClusterState) -> list[Problem]:
    problems: list[Problem] = []

    def where(kind: str, name: str) -> Location:
        return state.locations.get((kind, "", name), Location("(unknown)", 0))

    for config in state.bgp_cluster_configs:
        name = config.metadata.name
        for i, instance in enumerate(config.spec.bgp_instances):
            for j, peer in enumerate(instance.peers):
                ref = peer.peer_config_ref
                if ref is not None and ref.name not in state.peer_configs_by_name:
                    problems.append(
                        Problem(
                            where("BGPClusterConfig", name),
                            f"spec.bgpInstances[{i}].peers[{j}].peerConfigRef.name",
                            f"no BGPPeerConfig named {ref.name!r}; "
                            + _known("BGPPeerConfig", sorted(state.peer_configs_by_name)),
                        )
                    )

    secrets = {
        secret.metadata.name: secret
        for secret in state.secrets
        if secret.metadata.namespace in SECRET_NAMESPACES
    }
    for peer_config in state.bgp_peer_configs:
        name, spec = peer_config.metadata.name, peer_config.spec
        if spec.bfd_profile_ref is not None and (
            spec.bfd_profile_ref not in state.bfd_profiles_by_name
        ):
            problems.append(
                Problem(
                    where("BGPPeerConfig", name),
                    "spec.bfdProfileRef",
                    f"no BFDProfile named {spec.bfd_profile_ref!r}; "
                    + _known("BFDProfile", sorted(state.bfd_profiles_by_name)),
                )
            )
        if spec.auth_secret_ref is not None:
            secret = secrets.get(spec.auth_secret_ref)
            if secret is None:
                problems.append(
                    Problem(
                        where("BGPPeerConfig", name),
                        "spec.authSecretRef",
                        f"no Secret named {spec.auth_secret_ref!r} in namespace "
                        + " or ".join(SECRET_NAMESPACES),
                    )
                )
            elif "password" not in secret.data and "password" not in secret.string_data:
                problems.append(
                    Problem(
                        where("BGPPeerConfig", name),
                        "spec.authSecretRef",
                        f"Secret {spec.auth_secret_ref!r} has no key `password`",
                    )
                )
    return problems


def _known(kind: str, names: list[str]) -> str:
    if not names:
        return f"there is no {kind} at all"
    return f"known: {', '.join(names)}"
