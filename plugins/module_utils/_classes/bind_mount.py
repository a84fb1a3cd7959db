# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Bind mounts whose container identity cannot use the host directory: detection and fix plan.

For every bind mount of every container (Docker, rootful podman, each rootless podman user;
running and stopped) and every declared spec, :func:`bind_mount_report`:

1. resolves the container user with the container's own /etc/passwd and /etc/group,
2. maps it through the container's user namespace to host ids,
3. checks that those host ids can read and enter (and for rw mounts write) the host path,
   like the kernel does (owner, ACL, groups, other; a container root's CAP_DAC_OVERRIDE),
4. for each mount that fails: a ``bind_mount`` finding, optionally with the number of entries
   a ``chown`` would change (the ownership engine's scan), and a fix plan entry, or the reason
   the path must not be changed (not a directory, a system path, outside the allowed roots,
   two containers needing different owners).

Engines that are absent or do not answer become notes, never errors.


The fix is ``_classes.path_owner`` (applied per fix plan entry by the bind_mounts role).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Detection, take
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import OptionError
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import make_finding
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import pick
from ansible_collections.permfix.containers.plugins.module_utils._core.options import (
    host_path,
    host_paths,
    plain_name,
    plain_names,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.containers import (
    Container,
    Mount,
    UnknownIdentity,
    UnmappedIdentity,
    host_identity,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DEFAULT_DOCKER_HOST,
    DOCKER_ARGUMENT_SPEC,
    DockerEngineError,
    examine_engines,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
    subid_namespace,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.scopes import (
    ENGINES,
    SCOPE_ARGUMENT_SPEC,
    EngineCache,
    discover_scopes,
    scope_containers,
    scope_options,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.walk import (
    MountinfoCache,
    OwnershipError,
    Target,
    WalkOptions,
    scan,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.access import (
    AccessResult,
    HostIdentity,
    IdentityError,
    PathFacts,
    ProcessIdentity,
    check_access,
    needed_access,
    path_facts,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import (
    Account,
    AccountDatabase,
    AccountsError,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.acl import perm_text, perm_words
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import IDENTITY
from ansible_collections.permfix.containers.plugins.module_utils._host.owner_spec import (
    IdValue,
    OwnerSpecError,
    parse_id,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.paths import (
    host_protected_paths,
    human_homes,
    placement_problem,
    refusal_reason,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import SubidError

DEFAULT_ALLOWED_ROOTS: tuple[str, ...] = ("/srv", "/opt", "/data", "/mnt")
ACCESS_CHOICES: tuple[str, ...] = ("rw", "ro")


@dataclass(frozen=True)
class Spec:
    """A declared need: host ``uid``/``gid`` (or container ids of ``rootless_user``'s default
    rootless namespace) need ``access`` to ``path``."""

    path: str
    uid: int
    gid: int
    access: str = "rw"
    name: str | None = None
    rootless_user: str | None = None


@dataclass
class BindMountInfoRequest:
    engines: tuple[str, ...] = ENGINES
    containers: tuple[str, ...] = ()
    podman_users: tuple[str, ...] | None = None  # None: root and every rootless user
    specs: tuple[Spec, ...] = ()
    docker_host: str = DEFAULT_DOCKER_HOST
    timeout: int = 10
    scan: bool = True
    allowed_roots: tuple[str, ...] = DEFAULT_ALLOWED_ROOTS
    allow_home_subdirs: bool = True
    cache: EngineCache | None = field(default=None, compare=False, repr=False)  # audit_info's, shared by its detections


@dataclass
class Need:
    """One mount (or spec) to check: who needs what on which host path."""

    source: str
    destination: str | None
    read_only: bool
    container: Container | None = None
    spec: Spec | None = None

    @property
    def label(self) -> str | None:
        if self.container is not None:
            return self.container.name
        return self.spec.name if self.spec is not None else None

    @property
    def engine(self) -> str | None:
        return self.container.engine if self.container is not None else None

    @property
    def owner(self) -> str | None:
        if self.container is not None:
            return self.container.owner
        return self.spec.rootless_user if self.spec is not None else None

    def describe(self) -> str:
        if self.container is not None:
            return self.container.describe()
        name = f" {self.spec.name}" if self.spec is not None and self.spec.name else ""
        return f"declared spec{name}"


@dataclass
class Outcome:
    """Everything the module returns."""

    findings: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    fix_plan: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    containers: int = 0

    def as_dict(self) -> dict[str, Any]:
        return pick(
            self, "findings", "mounts", "fix_plan", "notes", skipped_mounts="skipped", containers_examined="containers"
        )


# --------------------------------------------------------------------------------------------
# Discovery


def discover(request: BindMountInfoRequest, runner: Runner, outcome: Outcome) -> list[Container]:
    """Every container of the requested engines; what could not be asked becomes a note."""
    containers: list[Container] = []
    notes = outcome.notes
    scopes = discover_scopes(
        runner, notes, what="containers", engines=request.engines, podman_users=request.podman_users,
        docker_host=request.docker_host, timeout=request.timeout, namespaces=False, cache=request.cache,
    )
    for scope in scopes:
        try:
            containers.extend(scope_containers(scope, runner, notes, request.containers, request.cache))
        except DockerEngineError as exc:
            notes.append(f"Docker containers were not examined: {exc}")
        except PodmanError as exc:
            notes.append(f"podman containers of {scope.who} were not examined: {exc}")
    return containers


# --------------------------------------------------------------------------------------------
# Evaluation


def _record(need: Need, **values: Any) -> dict[str, Any]:
    access = "ro" if need.read_only else "rw"
    return dict(pick(need, "engine", "source", "destination", container="label", user="owner"), access=access, **values)


def _host_identity(
    need: Need, outcome: Outcome, accounts: AccountDatabase
) -> tuple[ProcessIdentity, HostIdentity, str] | None:
    """The container ids and the host identity of a need, None (with a mount record) if unknown."""
    if need.container is not None:
        container = need.container
        try:
            identity, host = host_identity(container)
        except IdentityError as exc:
            outcome.mounts.append(_record(need, status="unresolved", reason=str(exc)))
            outcome.notes.append(f"{container.describe()}: {exc}")
            return None
        except UnmappedIdentity as exc:
            _unmapped(need, outcome, exc.identity, str(exc))
            return None
        except UnknownIdentity as exc:
            outcome.mounts.append(_record(need, status="unresolved", reason=str(exc)))
            return None
        return identity, host, container.map_source
    spec = need.spec
    if spec is None:  # pragma: no cover - a need has a container or a spec
        return None
    identity = ProcessIdentity(spec.uid, spec.gid, (), f"{spec.uid}:{spec.gid}")
    uid_map = gid_map = IDENTITY
    source = "identity"
    if spec.rootless_user:
        try:
            account = Account.lookup(spec.rootless_user)
            uid_map, gid_map = subid_namespace(account, accounts)
        except KeyError:
            reason = f"rootless_user {spec.rootless_user!r} does not exist on this host"
            outcome.mounts.append(_record(need, status="unresolved", reason=reason))
            outcome.notes.append(f"{need.describe()} for {need.source}: {reason}")
            return None
        except SubidError as exc:
            outcome.mounts.append(_record(need, status="unresolved", reason=str(exc)))
            outcome.notes.append(f"{need.describe()} for {need.source}: {exc}")
            return None
        source = "computed"
    host_uid = uid_map.to_host(identity.uid)
    host_gid = gid_map.to_host(identity.gid)
    if host_uid is None or host_gid is None:
        unmapped, idmap = (identity.uid, uid_map) if host_uid is None else (identity.gid, gid_map)
        _unmapped(need, outcome, identity, (
            f"container id {unmapped} is not mapped in the user namespace ({', '.join(idmap.lines())}); the container "
            f"cannot run as {identity.describe()} (see the subid findings)"
        ))
        return None
    return identity, HostIdentity(host_uid, host_gid, (), identity.uid == 0, uid_map, gid_map), source


def _unmapped(need: Need, outcome: Outcome, identity: ProcessIdentity, reason: str) -> None:
    outcome.mounts.append(
        _record(need, status="unmapped", container_uid=identity.uid, container_gid=identity.gid, reason=reason)
    )
    outcome.notes.append(f"{need.describe()}: {reason}")


@dataclass
class _Context:
    request: BindMountInfoRequest
    homes: list[str]
    protected_homes: list[str]
    storage: list[str]
    accounts: AccountDatabase
    scans: dict[tuple[str, int, int], Any | None] = field(default_factory=dict)
    mounts: MountinfoCache = field(default_factory=MountinfoCache)  # one mountinfo parse for every scan of this run


def evaluate(need: Need, context: _Context, outcome: Outcome) -> dict[str, Any] | None:
    """Check one need; record it in ``outcome.mounts``; return its plan item (None when fine
    or not fixable)."""
    source = need.source
    if not source.startswith("/"):
        outcome.mounts.append(_record(need, status="skipped", reason=f"{source} is not an absolute host path"))
        return None
    if not os.path.lexists(source):
        reason = f"{source} does not exist on the host"
        if need.container is not None:
            reason += " (the engine creates a missing bind mount source owned by root when the container starts)"
        outcome.mounts.append(_record(need, status="missing", reason=reason))
        outcome.notes.append(f"{need.describe()}: {reason}")
        return None
    resolved = _host_identity(need, outcome, context.accounts)
    if resolved is None:
        return None
    identity, host, map_source = resolved
    real = os.path.realpath(source)
    try:
        facts = path_facts(real)
    except OSError as exc:
        reason = f"{real} cannot be examined: {exc.strerror or exc}"
        outcome.mounts.append(_record(need, status="error", reason=reason))
        outcome.notes.append(f"{need.describe()}: {reason}")
        return None
    want = needed_access(facts.is_dir, need.read_only)
    result = check_access(facts, host, want)
    base = {
        "real_path": real,
        "type": facts.kind,
        "container_uid": identity.uid,
        "container_gid": identity.gid,
        "host_uid": host.uid,
        "host_gid": host.gid,
        "host_groups": list(host.groups),
        "map_source": map_source,
        "uid_map": host.uid_map.lines(),
        "gid_map": host.gid_map.lines(),
        "observed": {"uid": facts.uid, "gid": facts.gid, "mode": facts.mode_text},
        "check": result.as_dict(),
    }
    if result.granted:
        outcome.mounts.append(_record(need, status="ok", reason=None, **base))
        return None
    return _deny(need, context, outcome, identity, host, facts, result, base)


def _deny(
    need: Need,
    context: _Context,
    outcome: Outcome,
    identity: ProcessIdentity,
    host: HostIdentity,
    facts: PathFacts,
    result: AccessResult,
    base: dict[str, Any],
) -> dict[str, Any] | None:
    real = facts.path
    problem = _fix_problem(real, facts, context)
    chown_works = check_access(facts.with_owner(host.uid, host.gid), host, result.want).granted
    counts = None
    fix_text: str | None = None
    if problem is None:
        if chown_works:
            fix_text = f"chown {host.uid}:{host.gid}"
            if context.request.scan and facts.is_dir:
                counts = _scan(real, host, context, outcome)
                if counts is not None:
                    fix_text = counts.summary()
        else:
            fix_text = (
                f"grant user {host.uid} an ACL (strategy acl): the owner bits of mode {facts.mode_text} "
                f"lack {perm_text(result.want)}, so a chown alone would not help"
            )
    message = _message(need, identity, host, facts, result)
    observed: dict[str, Any] = {
        "uid": facts.uid,
        "gid": facts.gid,
        "mode": facts.mode_text,
        "type": facts.kind,
        "access": perm_text(result.perms),
        "via": result.via,
    }
    if counts is not None:
        observed["entries"] = counts.counts["entries"]
        observed["mismatched"] = counts.counts["to_change"]
    expected: dict[str, Any] = {
        "uid": host.uid,
        "gid": host.gid,
        "access": "ro" if need.read_only else "rw",
        "needs": perm_text(result.want),
        "container_uid": identity.uid,
        "container_gid": identity.gid,
        "container_path": need.destination,
    }
    finding = make_finding(
        "bind_mount",
        "error" if need.container is not None else "warning",
        real,
        message,
        id_parts=(need.owner,),
        container=need.label,
        engine=need.engine,
        user=need.owner,
        observed=observed,
        expected=expected,
        fixable=problem is None,
        fix=fix_text,
    )
    outcome.findings.append(finding)
    record = _record(need, status="denied", reason=problem, finding=finding["id"], **base)
    if counts is not None:
        record["counts"] = {"entries": counts.counts["entries"], "mismatched": counts.counts["to_change"]}
    outcome.mounts.append(record)
    if problem is not None:
        outcome.skipped.append(
            {"path": real, "container": need.label, "engine": need.engine, "user": need.owner, "reason": problem}
        )
        return None
    return {
        "path": real,
        "uid": host.uid,
        "gid": host.gid,
        "access": "ro" if need.read_only else "rw",
        "containers": [need.label] if need.label else [],
        "findings": [finding["id"]],
        "strategies": ["chown", "acl"] if chown_works else ["acl"],
        "reason": None if chown_works else fix_text,
    }


def _fix_problem(real: str, facts: PathFacts, context: _Context) -> str | None:
    if not facts.is_dir:
        return (
            f"{real} is a {facts.kind}, not a directory: permfix never changes sockets, device nodes or "
            f"single files shared with the host (such as /etc/localtime or docker.sock)"
        )
    refused = refusal_reason(real, context.protected_homes, context.storage)
    if refused:
        return f"refusing to change {real}: {refused}"
    return placement_problem(real, context.request.allowed_roots, context.homes, context.request.allow_home_subdirs)


def _scan(real: str, host: HostIdentity, context: _Context, outcome: Outcome) -> Any | None:
    key = (real, host.uid, host.gid)
    if key not in context.scans:
        try:
            context.scans[key] = scan(
                real, Target(uid=host.uid, gid=host.gid),
                WalkOptions(refuse_protected=False, sample_size=0, mounts=context.mounts),
            )
        except (OwnershipError, OSError) as exc:
            outcome.notes.append(f"{real} could not be scanned: {exc}")
            context.scans[key] = None
    return context.scans[key]


def _message(need: Need, identity: ProcessIdentity, host: HostIdentity, facts: PathFacts, result: AccessResult) -> str:
    runs = f"runs as {identity.describe()}"
    if (host.uid, host.gid) != (identity.uid, identity.gid):
        runs += f" (host {host.describe()})"
    if need.container is None:
        runs = f"needs {host.describe()}"
    missing = perm_words(result.missing or result.want)
    where = f"{need.describe()} {runs} and cannot {missing} {facts.path}"
    if need.destination:
        where += f" (mounted {'ro' if need.read_only else 'rw'} at {need.destination})"
    return (
        f"{where}: owned by {facts.uid}:{facts.gid}, mode {facts.mode_text}, "
        f"{facts.kind} access through {result.via} is {perm_text(result.perms)}"
    )


def _merge_plan(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One plan entry per (path, uid, gid); paths needed by different owners cannot be chowned."""
    merged: dict[tuple[str, int, int], dict[str, Any]] = {}
    for item in items:
        key = (item["path"], item["uid"], item["gid"])
        if key in merged:
            entry = merged[key]
            entry["containers"] = sorted(set(entry["containers"]) | set(item["containers"]))
            entry["findings"] = sorted(set(entry["findings"]) | set(item["findings"]))
            if item["access"] == "rw":
                entry["access"] = "rw"
            if "chown" not in item["strategies"]:
                entry["strategies"] = ["acl"]
                entry["reason"] = item["reason"]
        else:
            merged[key] = dict(item)
    owners: dict[str, set] = {}
    for path, uid, gid in merged:
        owners.setdefault(path, set()).add((uid, gid))
    plan = []
    for key in sorted(merged):
        entry = merged[key]
        others = owners[key[0]] - {(key[1], key[2])}
        if others:
            entry["strategies"] = ["acl"]
            listed = ", ".join(f"{uid}:{gid}" for uid, gid in sorted(owners[key[0]]))
            entry["reason"] = (
                f"{key[0]} is needed by different owners ({listed}): one chown cannot serve them all; use strategy acl"
            )
        plan.append(entry)
    return plan


def bind_mount_report(request: BindMountInfoRequest, runner: Runner) -> Outcome:
    """Discover, check every bind mount and spec, and plan the fixes."""
    outcome = Outcome()
    containers = discover(request, runner, outcome)
    outcome.containers = len(containers)
    protected_homes, storage = host_protected_paths()
    try:
        accounts = AccountDatabase.from_files()
    except AccountsError:
        accounts = AccountDatabase(nss_fallback=True)
    context = _Context(request, human_homes(), protected_homes, storage, accounts)
    items = []
    for container in containers:
        for mount in container.mounts:
            if mount.type != "bind":
                continue
            need = Need(mount.source, mount.destination, not mount.rw, container=container)
            if _idmapped(mount):
                outcome.mounts.append(
                    _record(need, status="skipped", reason="an idmapped mount: ownership is translated by the kernel")
                )
                continue
            item = evaluate(need, context, outcome)
            if item is not None:
                items.append(item)
    for spec in request.specs:
        need = Need(spec.path, None, spec.access == "ro", spec=spec)
        item = evaluate(need, context, outcome)
        if item is not None:
            items.append(item)
    outcome.fix_plan = _merge_plan(items)
    return outcome


# --------------------------------------------------------------------------------------------
# bind_mount_info: options, request, result

BIND_MOUNT_ARGUMENT_SPEC: dict[str, Any] = {
    **SCOPE_ARGUMENT_SPEC,
    "containers": {"type": "list", "elements": "str", "default": []},
    "specs": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "path": {"type": "path", "required": True},
            "uid": {"type": "raw", "required": True},
            "gid": {"type": "raw"},
            "access": {"type": "str", "choices": list(ACCESS_CHOICES), "default": "rw"},
            "name": {"type": "str"},
            "rootless_user": {"type": "str"},
        },
    },
    **DOCKER_ARGUMENT_SPEC,
    "scan": {"type": "bool", "default": True},
    "allowed_roots": {"type": "list", "elements": "path", "default": list(DEFAULT_ALLOWED_ROOTS)},
    "allow_home_subdirs": {"type": "bool", "default": True},
}


def _numeric(value: IdValue, what: str) -> int:
    """A number given for an id inside a rootless namespace (names mean nothing there)."""

    def refuse(name: str) -> int:
        raise OwnerSpecError(f"{what} {name!r} is a name: ids inside a rootless namespace must be numbers")

    number = parse_id(value, "user", lookup=refuse)
    if number is None:
        raise OwnerSpecError(f"{what} is empty")
    return number


def _primary_gid(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid


def spec_from_option(index: int, raw: Mapping[str, Any]) -> Spec:
    """One entry of the ``specs`` option as a Spec; OwnerSpecError names the entry and the problem."""
    path = host_path(raw["path"], f"specs[{index}].path")
    label = f"specs[{index}] ({path})"
    for key in ("name", "rootless_user"):
        if raw.get(key) not in (None, ""):
            plain_name(raw[key], f"specs[{index}].{key}")
    try:
        if raw.get("rootless_user"):
            uid = _numeric(raw["uid"], f"{label} uid")
            gid: int | None = _numeric(raw["gid"], f"{label} gid") if raw.get("gid") not in (None, "") else uid
        else:
            parsed = parse_id(raw["uid"], "user")
            if parsed is None:
                raise OwnerSpecError("uid is empty")
            uid = parsed
            if raw.get("gid") not in (None, ""):
                gid = parse_id(raw["gid"], "group")
            else:
                gid = _primary_gid(uid)
    except OwnerSpecError as exc:
        raise OwnerSpecError(f"{label}: {exc}") from None
    if gid is None:
        gid = uid
    return Spec(path, uid, gid, raw["access"], raw.get("name"), raw.get("rootless_user"))


def bind_mount_request(params: Mapping[str, Any]) -> BindMountInfoRequest:
    """bind_mount_info's validated parameters as a BindMountInfoRequest; OptionError says what is wrong."""
    scope = scope_options(params)
    allowed_roots = host_paths(params["allowed_roots"], "allowed_roots")
    containers = plain_names(params["containers"], "containers")
    try:
        specs = tuple(spec_from_option(index, raw) for index, raw in enumerate(params["specs"]))
    except OwnerSpecError as exc:
        raise OptionError(str(exc)) from None
    for spec in specs:
        if not spec.path.startswith("/"):
            raise OptionError(f"spec path {spec.path!r} must be absolute")
    return BindMountInfoRequest(
        **scope, **take(params, "scan", "allow_home_subdirs"), specs=specs,
        containers=tuple(containers), allowed_roots=tuple(allowed_roots),
    )


def bind_mount_info(request: BindMountInfoRequest, runner: Runner) -> dict[str, Any]:
    """Everything bind_mount_info returns; DetectionError when the mounts cannot be examined."""
    return examine_engines(lambda: bind_mount_report(request, runner), "bind mounts", "containers")


BIND_MOUNT_INFO = Detection(
    "bind_mount", "bind_mount_info", BIND_MOUNT_ARGUMENT_SPEC, bind_mount_request, bind_mount_info, docker_scoped=True
)


def _idmapped(mount: Mount) -> bool:
    return any(option == "idmap" or option.startswith("idmap=") for option in mount.options)
