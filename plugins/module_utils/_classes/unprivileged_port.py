# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Unprivileged ports: which host ports rootless containers publish, and what blocks them.

Rootless podman (rootlessport) and rootless Docker (rootlesskit) bind published host ports
as an ordinary user in the host's network namespace, so every host port below
net.ipv4.ip_unprivileged_port_start is refused. Rootful containers are not affected.

Discovery asks podman for every rootless user (running and stopped containers) and every
rootless Docker daemon (a socket at /run/user/UID/docker.sock); the ports a caller declares
are added. :func:`inspect_host` gathers the facts, :func:`build_findings` turns them into
``unprivileged_port`` findings and :func:`plan_fix` decides what the fix module changes.


Both halves are here: :data:`PORT_INFO` (unprivileged_port_info) and :data:`PORT_FIX` (unprivileged_port).
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Detection, Fix, take
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import (
    DetectionError,
    OptionError,
    PermfixError,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import make_finding
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import pick
from ansible_collections.permfix.containers.plugins.module_utils._core.options import host_path, host_paths
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import docker_api_get
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
    podman_json,
    podman_path,
    rootless_users,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account
from ansible_collections.permfix.containers.plugins.module_utils._host.sysctl import (
    DEFAULT_LOCAL_PORT_RANGE_PATH,
    DEFAULT_PROC_PATH,
    DEFAULT_SYSCTL_CONF,
    DEFAULT_SYSCTL_DIRS,
    KERNEL_DEFAULT_UNPRIVILEGED_PORT,
    PORT_MAX,
    PORT_MIN,
    UNPRIVILEGED_PORT_KEY,
    Resolution,
    Runtime,
    SysctlError,
    read_local_port_range,
    read_runtime,
    resolve,
    write_runtime,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.sysctl_plan import (
    DROPIN_NAME,
    FileChange,
    apply_file_changes,
    plan_dropin,
    plan_in_place,
)

PRIVILEGED_LIMIT = 1024  # ports below this are "privileged" in the sense of the issue text
ROOTLESS_DOCKER_SOCKET = "/run/user/{uid}/docker.sock"
FINDING_CLASS = "unprivileged_port"
FIX_HINT = "permfix.containers.unprivileged_port"
PERSIST_MODES: tuple[str, ...] = ("dropin", "in_place")

COMMON_ARGUMENT_SPEC: dict[str, Any] = {
    "ports": {"type": "list", "elements": "int", "default": []},
    "discover": {"type": "bool", "default": True},
    "sysctl_dirs": {"type": "list", "elements": "path", "default": list(DEFAULT_SYSCTL_DIRS)},
    "sysctl_conf": {"type": "path", "default": DEFAULT_SYSCTL_CONF},
    "proc_path": {"type": "path", "default": DEFAULT_PROC_PATH},
    "local_port_range_path": {"type": "path", "default": DEFAULT_LOCAL_PORT_RANGE_PATH},
}
PORT_INFO_ARGUMENT_SPEC: dict[str, Any] = dict(COMMON_ARGUMENT_SPEC)


class PortsError(PermfixError):
    """Bad input or a state the fix cannot handle; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Published ports
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedPort:
    """A host port (or range, ``port``..``end``) a rootless container publishes, or a declared one."""

    port: int
    end: int
    protocol: str
    source: str  # "podman", "docker" or "declared"
    container: str | None = None
    user: str | None = None

    @property
    def engine(self) -> str | None:
        return None if self.source == "declared" else self.source

    def label(self) -> str:
        span = str(self.port) if self.end == self.port else f"{self.port}-{self.end}"
        return f"{span}/{self.protocol}"

    def describe(self) -> str:
        if self.source == "declared":
            return f"declared port {self.label()}"
        return f"rootless {self.source} container {self.container} of user {self.user} (host port {self.label()})"

    def as_dict(self) -> dict[str, Any]:
        return pick(self, "port", "end", "protocol", "source", "engine", "container", "user")


def _as_port(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= PORT_MAX else None


def podman_published_ports(entries: Any, user: str) -> list[PublishedPort]:
    """Host ports in ``podman ps --all --format json`` output (running and stopped containers)."""
    found: list[PublishedPort] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        names = entry.get("Names") or []
        name = str(names[0]) if isinstance(names, list) and names else str(entry.get("Id", ""))[:12]
        for mapping in entry.get("Ports") or []:
            if not isinstance(mapping, Mapping):
                continue
            port = _as_port(mapping.get("host_port"))
            if port is None:  # 0 or missing: a random host port
                continue
            count = _as_port(mapping.get("range")) or 1
            protocol = str(mapping.get("protocol") or "tcp")
            found.append(PublishedPort(port, min(port + count - 1, PORT_MAX), protocol, "podman", name, user))
    return found


def docker_published_ports(inspected: Any, user: str) -> list[PublishedPort]:
    """Host ports in Docker ``GET /containers/ID/json`` answers (HostConfig.PortBindings)."""
    found: list[PublishedPort] = []
    for entry in inspected if isinstance(inspected, list) else []:
        if not isinstance(entry, Mapping):
            continue
        name = str(entry.get("Name") or entry.get("Id", "")[:12]).lstrip("/")
        bindings = (entry.get("HostConfig") or {}).get("PortBindings") or {}
        if not isinstance(bindings, Mapping):
            continue
        for container_port, hosts in bindings.items():
            protocol = str(container_port).partition("/")[2] or "tcp"
            for host in hosts or []:
                if not isinstance(host, Mapping):
                    continue
                text = str(host.get("HostPort") or "")
                first, dash, last = text.partition("-")
                port = _as_port(first)
                if port is None:
                    continue
                end = (_as_port(last) if dash else None) or port
                found.append(PublishedPort(port, max(port, end), protocol, "docker", name, user))
    return found


def declared_ports(ports: Iterable[int]) -> list[PublishedPort]:
    """Ports the caller says rootless containers need; PortsError for a value that is not a port."""
    found: list[PublishedPort] = []
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= PORT_MAX:
            raise PortsError(f"ports must be port numbers from 1 to {PORT_MAX}; {port!r} is not")
        found.append(PublishedPort(port, port, "tcp", "declared"))
    return found


def unique(ports: Iterable[PublishedPort]) -> list[PublishedPort]:
    """Ports without duplicates (a pod's infra container and its members repeat them), sorted."""
    return sorted(
        set(ports), key=lambda item: (item.port, item.source, item.user or "", item.container or "", item.protocol)
    )


def needed_value(ports: Iterable[PublishedPort]) -> int | None:
    """The lowest privileged host port that is needed, None when every port is >= 1024."""
    privileged = [item.port for item in ports if item.port < PRIVILEGED_LIMIT]
    return min(privileged) if privileged else None


def rootless_docker_sockets(
    accounts: Iterable[Account] | None = None, template: str = ROOTLESS_DOCKER_SOCKET
) -> list[tuple[Account, str]]:
    """Users other than root with a rootless Docker socket, and the socket's path."""
    if accounts is None:
        accounts = [Account.from_pwd(entry) for entry in pwd.getpwall()]
    found: list[tuple[Account, str]] = []
    for account in accounts:
        if account.uid == 0:
            continue
        path = template.format(uid=account.uid)
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                found.append((account, path))
        except OSError:
            continue
    return found


def discover_ports(runner: Runner, timeout: float = 10.0) -> tuple[list[PublishedPort], list[str]]:
    """Host ports published by rootless podman and rootless Docker containers, and warnings."""
    ports: list[PublishedPort] = []
    warnings: list[str] = []
    if podman_path() is not None:
        for account in rootless_users():
            try:
                entries = podman_json(runner, ["ps", "--all", "--format", "json"], account)
            except PodmanError as exc:
                warnings.append(f"could not list the rootless podman containers of user {account.name}: {exc}")
                continue
            ports.extend(podman_published_ports(entries, account.name))
    for account, path in rootless_docker_sockets():
        try:
            listed = docker_api_get(path, "/containers/json?all=1", timeout)
            inspected = [docker_api_get(path, f"/containers/{item['Id']}/json", timeout) for item in listed]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.append(f"could not list the rootless Docker containers of user {account.name} ({path}): {exc}")
            continue
        ports.extend(docker_published_ports(inspected, account.name))
    return ports, warnings


# --------------------------------------------------------------------------------------------
# Facts and findings
# --------------------------------------------------------------------------------------------


@dataclass
class HostState:
    """Everything the info and fix modules need to know about one host."""

    runtime: Runtime
    resolution: Resolution
    local_port_range: tuple[int, int] | None
    ports: list[PublishedPort]
    warnings: list[str] = field(default_factory=list)

    @property
    def needed(self) -> int | None:
        return needed_value(self.ports)

    def needed_dict(self) -> dict[str, Any]:
        return {"value": self.needed, "ports": [item.as_dict() for item in self.ports]}

    def assignments(self) -> list[dict[str, Any]]:
        winner = self.resolution.winner
        return [item.as_dict(winner) for item in self.resolution.assignments]

    def files(self) -> list[dict[str, Any]]:
        return [
            {"path": item.path, "applied": item.applied, "masked_by": item.masked_by}
            for item in self.resolution.files
        ]

    def persisted(self) -> dict[str, Any]:
        return self.resolution.as_dict()


def inspect_host(
    runner: Runner,
    *,
    ports: Sequence[int] = (),
    discover: bool = True,
    sysctl_dirs: Sequence[str] = DEFAULT_SYSCTL_DIRS,
    sysctl_conf: str | None = DEFAULT_SYSCTL_CONF,
    proc_path: str = DEFAULT_PROC_PATH,
    local_port_range_path: str = DEFAULT_LOCAL_PORT_RANGE_PATH,
) -> HostState:
    """Read the runtime value, resolve the boot value and collect the needed ports."""
    found = declared_ports(ports)
    warnings: list[str] = []
    if discover:
        discovered, warnings = discover_ports(runner)
        found.extend(discovered)
    return HostState(
        runtime=read_runtime(proc_path),
        resolution=resolve(UNPRIVILEGED_PORT_KEY, sysctl_dirs, sysctl_conf, KERNEL_DEFAULT_UNPRIVILEGED_PORT),
        local_port_range=read_local_port_range(local_port_range_path),
        ports=unique(found),
        warnings=warnings,
    )


def port_info_request(params: Mapping[str, Any]) -> dict[str, Any]:
    """unprivileged_port_info's parameters as the keyword arguments of :func:`inspect_host`;
    OptionError for a value that is not a port."""
    try:
        declared_ports(params["ports"])
    except PortsError as exc:
        raise OptionError(str(exc)) from None
    request = {name: params[name] for name in PORT_INFO_ARGUMENT_SPEC}
    request["sysctl_dirs"] = host_paths(params["sysctl_dirs"], "sysctl_dirs")
    if params["sysctl_conf"] is not None:  # null: no main file
        request["sysctl_conf"] = host_path(params["sysctl_conf"], "sysctl_conf")
    for name in ("proc_path", "local_port_range_path"):
        request[name] = host_path(params[name], name)
    return request


def port_info(request: Mapping[str, Any], runner: Runner) -> dict[str, Any]:
    """Everything unprivileged_port_info returns; DetectionError when the host cannot be read."""
    try:
        state = inspect_host(runner, **request)
        findings = build_findings(state)
    except (PortsError, SysctlError) as exc:
        raise DetectionError(str(exc)) from None
    return {
        "key": UNPRIVILEGED_PORT_KEY,
        "findings": findings,
        "runtime": state.runtime.as_dict(),
        "persisted": state.persisted(),
        "assignments": state.assignments(),
        "files": state.files(),
        "needed": state.needed_dict(),
        "local_port_range": list(state.local_port_range) if state.local_port_range else None,
        "notes": state.warnings,
    }


PORT_INFO = Detection(
    "unprivileged_port",
    "unprivileged_port_info",
    PORT_INFO_ARGUMENT_SPEC,
    port_info_request,
    port_info,
    warnings_from="notes",
)


def _persisted_source(resolution: Resolution) -> str:
    winner = resolution.winner
    if winner is None:
        return "the kernel default, as no configuration file sets it"
    return f"{winner.path} line {winner.line}"


def build_findings(state: HostState) -> list[dict[str, Any]]:
    """The ``unprivileged_port`` findings for one host."""
    key = UNPRIVILEGED_PORT_KEY
    findings: list[dict[str, Any]] = []
    runtime = state.runtime
    needed = state.needed
    boot = state.resolution.value
    fix_to = f"set {key} to {needed} and persist it with {FIX_HINT}" if needed is not None else None

    if not runtime.supported:
        if needed is not None:
            blocked = [item.describe() for item in state.ports if item.port < PRIVILEGED_LIMIT]
            findings.append(
                make_finding(
                    FINDING_CLASS, "error", key,
                    f"this kernel has no {key} (it came with Linux 4.11), so rootless containers cannot publish "
                    f"host ports below {PRIVILEGED_LIMIT}: {', '.join(blocked)}; use ports from {PRIVILEGED_LIMIT} "
                    "up or a newer kernel",
                    id_parts=("unsupported",),
                    observed={"supported": False},
                    expected={"value": needed},
                )
            )
        return findings

    value = runtime.value if runtime.value is not None else KERNEL_DEFAULT_UNPRIVILEGED_PORT
    for item in state.ports:
        if item.port >= value:
            continue
        if item.source == "declared":
            message = (
                f"port {item.port} is declared as needed, but {key} is {value}: rootless containers cannot "
                f"publish it"
            )
        else:
            message = (
                f"{item.describe()} cannot start: {key} is {value} (rootlessport cannot expose privileged "
                f"port {item.port})"
            )
        findings.append(
            make_finding(
                FINDING_CLASS, "error", key, message,
                id_parts=("blocked", item.user or "declared", f"{item.port}/{item.protocol}"),
                container=item.container,
                engine=item.engine,
                user=item.user,
                observed={"value": value, "port": item.port},
                expected={"value": needed},
                fixable=True,
                fix=fix_to,
            )
        )

    if boot != value:
        message = (
            f"{key} is {value} now but becomes {boot} at boot ({_persisted_source(state.resolution)}): "
            "the running value is lost at the next reboot"
        )
        later_blocked = [item.describe() for item in state.ports if value <= item.port < boot]
        if later_blocked:
            message += f", and then {', '.join(later_blocked)} will fail"
        findings.append(
            make_finding(
                FINDING_CLASS, "warning", key, message,
                id_parts=("persisted",),
                observed={"value": value, "persisted": boot, "path": state.resolution.as_dict()["path"],
                          "line": state.resolution.as_dict()["line"]},
                expected={"persisted": value if needed is None else needed},
                fixable=True,
                fix=f"persist {key} with {FIX_HINT}",
            )
        )

    lowest = needed if needed is not None else PRIVILEGED_LIMIT
    if value < lowest:
        reason = (
            f"lower than the lowest port rootless containers need ({needed})"
            if needed is not None
            else f"though no rootless container publishes a port below {PRIVILEGED_LIMIT}"
        )
        findings.append(
            make_finding(
                FINDING_CLASS, "info", key,
                f"{key} is {value}, {reason}: every user may bind ports {value} to {lowest - 1}, more than necessary",
                id_parts=("permissive",),
                observed={"value": value},
                expected={"value": lowest},
                fixable=True,
                fix=f"set {key} to {lowest} with {FIX_HINT} and allow_raise: true",
            )
        )

    if state.local_port_range is not None:
        low, high = state.local_port_range
        checks = [("runtime", value, "now")]
        if state.resolution.winner is not None:
            checks.append(("persisted", boot, f"at boot ({_persisted_source(state.resolution)})"))
        for label, number, when in checks:
            if number > low:
                findings.append(
                    make_finding(
                        FINDING_CLASS, "warning", key,
                        f"{key} is {number} {when}, inside net.ipv4.ip_local_port_range {low}-{high}: the kernel "
                        f"refuses a value above {low}, so sysctl cannot apply it",
                        id_parts=("local_port_range", label),
                        observed={"value": number, "local_port_range": [low, high]},
                        expected={"value": f"<= {low}"},
                        fixable=needed is not None and needed <= low,
                        fix=fix_to,
                    )
                )

    for assignment in state.resolution.applied_assignments:
        if assignment.valid and assignment.refused:
            findings.append(
                make_finding(
                    FINDING_CLASS,
                    "warning",
                    key,
                    f"{assignment.path} line {assignment.line} sets {key} = {assignment.raw_value}, but sysctl "
                    f"--system does not get it into the kernel at boot: {assignment.refused}; the boot value is "
                    f"{boot} ({_persisted_source(state.resolution)})",
                    id_parts=("refused", f"{assignment.path}:{assignment.line}"),
                    observed={"path": assignment.path, "line": assignment.line, "value": assignment.value,
                              "persisted": boot,
                              "local_port_range": list(state.resolution.local_port_range)},
                    expected={"value": needed if needed is not None else boot},
                    fixable=needed is not None,
                    fix=fix_to,
                )
            )
        if not assignment.valid:
            findings.append(
                make_finding(
                    FINDING_CLASS,
                    "warning",
                    key,
                    f"{assignment.path} line {assignment.line} sets {key} to {assignment.raw_value!r}, "
                    "which the kernel refuses "
                    f"(a number from {PORT_MIN} to {PORT_MAX} is expected); sysctl --system reports an error for it",
                    id_parts=("invalid", f"{assignment.path}:{assignment.line}"),
                    observed={"path": assignment.path, "line": assignment.line, "value": assignment.raw_value},
                    expected={"value": needed if needed is not None else "a port number"},
                )
            )

    if not runtime.writable:
        findings.append(
            make_finding(
                FINDING_CLASS, "info", key,
                f"{runtime.path} is read-only here (an unprivileged container?): the runtime value cannot be "
                "changed from this system, only the configuration files",
                id_parts=("read_only",),
                observed={"path": runtime.path, "writable": False},
            )
        )
    return findings


PORT_FIX_ARGUMENT_SPEC: dict[str, Any] = dict(
    COMMON_ARGUMENT_SPEC,
    value={"type": "int"},
    allow_raise={"type": "bool", "default": False},
    persist_mode={"type": "str", "default": "dropin", "choices": list(PERSIST_MODES)},
    dropin_name={"type": "str", "default": DROPIN_NAME},
)


# --------------------------------------------------------------------------------------------
# The fix
# --------------------------------------------------------------------------------------------


@dataclass
class FixPlan:
    """What the fix module does: runtime value and file changes, with the reasons."""

    target: int | None
    runtime_before: int | None
    runtime_after: int | None
    persisted_before: int
    persisted_after: int
    changes: list[FileChange]
    notes: list[str]

    @property
    def runtime_changes(self) -> bool:
        return self.runtime_after != self.runtime_before

    @property
    def changed(self) -> bool:
        return self.runtime_changes or bool(self.changes)


def choose_target(state: HostState, value: int | None) -> int | None:
    """The value to set: the explicit ``value``, else the lowest needed port (None: nothing needed)."""
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or not PORT_MIN <= value <= PORT_MAX:
            raise PortsError(f"value must be a number from {PORT_MIN} to {PORT_MAX}, not {value!r}")
        return value
    return state.needed


def plan_fix(
    state: HostState,
    *,
    value: int | None = None,
    allow_raise: bool = False,
    persist_mode: str = "dropin",
    sysctl_dirs: Sequence[str] = DEFAULT_SYSCTL_DIRS,
    sysctl_conf: str | None = DEFAULT_SYSCTL_CONF,
    dropin_name: str = DROPIN_NAME,
) -> FixPlan:
    """Decide the runtime value and the file changes; PortsError/SysctlError when it cannot be done."""
    if persist_mode not in PERSIST_MODES:
        raise PortsError(f"persist_mode must be one of {', '.join(PERSIST_MODES)}, not {persist_mode!r}")
    if not dropin_name.endswith(".conf") or "/" in dropin_name or dropin_name.startswith("."):
        raise PortsError(f"dropin_name must be a plain file name ending in .conf, not {dropin_name!r}")
    runtime = state.runtime
    boot = state.resolution.value
    target = choose_target(state, value)
    notes: list[str] = []
    if target is None:
        notes.append(
            f"no rootless container publishes a host port below {PRIVILEGED_LIMIT} and no port was declared: "
            "nothing to change"
        )
        return FixPlan(None, runtime.value, runtime.value, boot, boot, [], notes)
    key = UNPRIVILEGED_PORT_KEY
    if not runtime.supported:
        raise SysctlError(
            f"this kernel has no {key} ({runtime.path} does not exist; it came with Linux 4.11): rootless "
            f"containers cannot publish host ports below {PRIVILEGED_LIMIT} here. Nothing was changed"
        )
    if state.local_port_range is not None and target > state.local_port_range[0]:
        low, high = state.local_port_range
        raise PortsError(
            f"{target} would overlap net.ipv4.ip_local_port_range {low}-{high}: the kernel refuses {key} above "
            f"{low}. Choose a value of at most {low}. Nothing was changed"
        )
    if value is not None and state.needed is not None and target > state.needed:
        notes.append(
            f"value {target} is above the lowest needed port {state.needed}: "
            + ", ".join(item.describe() for item in state.ports if item.port < target)
            + " stay blocked"
        )

    current = runtime.value if runtime.value is not None else KERNEL_DEFAULT_UNPRIVILEGED_PORT
    runtime_after = current
    if current > target or (allow_raise and current != target):
        runtime_after = target
    elif current < target:
        notes.append(
            f"{key} is already {current}, below {target}; not raised (a running service may rely on it; "
            "set allow_raise to raise it)"
        )
    if runtime_after != current and not runtime.writable:
        notes.append(
            f"{runtime.path} is read-only here (an unprivileged container?): the runtime value stays {current}; "
            f"only the configuration was changed, so {target} takes effect when the host applies it "
            "(next boot or sysctl --system)"
        )
        runtime_after = current

    persisted_after = boot
    changes: list[FileChange] = []
    if boot > target or (allow_raise and boot != target):
        if persist_mode == "in_place":
            changes = plan_in_place(state.resolution, target, sysctl_dirs, sysctl_conf, dropin_name)
        else:
            changes = plan_dropin(state.resolution, target, sysctl_dirs, dropin_name)
        persisted_after = target
    elif boot < target:
        notes.append(f"{key} is already {boot} at boot, below {target}; not raised (set allow_raise to raise it)")
    return FixPlan(target, current, runtime_after, boot, persisted_after, changes, notes)


def fix_diff(plan: FixPlan, runtime_path: str) -> list[dict[str, str]]:
    """Diff mode: the runtime value and every file, before and after."""
    before = "" if plan.runtime_before is None else f"{plan.runtime_before}\n"
    after = "" if plan.runtime_after is None else f"{plan.runtime_after}\n"
    diffs = [
        {
            "before_header": f"{runtime_path} (runtime)",
            "after_header": f"{runtime_path} (runtime)",
            "before": before,
            "after": after,
        }
    ]
    diffs.extend(change.diff() for change in plan.changes)
    return diffs


def fix_actions(plan: FixPlan, runtime_path: str) -> list[str]:
    """What the fix did (or would do), one sentence each."""
    actions: list[str] = []
    if plan.runtime_changes:
        actions.append(f"set {runtime_path} from {plan.runtime_before} to {plan.runtime_after}")
    for change in plan.changes:
        actions.append(f"{change.action} {change.path}: {change.reason}")
    return actions


# --------------------------------------------------------------------------------------------
# The unprivileged_port module


def port_fix_request(params: Mapping[str, Any]) -> dict[str, Any]:
    """unprivileged_port's parameters (the ports checked like unprivileged_port_info's)."""
    request = port_info_request(params)
    request.update({name: params[name] for name in PORT_FIX_ARGUMENT_SPEC if name not in request})
    return request


def run_port_fix(request: Mapping[str, Any], runner: Runner, check_mode: bool, diff: bool) -> dict[str, Any]:
    """Set the runtime value and persist it (unless in check mode); everything the module returns."""
    state = inspect_host(runner, **{name: request[name] for name in PORT_INFO_ARGUMENT_SPEC})
    plan = plan_fix(
        state, **take(request, "value", "allow_raise", "persist_mode", "sysctl_dirs", "sysctl_conf", "dropin_name")
    )
    proc_path = request["proc_path"]
    if not check_mode:
        if plan.runtime_changes and plan.runtime_after is not None:
            write_runtime(proc_path, plan.runtime_after)
        try:
            apply_file_changes(plan.changes)
        except SysctlError as exc:
            if plan.runtime_changes and plan.runtime_before is not None:
                try:
                    write_runtime(proc_path, plan.runtime_before)
                except SysctlError as undo:
                    raise SysctlError(f"{exc}; putting the runtime value back also failed: {undo}") from exc
            raise
    persisted = state.persisted()
    return {
        "changed": plan.changed,
        "key": UNPRIVILEGED_PORT_KEY,
        "value": plan.target,
        "runtime": {
            "path": proc_path,
            "before": plan.runtime_before,
            "after": plan.runtime_after,
            "writable": state.runtime.writable,
        },
        "persisted": {
            "before": plan.persisted_before,
            "after": plan.persisted_after,
            "path": persisted["path"],
            "line": persisted["line"],
        },
        "file_changes": [change.as_dict() for change in plan.changes],
        "actions": fix_actions(plan, proc_path),
        "assignments": state.assignments(),
        "files": state.files(),
        "needed": state.needed_dict(),
        "notes": plan.notes + state.warnings,
        **({"diff": fix_diff(plan, proc_path)} if diff else {}),
    }


PORT_FIX = Fix("unprivileged_port", "unprivileged_port", PORT_FIX_ARGUMENT_SPEC, port_fix_request, run_port_fix)
