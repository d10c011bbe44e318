"""The Kubernetes API as herald's source of cluster state (lightkube)."""

from herald.sources.kube.client import connect, kube_config
from herald.sources.kube.kinds import AGENT_KINDS, CONTROLLER_KINDS, DEFAULT_NAMESPACE
from herald.sources.kube.source import KubeSource, LeadershipLost

__all__ = [
    "AGENT_KINDS",
    "CONTROLLER_KINDS",
    "DEFAULT_NAMESPACE",
    "KubeSource",
    "LeadershipLost",
    "connect",
    "kube_config",
]
