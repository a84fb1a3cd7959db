# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named volumes whose owners are stale: detection (volume_owner_info) and fix (volume_owner).

Docker and podman set a named volume's owner only while it is empty, so a volume reused by a
container whose user changed keeps the old owners. For every volume of Docker, rootful
podman and each rootless podman user:

1. the expected owner: a declared ``uid:gid`` (ids as the engine's containers see them), else
   the effective identity of the containers that mount it (resolved like for bind mounts,
   with their own /etc/passwd, mapped through their user namespace to host ids); containers
   that disagree are a finding of their own. Root containers keep CAP_DAC_OVERRIDE and do
   not vote;
2. the observed owners: the volume root and (``scan=full``) every entry below it, counted with
   the ownership engine on the host when the local driver's mountpoint is reachable, else with
   a read-only inspector container (:mod:`._fixer`);
3. a ``named_volume`` finding (subject: the volume name) with the containers involved, and a
   fix plan entry for :func:`fix_volume`.

Every host id is compared on the host; the fixer gets the ids of the engine's namespace
(container uid 999 of a rootless user is host ``subuid_start + 998``; the fixer, running in
that user's namespace, chowns to 999).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from ansible_collections.permfix.containers.plugins.module_utils._accounts import AccountDatabase, AccountsError
from ansible_collections.permfix.containers.plugins.module_utils._containers import (
    Container,
    docker_containers,
    podman_containers,
    rootless_namespace,
)
from ansible_collections.permfix.containers.plugins.module_utils._docker import (
    DEFAULT_DOCKER_HOST,
    HAS_DOCKER_SDK,
    DockerEngine,
    DockerEngineError,
    MissingDockerSdk,
    NotFound,
    connect,
    docker_socket_path,
    examine_engines,
    remap_enabled,
    remap_maps,
    remap_setting,
)
from ansible_collections.permfix.containers.plugins.module_utils._findings import make_finding
from ansible_collections.permfix.containers.plugins.module_utils._fixer import (
    DEFAULT_BUSYBOX,
    DEFAULT_FIXER_IMAGE,
    DockerFixer,
    FixerError,
    FixerRun,
    InspectorCounts,
    PodmanFixer,
    ensure_image,
    fix_script,
    inspect_script,
    parse_inspector,
)
from ansible_collections.permfix.containers.plugins.module_utils._identity import (
    IDENTITY,
    HostIdentity,
    IdentityError,
    IdMap,
    check_access,
    needed_access,
    path_facts,
    resolve_identity,
)
from ansible_collections.permfix.containers.plugins.module_utils._info import (
    DOCKER_ARGUMENT_SPEC,
    Detection,
    OptionError,
    docker_options,
)
from ansible_collections.permfix.containers.plugins.module_utils._ownership import (
    OwnershipError,
    Target,
    WalkOptions,
    scan,
)
from ansible_collections.permfix.containers.plugins.module_utils._podman import (
    Account,
    PodmanError,
    Runner,
    podman_json,
    podman_path,
    rootless_users,
    run_podman,
)

ENGINES: Tuple[str, ...] = ("docker", "podman")
SCAN_CHOICES: Tuple[str, ...] = ("full", "root")
# Options of the local driver that make the volume a mount of something else (tmpfs, nfs,
# a block device): its content is only at the mountpoint while a container mounts it.
MOUNT_OPTIONS: Tuple[str, ...] = ("type", "device", "o")


class VolumeError(Exception):
    """The volume cannot be examined or fixed; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# The model


@dataclass
class Volume:
    """A named volume of one engine (and one rootless user)."""

    engine: str
    name: str
    driver: str
    mountpoint: str
    options: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    account: Optional[Account] = None
    uid_map: IdMap = IDENTITY  # the engine's default namespace: container id -> host id
    gid_map: IdMap = IDENTITY

    @property
    def owner(self) -> Optional[str]:
        return self.account.name if self.account is not None else None

    def describe(self) -> str:
        if self.account is not None:
            return f"rootless podman volume {self.name} of user {self.account.name}"
        return f"{self.engine} volume {self.name}"


def volume_from_inspect(engine: str, data: Mapping[str, Any], account: Optional[Account] = None) -> Volume:
    """The model of a volume from ``docker volume inspect`` / ``podman volume inspect`` data."""
    return Volume(
        engine=engine,
        name=str(data.get("Name") or ""),
        driver=str(data.get("Driver") or "local"),
        mountpoint=str(data.get("Mountpoint") or ""),
        options=dict(data.get("Options") or {}),
        labels=dict(data.get("Labels") or {}),
        account=account,
    )


def access_method(volume: Volume, isdir: Any = os.path.isdir) -> Tuple[str, Optional[str]]:
    """How the volume's files can be read: ``host`` (its mountpoint), ``container`` (a
    read-only inspector container) or ``none``; with the reason when not ``host``."""
    if volume.driver != "local":
        return "none", (
            f"{volume.describe()} uses the volume driver {volume.driver!r}: its files live behind a plugin, "
            f"so permfix can neither inspect nor fix them; fix the owners where that driver stores the data"
        )
    mounted = sorted(key for key in volume.options if key in MOUNT_OPTIONS)
    if mounted:
        return "container", (
            f"{volume.describe()} is a local volume backed by a mount ({', '.join(f'{key}={volume.options[key]}' for key in mounted)}): "
            f"its content is only visible while it is mounted"
        )
    if not volume.mountpoint or not isdir(volume.mountpoint):
        return "container", f"the mountpoint {volume.mountpoint or '(none)'} of {volume.describe()} is not reachable from the host"
    return "host", None


@dataclass(frozen=True)
class VolumeUser:
    """A container that mounts a volume, with the identity it runs as."""

    container: str
    engine: str
    running: bool
    rw: bool
    destination: str
    uid: int  # container-side
    gid: int
    host_uid: int
    host_gid: int
    groups: Tuple[int, ...] = ()
    dac_override: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "running": self.running,
            "access": "rw" if self.rw else "ro",
            "destination": self.destination,
            "uid": self.uid,
            "gid": self.gid,
            "host_uid": self.host_uid,
            "host_gid": self.host_gid,
        }


def mounts_volume(container: Container, volume: Volume) -> list[Any]:
    """The mounts of ``container`` that are ``volume``."""
    if container.engine != volume.engine or container.owner != volume.owner:
        return []
    return [mount for mount in container.mounts if mount.type == "volume" and mount.source == volume.mountpoint]


def volume_users(volume: Volume, containers: Iterable[Container], notes: list[str]) -> list[VolumeUser]:
    """The containers that mount ``volume`` and who they run as on the host."""
    users = []
    for container in containers:
        for mount in mounts_volume(container, volume):
            where = f"container {container.name}"
            try:
                identity = resolve_identity(container.user, container.accounts, container.group_add, where=where)
            except IdentityError as exc:
                notes.append(f"{container.describe()}: {exc}")
                continue
            host_uid = container.uid_map.to_host(identity.uid)
            host_gid = container.gid_map.to_host(identity.gid)
            if host_uid is None or host_gid is None or container.map_source == "unknown":
                notes.append(f"{container.describe()}: its user {identity.describe()} is not mapped to a host id")
                continue
            groups = tuple(g for g in (container.gid_map.to_host(group) for group in identity.groups) if g is not None)
            users.append(
                VolumeUser(
                    container=container.name,
                    engine=container.engine,
                    running=container.running,
                    rw=mount.rw,
                    destination=mount.destination,
                    uid=identity.uid,
                    gid=identity.gid,
                    host_uid=host_uid,
                    host_gid=host_gid,
                    groups=groups,
                    dac_override=identity.uid == 0 and container.has_dac_override(),
                )
            )
    return users


@dataclass
class Expectation:
    """Who should own a volume: host ids, the same ids in the engine's namespace, and why."""

    host_uid: int
    host_gid: int
    uid: int
    gid: int
    source: str  # declared or containers
    containers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "gid": self.gid,
            "host_uid": self.host_uid,
            "host_gid": self.host_gid,
            "source": self.source,
            "containers": list(self.containers),
        }


def parse_owner(text: str, what: str = "owner") -> Tuple[int, int]:
    """``uid:gid`` (or ``uid``, meaning ``uid:uid``) as numbers; ValueError otherwise."""
    value = str(text).strip()
    user, _sep, group = value.partition(":")
    group = group or user
    if not user.isdigit() or not group.isdigit():
        raise ValueError(f"{what} {text!r} must be numeric ids as uid:gid, for example 999:999")
    return int(user), int(group)


def expected_owner(
    volume: Volume,
    users: Sequence[VolumeUser],
    declared: Optional[Tuple[int, int]] = None,
) -> Tuple[Optional[Expectation], Optional[str]]:
    """The expected owner of ``volume`` and, when containers disagree, why no owner is.

    ``declared`` ids are as the engine's containers see them (mapped through the volume's
    namespace). Root containers with CAP_DAC_OVERRIDE do not vote: they can use any owner.
    """
    voters = [user for user in users if not user.dac_override]
    names = sorted({user.container for user in users})
    if declared is not None:
        host_uid = volume.uid_map.to_host(declared[0])
        host_gid = volume.gid_map.to_host(declared[1])
        if host_uid is None or host_gid is None:
            return None, (
                f"the declared owner {declared[0]}:{declared[1]} of {volume.describe()} is not mapped in the "
                f"engine's user namespace ({', '.join(volume.uid_map.lines())})"
            )
        return Expectation(host_uid, host_gid, declared[0], declared[1], "declared", names), None
    owners: dict[Tuple[int, int], list[str]] = {}
    for user in voters:
        owners.setdefault((user.host_uid, user.host_gid), []).append(user.container)
    if not owners:
        return None, None
    if len(owners) > 1:
        listed = "; ".join(
            f"{', '.join(sorted(set(containers)))} as host {uid}:{gid}" for (uid, gid), containers in sorted(owners.items())
        )
        return None, (
            f"the containers using {volume.describe()} run as different users ({listed}): one owner cannot "
            f"serve them all; declare the owner (owners / named_volumes_owners) or align the containers' users"
        )
    (host_uid, host_gid), _names = next(iter(owners.items()))
    uid = volume.uid_map.to_container(host_uid)
    gid = volume.gid_map.to_container(host_gid)
    if uid is None or gid is None:
        return None, (
            f"the containers using {volume.describe()} run as host {host_uid}:{host_gid}, which the engine's default "
            f"user namespace does not map, so a fixer container cannot set it"
        )
    return Expectation(host_uid, host_gid, uid, gid, "containers", names), None


# --------------------------------------------------------------------------------------------
# Observation


@dataclass
class Observation:
    """The volume's root owner and counts, from the host or an inspector container."""

    method: str  # host or container
    uid: int
    gid: int
    mode: str
    entries: int
    mismatched: int  # what a chown would change (not hard-linked files, not device nodes)
    complete: bool = True  # every entry was counted (scan=full)
    skipped: dict[str, int] = field(default_factory=dict)
    sample: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    in_namespace: bool = False  # uid/gid are the engine namespace's ids, not host ids

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "uid": self.uid,
            "gid": self.gid,
            "mode": self.mode,
            "entries": self.entries,
            "mismatched": self.mismatched,
            "complete": self.complete,
            "skipped": dict(self.skipped),
            "sample": list(self.sample),
        }


def observe_on_host(volume: Volume, expectation: Expectation, full: bool = True, sample_size: int = 10) -> Observation:
    """Count with the ownership engine on the volume's mountpoint (changes nothing)."""
    try:
        report = scan(
            volume.mountpoint,
            Target(uid=expectation.host_uid, gid=expectation.host_gid),
            WalkOptions(recurse=full, refuse_protected=False, sample_size=sample_size),
        )
    except (OwnershipError, OSError) as exc:
        raise VolumeError(f"{volume.describe()} could not be examined at {volume.mountpoint}: {exc}") from None
    counts = report.counts
    return Observation(
        method="host",
        uid=int(report.root.get("uid", -1)),
        gid=int(report.root.get("gid", -1)),
        mode=str(report.root.get("mode", "")),
        entries=counts["entries"],
        mismatched=counts["to_change"],
        complete=full and report.complete,
        skipped={"hardlinks": counts["skipped_hardlinks"], "devices": counts["skipped_devices"], "mounts": counts["skipped_mounts"]},
        sample=list(report.changes.items),
        problems=report.problems(),
    )


def observe_in_container(backend: Any, volume: Volume, expectation: Expectation, image: str) -> Observation:
    """Count with a read-only inspector container (ids of the engine's namespace)."""
    run = backend.run(volume.name, image, inspect_script(expectation.uid, expectation.gid), True, "local")
    if run.rc != 0:
        raise VolumeError(f"the inspector container for {volume.describe()} failed (exit {run.rc}): {run.stderr.strip()[:300]}")
    counts: InspectorCounts = parse_inspector(run.stdout)
    return Observation("container", counts.uid, counts.gid, counts.mode, counts.entries, counts.mismatched, in_namespace=True)


def root_matches(observation: Observation, expectation: Expectation) -> bool:
    if observation.in_namespace:
        return (observation.uid, observation.gid) == (expectation.uid, expectation.gid)
    return (observation.uid, observation.gid) == (expectation.host_uid, expectation.host_gid)


# --------------------------------------------------------------------------------------------
# Engines


@dataclass
class EngineScope:
    """One engine instance: Docker, rootful podman, or one user's rootless podman."""

    engine: str
    account: Optional[Account] = None
    docker: Optional[DockerEngine] = None
    uid_map: IdMap = IDENTITY
    gid_map: IdMap = IDENTITY

    def describe(self) -> str:
        if self.engine == "docker":
            return "Docker"
        return f"rootless podman of user {self.account.name}" if self.account is not None else "rootful podman"

    def backend(self, runner: Runner, timeout: int) -> Any:
        if self.engine == "docker" and self.docker is not None:
            return DockerFixer(self.docker, timeout)
        return PodmanFixer(runner, self.account, timeout)


def docker_scope(docker_host: str, timeout: int, notes: list[str]) -> EngineScope:
    """Connect to Docker and learn its userns-remap namespace; raises VolumeError/MissingDockerSdk."""
    path = docker_socket_path(docker_host)
    if path is not None and not os.path.exists(path):
        raise VolumeError(f"no Docker daemon at {docker_host}: the socket {path} does not exist (is dockerd running?)")
    if not HAS_DOCKER_SDK:
        raise MissingDockerSdk(docker_host)
    try:
        engine = connect(docker_host, timeout)
        info = engine.info()
    except DockerEngineError as exc:
        raise VolumeError(f"{exc}; is dockerd running and is docker_host right?") from None
    scope = EngineScope("docker", docker=engine)
    if remap_enabled(info):
        setting = remap_setting()
        if setting is None:
            notes.append("the Docker daemon remaps user namespaces but its userns-remap setting was not found; host ids are assumed")
        else:
            try:
                scope.uid_map, scope.gid_map = remap_maps(setting, AccountDatabase.from_files())
            except (DockerEngineError, AccountsError) as exc:
                notes.append(f"{exc}; host ids are assumed for Docker volumes")
    return scope


def podman_scope(runner: Runner, account: Optional[Account]) -> EngineScope:
    scope = EngineScope("podman", account=account)
    if account is not None:
        (scope.uid_map, scope.gid_map), _source = rootless_namespace(runner, account)
    return scope


def list_volumes(scope: EngineScope, runner: Runner, names: Sequence[str] = ()) -> list[Volume]:
    """The volumes of one engine scope (only ``names`` when given; missing names are skipped)."""
    wanted = list(names)
    found: list[Mapping[str, Any]] = []
    if scope.engine == "docker" and scope.docker is not None:
        engine = scope.docker
        if not wanted:
            listed = engine._call("list volumes", engine.client.volumes) or {}
            wanted = [str(item.get("Name")) for item in listed.get("Volumes") or [] if item.get("Name")]
        for name in wanted:
            try:
                found.append(engine._call(f"inspect volume {name}", engine.client.inspect_volume, name))
            except NotFound:
                continue
    else:
        if wanted:
            for name in wanted:
                result = run_podman(runner, ["volume", "inspect", name], scope.account, check=False)
                if result.rc == 0:
                    found.extend(_json_list(result.stdout))
                elif "no such volume" not in result.stderr.lower():
                    raise PodmanError(f"'podman volume inspect {name}' failed with exit code {result.rc}: {result.stderr.strip()}")
        else:
            found = [item for item in podman_json(runner, ["volume", "inspect", "--all"], scope.account) or [] if isinstance(item, dict)]
    volumes = []
    for data in found:
        volume = volume_from_inspect(scope.engine, data, scope.account)
        volume.uid_map, volume.gid_map = scope.uid_map, scope.gid_map
        volumes.append(volume)
    return volumes


def _json_list(text: str) -> list[Mapping[str, Any]]:
    import json

    try:
        data = json.loads(text or "[]")
    except ValueError:
        return []
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def scope_containers(scope: EngineScope, runner: Runner, notes: list[str]) -> list[Container]:
    remap = None if scope.uid_map.is_identity else (scope.uid_map, scope.gid_map)
    if scope.engine == "docker" and scope.docker is not None:
        containers = docker_containers(scope.docker, remap)
    else:
        containers, more = podman_containers(runner, scope.account)
        notes.extend(more)
    for container in containers:
        notes.extend(container.notes)
    return containers


# --------------------------------------------------------------------------------------------
# volume_owner_info


@dataclass
class InfoRequest:
    engines: Tuple[str, ...] = ENGINES
    podman_users: Optional[Tuple[str, ...]] = None
    volumes: Tuple[str, ...] = ()
    owners: Mapping[str, Tuple[int, int]] = field(default_factory=dict)
    docker_host: str = DEFAULT_DOCKER_HOST
    timeout: int = 10
    scan: str = "full"
    sample_size: int = 10
    inspector: bool = True
    fixer_image: str = DEFAULT_FIXER_IMAGE


@dataclass
class InfoOutcome:
    findings: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    fix_plan: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"findings": self.findings, "volumes": self.volumes, "fix_plan": self.fix_plan, "notes": self.notes}


def _scopes(request: InfoRequest, runner: Runner, notes: list[str]) -> list[EngineScope]:
    scopes = []
    if "docker" in request.engines:
        path = docker_socket_path(request.docker_host)
        if path is not None and not os.path.exists(path) and request.docker_host == DEFAULT_DOCKER_HOST:
            notes.append(f"no Docker daemon at {request.docker_host}; no Docker volumes were examined")
        else:
            try:
                scopes.append(docker_scope(request.docker_host, request.timeout, notes))
            except VolumeError as exc:
                notes.append(f"Docker volumes were not examined: {exc}")
    if "podman" in request.engines:
        if podman_path() is None:
            notes.append("podman is not installed on this host; no podman volumes were examined")
        else:
            accounts: list[Optional[Account]] = []
            if request.podman_users is None:
                accounts = [None] + list(rootless_users())
            else:
                for name in request.podman_users:
                    if name in ("root", "0"):
                        accounts.append(None)
                        continue
                    try:
                        accounts.append(Account.lookup(name))
                    except KeyError:
                        notes.append(f"podman user {name!r} does not exist on this host; its volumes were not examined")
            for account in accounts:
                try:
                    scopes.append(podman_scope(runner, account))
                except PodmanError as exc:
                    notes.append(f"podman volumes of {account.name if account else 'root'} were not examined: {exc}")
    return scopes


def volume_report(request: InfoRequest, runner: Runner) -> InfoOutcome:
    """Discover every volume, its expected and observed owners, findings and a fix plan."""
    outcome = InfoOutcome()
    for scope in _scopes(request, runner, outcome.notes):
        try:
            volumes = list_volumes(scope, runner, request.volumes)
            containers = scope_containers(scope, runner, outcome.notes) if volumes else []
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


INFO_ARGUMENT_SPEC: dict[str, Any] = {
    "engines": {"type": "list", "elements": "str", "choices": list(ENGINES), "default": list(ENGINES)},
    "podman_users": {"type": "list", "elements": "str"},
    "volumes": {"type": "list", "elements": "str", "default": []},
    "owners": {"type": "dict", "default": {}},
    **DOCKER_ARGUMENT_SPEC,
    "scan": {"type": "str", "choices": list(SCAN_CHOICES), "default": "full"},
    "sample_size": {"type": "int", "default": 10},
    "inspector": {"type": "bool", "default": True},
    "fixer_image": {"type": "str", "default": DEFAULT_FIXER_IMAGE},
}


def info_request(params: Mapping[str, Any]) -> InfoRequest:
    """volume_owner_info's validated parameters as a request; OptionError says what is wrong."""
    docker_host, timeout = docker_options(params)
    if params["sample_size"] < 0:
        raise OptionError("sample_size cannot be negative")
    owners = {}
    for name, value in (params["owners"] or {}).items():
        try:
            owners[str(name)] = parse_owner(str(value), f"owners[{name}]")
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    return InfoRequest(
        engines=tuple(params["engines"]),
        podman_users=tuple(params["podman_users"]) if params["podman_users"] is not None else None,
        volumes=tuple(params["volumes"]),
        owners=owners,
        docker_host=docker_host,
        timeout=timeout,
        scan=params["scan"],
        sample_size=params["sample_size"],
        inspector=params["inspector"],
        fixer_image=params["fixer_image"],
    )


def volume_info(request: InfoRequest, runner: Runner) -> dict[str, Any]:
    """Everything volume_owner_info returns; DetectionError when the volumes cannot be examined."""
    return examine_engines(lambda: volume_report(request, runner), "named volumes", "volumes")


VOLUME_INFO = Detection("named_volume", "volume_owner_info", INFO_ARGUMENT_SPEC, info_request, volume_info, docker_scoped=True)


def _finding(severity: str, volume: Volume, message: str, names: Sequence[str], kind: Optional[str] = None, **values: Any) -> dict[str, Any]:
    """A ``named_volume`` finding; its id names the engine, the rootless user and the volume
    (not the containers, which come and go), so it is stable across runs."""
    finding = make_finding(
        "named_volume", severity, volume.name, message,
        id_parts=(volume.engine, volume.owner, kind), engine=volume.engine, user=volume.owner, **values,
    )
    finding["container"] = ", ".join(names) or None
    return finding


def _record(volume: Volume, **values: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": volume.name,
        "engine": volume.engine,
        "user": volume.owner,
        "driver": volume.driver,
        "mountpoint": volume.mountpoint,
    }
    record.update(values)
    return record


def _examine(
    volume: Volume,
    scope: EngineScope,
    containers: Sequence[Container],
    request: InfoRequest,
    runner: Runner,
    outcome: InfoOutcome,
) -> None:
    notes = outcome.notes
    users = volume_users(volume, containers, notes)
    declared = request.owners.get(volume.name)
    expectation, conflict = expected_owner(volume, users, declared)
    names = sorted({user.container for user in users})
    method, reason = access_method(volume)
    base = {"containers": [user.as_dict() for user in users], "access_method": method}
    if conflict is not None:
        finding = _finding(
            "error", volume, conflict, names, "conflict",
            expected={"owners": [{"container": u.container, "host_uid": u.host_uid, "host_gid": u.host_gid} for u in users]},
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
            outcome.volumes.append(_record(volume, status="not_inspected", reason=f"{reason}; set inspector to count through a read-only container", **base))
            return
        backend = scope.backend(runner, 600)
        if not backend.image_present(request.fixer_image):
            outcome.volumes.append(_record(
                volume, status="not_inspected",
                reason=f"{reason}, and the inspector image {request.fixer_image} is not present (volume_owner builds it)", **base))
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
            who = HostIdentity(user.host_uid, user.host_gid, user.groups)
            if not check_access(facts, who, needed_access(True, not user.rw)).granted:
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
    fix_text = f"chown {expectation.uid}:{expectation.gid} on {observation.mismatched:,} of {observation.entries:,} entries with a fixer container"
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


# --------------------------------------------------------------------------------------------
# volume_owner


@dataclass
class FixRequest:
    volume: str
    engine: str = "docker"
    podman_user: Optional[str] = None
    owner: Optional[Tuple[int, int]] = None
    fixer_image: str = DEFAULT_FIXER_IMAGE
    pull: bool = True
    busybox_path: str = DEFAULT_BUSYBOX
    stop_containers: bool = False
    docker_host: str = DEFAULT_DOCKER_HOST
    timeout: int = 10
    fixer_timeout: int = 600
    sample_size: int = 10


def fix_volume(request: FixRequest, runner: Runner, check_mode: bool) -> dict[str, Any]:
    """Examine one volume and, when it differs (and not in check mode), fix it with a fixer
    container. Raises VolumeError/FixerError with a sentence for the user."""
    notes: list[str] = []
    account = None
    if request.engine == "docker":
        scope = docker_scope(request.docker_host, request.timeout, notes)
    else:
        if podman_path() is None:
            raise VolumeError("podman is not installed on this host")
        if request.podman_user not in (None, "", "root", "0"):
            try:
                account = Account.lookup(str(request.podman_user))
            except KeyError:
                raise VolumeError(f"podman_user {request.podman_user!r} does not exist on this host") from None
        try:
            scope = podman_scope(runner, account)
        except PodmanError as exc:
            raise VolumeError(str(exc)) from None
    try:
        volumes = list_volumes(scope, runner, [request.volume])
        if not volumes:
            listing = "docker volume ls" if request.engine == "docker" else "podman volume ls" + (f" (as {account.name})" if account else "")
            raise VolumeError(f"volume {request.volume!r} does not exist in {scope.describe()}; '{listing}' lists the volumes there")
        volume = volumes[0]
        containers = scope_containers(scope, runner, notes)
    except (DockerEngineError, PodmanError) as exc:
        raise VolumeError(f"{scope.describe()} could not be asked about volume {request.volume}: {exc}") from None
    users = volume_users(volume, containers, notes)
    expectation, conflict = expected_owner(volume, users, request.owner)
    if conflict is not None:
        raise VolumeError(conflict + " (set owner)")
    if expectation is None:
        raise VolumeError(
            f"no container that needs a particular owner uses {volume.describe()}: set owner (uid:gid as the containers see them)"
        )
    method, reason = access_method(volume)
    if method == "none":
        raise VolumeError(f"{reason}; it was not inspected and not fixed")
    backend = scope.backend(runner, request.fixer_timeout)
    image_source = None
    if method == "host":
        before = observe_on_host(volume, expectation, True, request.sample_size)
    else:
        if check_mode and not backend.image_present(request.fixer_image):
            raise VolumeError(
                f"{reason}, so it can only be examined through an inspector container, and the fixer image "
                f"{request.fixer_image} is not present: run without check mode once, or load fixer_image"
            )
        image_source = ensure_image(backend, request.fixer_image, request.pull, request.busybox_path)
        before = observe_in_container(backend, volume, expectation, request.fixer_image)
    result: dict[str, Any] = {
        "volume": volume.name,
        "engine": volume.engine,
        "user": volume.owner,
        "owner": expectation.as_dict(),
        "method": method,
        "before": before.as_dict(),
        "after": None,
        "fixer": None,
        "stopped_containers": [],
        "notes": notes + [f"{volume.describe()}: {problem}" for problem in before.problems],
    }
    differs = before.mismatched > 0 or not root_matches(before, expectation)
    result["changed"] = differs
    want = f"{expectation.uid}:{expectation.gid}"
    result["diff"] = {
        "before": {"root_owner": f"{before.uid}:{before.gid}", "mismatched": before.mismatched, "entries": before.entries},
        "after": {"root_owner": want if differs else f"{before.uid}:{before.gid}", "mismatched": 0, "entries": before.entries},
    }
    running = [user.container for user in users if user.running]
    if not differs:
        result["after"] = before.as_dict()
        return result
    if request.stop_containers:
        result["stopped_containers"] = sorted(set(running))
    if check_mode:
        return result
    if image_source is None:
        image_source = ensure_image(backend, request.fixer_image, request.pull, request.busybox_path)
    stopped: list[str] = []
    try:
        if request.stop_containers:
            _stop(scope, runner, sorted(set(running)), stopped)
        run: FixerRun = backend.run(volume.name, request.fixer_image, fix_script(expectation.uid, expectation.gid), False, image_source)
    finally:
        restart_errors = _start(scope, runner, stopped)
    result["fixer"] = run.as_dict()
    if run.rc != 0:
        raise VolumeError(
            f"the fixer container for {volume.describe()} failed (exit {run.rc}): {run.stderr.strip()[:500]}"
            + (f"; restarting containers failed: {'; '.join(restart_errors)}" if restart_errors else "")
        )
    if restart_errors:
        result["notes"].append("restarting containers failed: " + "; ".join(restart_errors))
    after = observe_on_host(volume, expectation, True, request.sample_size) if method == "host" else observe_in_container(
        backend, volume, expectation, request.fixer_image
    )
    result["after"] = after.as_dict()
    if after.mismatched > 0 or not root_matches(after, expectation):
        raise VolumeError(
            f"after the fixer ran, {after.mismatched:,} entries of {volume.describe()} still differ from {want} "
            f"(entries owned by ids outside the engine's namespace cannot be changed by it)"
        )
    return result


def _stop(scope: EngineScope, runner: Runner, names: Sequence[str], stopped: list[str]) -> None:
    """Stop ``names``, appending each to ``stopped`` once it is stopped (for the restart)."""
    for name in names:
        if scope.docker is not None:
            scope.docker._call(f"stop container {name}", scope.docker.client.stop, name)
        else:
            run_podman(runner, ["stop", name], scope.account)
        stopped.append(name)


def _start(scope: EngineScope, runner: Runner, names: Sequence[str]) -> list[str]:
    errors = []
    for name in names:
        try:
            if scope.docker is not None:
                scope.docker._call(f"start container {name}", scope.docker.client.start, name)
            else:
                run_podman(runner, ["start", name], scope.account)
        except (DockerEngineError, PodmanError) as exc:
            errors.append(str(exc))
    return errors
