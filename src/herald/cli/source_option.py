"""The options every command that reads cluster state shares: which source, and where.

`@source_options` adds `--source`, `--manifests`, `--kubeconfig` and `--namespace` and hands
the command one `source: SourceChoice`; `@leader_election_options` adds the Lease timings
and hands it `lease: LeaseTimings`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from herald.controller.leader import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, LeaseTimings

if TYPE_CHECKING:
    from herald.sources.base import Source
    from herald.sources.kube.kinds import Kind

DEFAULT_MANIFESTS = Path("/run/herald/manifests")
DEFAULT_NAMESPACE = "herald-system"
SOURCES = ("files", "kube")
F = TypeVar("F", bound=Callable[..., Any])

manifests_option = click.option(
    "--manifests",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="HERALD_MANIFESTS",
    default=DEFAULT_MANIFESTS,
    show_default=True,
    help="Directory of manifests (the embedded source); env HERALD_MANIFESTS.",
)

_source_option = click.option(
    "--source",
    "source_kind",
    type=click.Choice(SOURCES),
    envvar="HERALD_SOURCE",
    default="files",
    show_default=True,
    help="Where objects come from: a manifests directory, or the Kubernetes API; "
    "env HERALD_SOURCE.",
)
_kubeconfig_option = click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="kubeconfig file (--source kube). Default, as kubectl: env KUBECONFIG, else the "
    "in-cluster service account, else ~/.kube/config.",
)


def _namespace_option(flag: str) -> Callable[[F], F]:
    return click.option(
        flag,
        "herald_namespace",
        envvar="HERALD_NAMESPACE",
        default=DEFAULT_NAMESPACE,
        show_default=True,
        help="herald's namespace (--source kube): the controller's Lease and the Secrets "
        "BGPPeerConfigs name live there; env HERALD_NAMESPACE.",
    )


@dataclass(frozen=True)
class SourceChoice:
    kind: str
    manifests: Path
    kubeconfig: Path | None
    namespace: str

    def open(
        self, kinds: tuple[Kind, ...] | None = None, lease: LeaseTimings | None = None
    ) -> Source:
        """The source chosen; `kinds` limits what the Kubernetes source watches."""
        if self.kind == "files":
            from herald.sources.files import FileSource

            return FileSource(self.manifests)
        from herald.sources.kube import AGENT_KINDS, KubeSource, connect, kube_config

        try:
            config = kube_config(self.kubeconfig)
        except Exception as err:  # lightkube raises several kinds for one cause
            raise click.ClickException(
                f"no usable Kubernetes configuration ({err}); pass --kubeconfig, set "
                "KUBECONFIG, or run in a Pod with a service account"
            ) from err
        return KubeSource(connect(config), self.namespace, kinds or AGENT_KINDS, lease)


def source_options(command: F, namespace_flag: str = "--namespace") -> F:
    """`namespace_flag`: another name for herald's namespace where the command's own
    `--namespace` selects what to list (`herald get svc -n`, as kubectl)."""

    @functools.wraps(command)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        kwargs["source"] = SourceChoice(
            kwargs.pop("source_kind"),
            kwargs.pop("manifests"),
            kwargs.pop("kubeconfig"),
            kwargs.pop("herald_namespace"),
        )
        return command(*args, **kwargs)

    options = (
        _namespace_option(namespace_flag),
        _kubeconfig_option,
        manifests_option,
        _source_option,
    )
    for option in options:
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]


def listing_source_options(command: F) -> F:
    """`source_options` for commands that list objects: herald's namespace is
    `--herald-namespace`, leaving `-n/--namespace` to the listing."""
    return source_options(command, "--herald-namespace")


def leader_election_options(command: F) -> F:
    @functools.wraps(command)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            kwargs["lease"] = LeaseTimings(
                kwargs.pop("lease_duration"),
                kwargs.pop("renew_deadline"),
                kwargs.pop("retry_period"),
            )
        except ValueError as err:
            raise click.UsageError(str(err)) from err
        return command(*args, **kwargs)

    options = (
        click.option(
            "--retry-period",
            envvar="HERALD_RETRY_PERIOD",
            type=click.FloatRange(0, min_open=True),
            default=RETRY_PERIOD,
            show_default=True,
            help="Seconds between a candidate's tries at the Lease (--source kube); env "
            "HERALD_RETRY_PERIOD.",
        ),
        click.option(
            "--renew-deadline",
            envvar="HERALD_RENEW_DEADLINE",
            type=click.FloatRange(0, min_open=True),
            default=RENEW_DEADLINE,
            show_default=True,
            help="Seconds the leader keeps leading without a successful renewal; shorter "
            "than --lease-duration (--source kube); env HERALD_RENEW_DEADLINE.",
        ),
        click.option(
            "--lease-duration",
            envvar="HERALD_LEASE_DURATION",
            type=click.IntRange(1),
            default=int(LEASE_DURATION),
            show_default=True,
            help="Seconds a standby waits after the Lease's last renewal before taking "
            "over (--source kube); env HERALD_LEASE_DURATION.",
        ),
    )
    for option in options:
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]
