"""`herald import`: Cilium's and MetalLB's configuration -> herald.io/v1alpha1 manifests, and
a report of what each source object became and of everything that did not come across.

`convert` is pure: parsed objects in (see `source.py`), herald objects, their rendered files
and the located findings out. The objects are built through herald's own models and the
rendered files are loaded again with herald's manifest loader, so what the import writes
passes `herald validate`, or the report says why not (a Secret or a referenced object that
was not among the inputs).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from herald.api.manifests import parse_manifests
from herald.api.problems import ManifestError
from herald.importers import cilium, legacy, metallb, render
from herald.importers.build import Emitted
from herald.importers.objects import close, identify, open_object, origin_of
from herald.importers.report import PARTIAL, Context, Finding, Outcome
from herald.importers.report import render as render_report
from herald.importers.secrets import HERALD_SECRET_NAMESPACE, read_secrets
from herald.importers.source import SourceObject

Source = Literal["auto", "cilium", "metallb"]
SOURCES: tuple[Source, ...] = ("auto", "cilium", "metallb")
OWNERS = {"cilium": "Cilium", "metallb": "MetalLB", "auto": "everyone"}


@dataclass(frozen=True)
class Result:
    emitted: tuple[Emitted, ...]
    findings: tuple[Finding, ...]
    files: dict[str, str] = field(default_factory=dict)  # output file name -> its text

    @property
    def failed(self) -> bool:
        """The input is malformed: nothing may be written."""
        return any(f.outcome is Outcome.ERROR for f in self.findings)

    @property
    def partial(self) -> bool:
        """Something could not be converted."""
        return any(f.outcome in PARTIAL for f in self.findings)

    def report(self) -> str:
        return render_report(self.findings, len(self.emitted))


@dataclass
class _Sorted:
    """The input sorted by what reads it."""

    cilium: list[SourceObject] = field(default_factory=list)
    metallb: list[SourceObject] = field(default_factory=list)
    legacy: list[tuple[SourceObject, bool]] = field(default_factory=list)  # (object, Cilium's)
    secrets: list[SourceObject] = field(default_factory=list)
    services: list[SourceObject] = field(default_factory=list)


def convert(
    objects: Sequence[SourceObject], source: Source = "auto", read: Iterable[Finding] = ()
) -> Result:
    """Convert `objects` (what `source.read_inputs` read, with its findings `read`)."""
    findings: list[Finding] = list(read)
    ordered = sorted(objects, key=SourceObject.sort_key)
    inputs = _sort(ordered, source, findings)
    secrets = read_secrets(inputs.secrets)
    emitted: list[Emitted] = []
    emitted += cilium.convert(inputs.cilium, secrets, findings)
    services = _services(inputs.services)
    for config in metallb.read_resources(inputs.metallb, findings):
        emitted += metallb.plan(config, secrets, services)
    resource_namespaces = {identify(obj)[3] or metallb.NAMESPACE for obj in inputs.metallb}
    for obj, is_cilium in inputs.legacy:
        opened = open_object(obj, findings)
        namespace = opened.meta.namespace or metallb.NAMESPACE
        if not is_cilium and namespace in resource_namespaces:
            opened.ctx.ignored(
                "",
                f"MetalLB 0.13 and later read custom resources only, and namespace {namespace} "
                "has some among the imported objects: this ConfigMap is left over; its "
                "content is not converted",
            )
            opened.fields.ignore("data", "metadata")
            continue
        legacy_config = legacy.read_configmap(obj, opened, is_cilium)
        close(opened)
        if legacy_config is not None:
            what = "Cilium 1.10's BGP configuration" if is_cilium else "MetalLB's configuration"
            emitted += metallb.plan(legacy_config, secrets, services, _subject(what))
    for secret in secrets.secrets:
        ctx = Context(secret.origin, findings)
        if (secret.namespace, secret.name) in secrets.used:
            ctx.became(
                f"{secret.origin.text} became Secret {HERALD_SECRET_NAMESPACE}/{secret.name} "
                "(its key password only)"
            )
        else:
            ctx.ignored("", "no imported BGP peer uses this Secret; it is not copied")
    unique = _unique(emitted, findings)
    files = render.render(unique)
    _check(files, unique, findings)
    return Result(tuple(unique), tuple(findings), files)


def _subject(what: str) -> Callable[[Context], str]:
    def subject(ctx: Context) -> str:
        return f"{ctx.origin.text} ({what})"

    return subject


def _sort(objects: list[SourceObject], source: Source, findings: list[Finding]) -> _Sorted:
    """Which reader each object goes to; the others are reported as ignored (or malformed)."""
    found = _Sorted()
    for obj in objects:
        api_version, kind, _, _ = identify(obj)
        ctx = Context(origin_of(obj), findings)
        group = api_version.rpartition("/")[0]
        if not kind or not api_version:
            ctx.error(
                "kind" if not kind else "apiVersion",
                "missing; every object needs apiVersion and kind",
            )
        elif group == cilium.GROUP:
            _sort_into(obj, ctx, found.cilium, source, "cilium", cilium.KINDS, cilium.VERSIONS,
                       cilium.PASSED_OVER)  # fmt: skip
        elif group == metallb.GROUP:
            _sort_into(obj, ctx, found.metallb, source, "metallb", metallb.KINDS,
                       metallb.VERSIONS, metallb.PASSED_OVER)  # fmt: skip
        elif api_version == "v1" and kind == "ConfigMap" and legacy.embedded(obj.raw):
            is_cilium = source == "cilium" or (source == "auto" and legacy.is_cilium(obj.raw))
            found.legacy.append((obj, is_cilium))
        elif api_version == "v1" and kind == "Secret":
            found.secrets.append(obj)
        elif api_version == "v1" and kind == "Service":
            found.services.append(obj)
            ctx.ignored(
                "",
                "herald reads Services as they are, annotations included (docs/migration.md, "
                "Service annotations); nothing to convert",
            )
        elif group == "herald.io":
            ctx.ignored("", "already a herald object; use it as it is")
        else:
            ctx.ignored("", f"{kind} ({api_version}) is not Cilium or MetalLB configuration")
    return found


def _sort_into(
    obj: SourceObject,
    ctx: Context,
    into: list[SourceObject],
    source: Source,
    reader: Source,
    kinds: Iterable[str],
    versions: Iterable[str],
    passed_over: dict[str, str],
) -> None:
    api_version, kind, _, _ = identify(obj)
    if source not in ("auto", reader):
        ctx.ignored(
            "",
            f"{kind} is {OWNERS[reader]} configuration; --from {source} reads "
            f"{OWNERS[source]}'s only",
        )
    elif kind in passed_over:
        ctx.ignored("", passed_over[kind])
    elif kind not in kinds:
        ctx.ignored("", f"{kind} is not load-balancing configuration herald has an equivalent of")
    elif api_version not in versions:
        ctx.not_converted(
            "apiVersion",
            f"{api_version} is not a version of {kind} herald import reads "
            f"({', '.join(versions)}); not converted",
        )
    else:
        into.append(obj)


def _services(objects: list[SourceObject]) -> list[metallb.ServiceAddresses]:
    """The imported LoadBalancer Services herald would serve and the addresses they hold."""
    found = []
    for obj in objects:
        spec = obj.raw.get("spec") if isinstance(obj.raw.get("spec"), dict) else {}
        status = obj.raw.get("status") if isinstance(obj.raw.get("status"), dict) else {}
        if spec.get("type") != "LoadBalancer" or spec.get("loadBalancerClass"):
            continue
        ingress = (status.get("loadBalancer") or {}).get("ingress") or []
        addresses = tuple(
            i["ip"] for i in ingress if isinstance(i, dict) and isinstance(i.get("ip"), str)
        )
        _, _, name, namespace = identify(obj)
        labels = (obj.raw.get("metadata") or {}).get("labels") or {}
        found.append(
            metallb.ServiceAddresses(
                f"{namespace or 'default'}/{name}",
                {str(k): str(v) for k, v in labels.items()},
                _valid(addresses),
            )
        )
    return found


def _valid(addresses: tuple[str, ...]) -> tuple[str, ...]:
    valid = []
    for text in addresses:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            continue
        valid.append(text)
    return tuple(valid)


def _unique(emitted: list[Emitted], findings: list[Finding]) -> list[Emitted]:
    """One object per kind, namespace and name. The same object made twice (a Secret two
    peers share) is written once; two different ones of one name are an error, since one
    would replace the other."""
    by_ref: dict[tuple[str, str, str], Emitted] = {}
    for item in emitted:
        ref = (item.kind, item.namespace, item.name)
        other = by_ref.get(ref)
        if other is None:
            by_ref[ref] = item
        elif render.manifest(other) == render.manifest(item):
            origins = tuple(dict.fromkeys(other.origins + item.origins))
            by_ref[ref] = Emitted(other.obj, origins, other.file)
        else:
            first = other.origins[0]
            Context(item.origins[0], findings).error(
                "metadata.name",
                f"becomes {item.kind} {item.name}, and so does {first.text} at {first.location}: "
                "herald's kinds are cluster-scoped, so the names must differ; rename one of "
                "them, or import them separately",
            )
    return list(by_ref.values())


def _check(files: dict[str, str], emitted: list[Emitted], findings: list[Finding]) -> None:
    """Load the output with herald's own loader: what it refuses (a reference to an object
    that was not imported) is said on the source object that made it."""
    try:
        parse_manifests(files)
    except ManifestError as err:
        by_place: dict[tuple[str, int], Emitted] = {}
        for name, objects in render.files(emitted).items():
            for index, item in enumerate(objects, start=1):
                by_place[(name, index)] = item
        for problem in err.problems:
            where = problem.location
            made = by_place.get((where.file, where.document))
            # A missing Secret was said where its name was written, with what to do.
            if made is None or problem.path == "spec.authSecretRef":
                continue
            Context(made.origins[0], findings).not_converted(
                "",
                f"the {made.kind} {made.name} it became is incomplete without more objects: "
                f"{problem.path}: {problem.message}",
            )


__all__ = ["SOURCES", "Result", "Source", "convert"]
