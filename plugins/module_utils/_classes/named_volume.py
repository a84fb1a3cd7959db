# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Named volumes whose owners are stale: the detection (volume_owner_info).

Docker and podman set a named volume's owner only while it is empty, so a volume reused by a
container whose user changed keeps the old owners. For every volume of Docker, rootful podman
and each rootless podman user: the expected owner, the observed owners (``_engines.volumes``),
a ``named_volume`` finding (subject: the volume name) with the containers involved, and a fix
plan entry for ``_classes.named_volume_fix``.

Every host id is compared on the host; the fixer gets the ids of the engine's namespace
(container uid 999 of a rootless user is host ``subuid_start + 998``; the fixer, running in
that user's namespace, chowns to 999).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Detection, take
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import OptionError
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import make_finding
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import pick
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import sample_size as check_sample_size
from ansible_collections.permfix.containers.plugins.module_utils._core.options import plain_name, plain_names
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.containers import Container
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DEFAULT_DOCKER_HOST,
    DockerEngineError,
    examine_engines,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.fixer import DEFAULT_FIXER_IMAGE, FixerError
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.scopes import (
    ENGINES,
    SCOPE_ARGUMENT_SPEC,
    EngineCache,
    EngineScope,
    discover_scopes,
    list_volumes,
    scope_containers,
    scope_options,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.volumes import (
    SCAN_CHOICES,
    Volume,
    VolumeError,
    access_method,
    expected_owner,
    observe_in_container,
    observe_on_host,
    parse_owner,
    root_matches,
    volume_users,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.access import (
    HostIdentity,
    check_access,
    needed_access,
    path_facts,
)


@dataclass
class VolumeInfoRequest:
    engines: tuple[str, ...] = ENGINES
    podman_users: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    owners: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    docker_host: str = DEFAULT_DOCKER_HOST
    timeout: int = 10
    scan: str = "full"
    sample_size: int = 10
    inspector: bool = True
    fixer_image: str = DEFAULT_FIXER_IMAGE
    cache: EngineCache | None = field(default=None, compare=False, repr=False)  # audit_info's, shared by its detections


@dataclass
class InfoOutcome:
    findings: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    fix_plan: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"findings": self.findings, "volumes": self.volumes, "fix_plan": self.fix_plan, "notes": self.notes}


def _scopes(request: VolumeInfoRequest, runner: Runner, notes: list[str]) -> list[EngineScope]:
    return discover_scopes(
        runner, notes, what="volumes", engines=request.engines, podman_users=request.podman_users,
        docker_host=request.docker_host, timeout=request.timeout, cache=request.cache,
    )


def volume_report(request: VolumeInfoRequest, runner: Runner) -> InfoOutcome:
    """Discover every volume, its expected and observed owners, findings and a fix plan."""
    outcome = InfoOutcome()
    for scope in _scopes(request, runner, outcome.notes):
        try:
            volumes = list_volumes(scope, runner, request.volumes)
            containers = scope_containers(scope, runner, outcome.notes, cache=request.cache) if volumes else []
        except (DockerEngineError, PodmanError) as exc:
            outcome.notes.append(f"volumes of {scope.describe()} were not examined: {exc}")
            continue
        for volume in volumes:
            try:
                _examine(volume, scope, containers, request, runner, outcome)
            except (VolumeError, FixerError, DockerEngineError, PodmanError) as exc:
                outcome.volumes.append(_record(volume, status="error", reason=str(exc)))
                outcome.notes.append(str(exc))
    return outcome


VOLUME_INFO_ARGUMENT_SPEC: dict[str, Any] = {
    **SCOPE_ARGUMENT_SPEC,
    "volumes": {"type": "list", "elements": "str", "default": []},
    "owners": {"type": "dict", "default": {}},
    "scan": {"type": "str", "choices": list(SCAN_CHOICES), "default": "full"},
    "sample_size": {"type": "int", "default": 10},
    "inspector": {"type": "bool", "default": True},
    "fixer_image": {"type": "str", "default": DEFAULT_FIXER_IMAGE},
}


def volume_info_request(params: Mapping[str, Any]) -> VolumeInfoRequest:
    """volume_owner_info's validated parameters as a request; OptionError says what is wrong."""
    scope = scope_options(params)
    owners = {}
    for name, value in (params["owners"] or {}).items():
        plain_name(name, "a volume name in owners")
        try:
            owners[str(name)] = parse_owner(str(value), f"owners[{name}]")
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    return VolumeInfoRequest(
        **scope, **take(params, "scan", "inspector"), fixer_image=plain_name(params["fixer_image"], "fixer_image"),
        owners=owners,
        volumes=tuple(plain_names(params["volumes"], "volumes")), sample_size=check_sample_size(params["sample_size"]),
    )


def volume_info(request: VolumeInfoRequest, runner: Runner) -> dict[str, Any]:
    """Everything volume_owner_info returns; DetectionError when the volumes cannot be examined."""
    return examine_engines(lambda: volume_report(request, runner), "named volumes", "volumes")


VOLUME_INFO = Detection(
    "named_volume", "volume_owner_info", VOLUME_INFO_ARGUMENT_SPEC, volume_info_request, volume_info, docker_scoped=True
)


def _finding(
    severity: str, volume: Volume, message: str, names: Sequence[str], kind: str | None = None, **values: Any
) -> dict[str, Any]:
    """A ``named_volume`` finding; its id names the engine, the rootless user and the volume
    (not the containers, which come and go), so it is stable across runs."""
    finding = make_finding(
        "named_volume", severity, volume.name, message,
        id_parts=(volume.engine, volume.owner, kind), engine=volume.engine, user=volume.owner, **values,
    )
    finding["container"] = ", ".join(names) or None
    return finding


def _record(volume: Volume, **values: Any) -> dict[str, Any]:
    return dict(pick(volume, "name", "engine", "driver", "mountpoint", user="owner"), **values)


def _examine(
    volume: Volume,
    scope: EngineScope,
    containers: Sequence[Container],
    request: VolumeInfoRequest,
    runner: Runner,
    outcome: InfoOutcome,
) -> None:
    notes = outcome.notes
    users = volume_users(volume, containers, notes)
    declared = request.owners.get(volume.name)
    expectation, conflict = expected_owner(volume, users, declared)
    names = sorted({user.container for user in users})
    method, reason = access_method(volume)
    base: dict[str, Any] = {"containers": [user.as_dict() for user in users], "access_method": method}
    if conflict is not None:
        finding = _finding(
            "error",
            volume,
            conflict,
            names,
            "conflict",
            expected={
                "owners": [{"container": u.container, "host_uid": u.host_uid, "host_gid": u.host_gid} for u in users]
            },
            fixable=False,
        )
        outcome.findings.append(finding)
        outcome.volumes.append(_record(volume, status="conflict", reason=conflict, finding=finding["id"], **base))
        return
    if expectation is None:
        reason = "no container that needs a particular owner uses it, and no owner is declared"
        outcome.volumes.append(_record(volume, status="unused" if not users else "ok", reason=reason, **base))
        return
    base["expected"] = expectation.as_dict()
    if method == "none":
        finding = _finding(
            "info", volume, f"{reason}; it was not checked", names, "not_inspectable",
            expected=expectation.as_dict(), fixable=False,
        )
        outcome.findings.append(finding)
        outcome.volumes.append(_record(volume, status="not_inspectable", reason=reason, finding=finding["id"], **base))
        return
    if method == "container":
        if not request.inspector:
            outcome.volumes.append(
                _record(
                    volume,
                    status="not_inspected",
                    reason=f"{reason}; set inspector to count through a read-only container",
                    **base,
                )
            )
            return
        backend = scope.backend(runner, 600)
        if not backend.image_present(request.fixer_image):
            outcome.volumes.append(
                _record(
                    volume,
                    status="not_inspected",
                    reason=(
                        f"{reason}, and the inspector image {request.fixer_image} is not present "
                        "(volume_owner builds it)"
                    ),
                    **base,
                )
            )
            return
        observation = observe_in_container(backend, volume, expectation, request.fixer_image)
    else:
        observation = observe_on_host(volume, expectation, request.scan == "full", request.sample_size)
    base["observed"] = observation.as_dict()
    notes.extend(f"{volume.describe()}: {problem}" for problem in observation.problems)
    stale = observation.mismatched > 0 or not root_matches(observation, expectation)
    if not stale:
        outcome.volumes.append(_record(volume, status="ok", reason=None, **base))
        return
    severity = "warning"
    denied = []
    if observation.method == "host":
        try:
            facts = path_facts(volume.mountpoint)
        except OSError:
            facts = None
        for user in users:
            if facts is None or user.dac_override:
                continue
            identity = HostIdentity(user.host_uid, user.host_gid, user.groups)
            if not check_access(facts, identity, needed_access(True, not user.rw)).granted:
                denied.append(user.container)
    elif users and not root_matches(observation, expectation):
        denied = names
    if denied or not users:
        severity = "error" if denied else "warning"
    owner_text = f"{observation.uid}:{observation.gid}"
    want_text = f"{expectation.uid}:{expectation.gid}"
    if (expectation.host_uid, expectation.host_gid) != (expectation.uid, expectation.gid):
        want_text += f" (host {expectation.host_uid}:{expectation.host_gid})"
    who = f"used by {', '.join(names)}" if names else "declared owner"
    message = (
        f"{volume.describe()} ({who}) should be owned by {want_text}, but its root is owned by {owner_text} "
        f"and {observation.mismatched:,} of {observation.entries:,} entries differ"
    )
    if denied:
        message += f"; {', '.join(denied)} cannot write it"
    fix_text = (
        f"chown {expectation.uid}:{expectation.gid} on {observation.mismatched:,} of {observation.entries:,} "
        "entries with a fixer container"
    )
    finding = _finding(
        severity, volume, message, names,
        observed=observation.as_dict(), expected=expectation.as_dict(),
        fixable=True, fix=fix_text,
    )
    outcome.findings.append(finding)
    outcome.volumes.append(_record(volume, status="stale", reason=None, finding=finding["id"], **base))
    outcome.fix_plan.append({
        "volume": volume.name,
        "engine": volume.engine,
        "user": volume.owner,
        "owner": f"{expectation.uid}:{expectation.gid}",
        "host_owner": f"{expectation.host_uid}:{expectation.host_gid}",
        "containers": names,
        "mismatched": observation.mismatched,
        "finding": finding["id"],
    })
