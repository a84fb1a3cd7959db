# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Named volumes: the fix (volume_owner).

Examines one volume like the detection does and, when its owners differ and not in check mode,
changes only what differs with the locked-down fixer container (``_engines.fixer``), optionally
stopping and restarting the containers that use it, then observes it again. No container is
started when nothing differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Fix, FixFailed
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import OptionError
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import sample_size as check_sample_size
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import seconds
from ansible_collections.permfix.containers.plugins.module_utils._core.options import host_path, plain_name
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DEFAULT_DOCKER_HOST,
    DOCKER_ARGUMENT_SPEC,
    DOCKER_SDK_IMPORT_ERROR,
    DockerEngineError,
    MissingDockerSdk,
    docker_options,
    docker_presence,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.fixer import (
    DEFAULT_BUSYBOX,
    DEFAULT_FIXER_IMAGE,
    FixerError,
    FixerRun,
    ensure_image,
    fix_script,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
    podman_path,
    run_podman,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.scopes import (
    ENGINES,
    EngineScope,
    docker_scope,
    list_volumes,
    podman_scope,
    scope_containers,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.volumes import (
    VolumeError,
    access_method,
    expected_owner,
    observe_in_container,
    observe_on_host,
    parse_owner,
    root_matches,
    volume_users,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account


@dataclass
class VolumeFixRequest:
    volume: str
    engine: str = "docker"
    podman_user: str | None = None
    owner: tuple[int, int] | None = None
    fixer_image: str = DEFAULT_FIXER_IMAGE
    pull: bool = True
    busybox_path: str = DEFAULT_BUSYBOX
    stop_containers: bool = False
    docker_host: str = DEFAULT_DOCKER_HOST
    timeout: int = 10
    fixer_timeout: int = 600
    sample_size: int = 10


def _docker_scope(request: VolumeFixRequest, notes: list[str]) -> EngineScope:
    presence = docker_presence(request.docker_host)
    if not presence.exists:
        raise VolumeError(
            f"no Docker daemon at {request.docker_host}: the socket {presence.socket} does not exist "
            "(is dockerd running?)"
        )
    try:
        return docker_scope(request.docker_host, request.timeout, notes)
    except DockerEngineError as exc:
        raise VolumeError(f"{exc}; is dockerd running and is docker_host right?") from None


def fix_volume(request: VolumeFixRequest, runner: Runner, check_mode: bool) -> dict[str, Any]:
    """Examine one volume and, when it differs (and not in check mode), fix it with a fixer
    container. Raises VolumeError/FixerError with a sentence for the user."""
    notes: list[str] = []
    account = None
    if request.engine == "docker":
        scope = _docker_scope(request, notes)
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
            listing = (
                "docker volume ls"
                if request.engine == "docker"
                else "podman volume ls" + (f" (as {account.name})" if account else "")
            )
            raise VolumeError(
                f"volume {request.volume!r} does not exist in {scope.describe()}; '{listing}' lists the volumes there"
            )
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
            f"no container that needs a particular owner uses {volume.describe()}: "
            "set owner (uid:gid as the containers see them)"
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
        "before": {
            "root_owner": f"{before.uid}:{before.gid}",
            "mismatched": before.mismatched,
            "entries": before.entries,
        },
        "after": {
            "root_owner": want if differs else f"{before.uid}:{before.gid}",
            "mismatched": 0,
            "entries": before.entries,
        },
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
        run: FixerRun = backend.run(
            volume.name, request.fixer_image, fix_script(expectation.uid, expectation.gid), False, image_source
        )
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
    after = (
        observe_on_host(volume, expectation, True, request.sample_size)
        if method == "host"
        else observe_in_container(backend, volume, expectation, request.fixer_image)
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
            scope.docker.stop(name)
        else:
            run_podman(runner, ["stop", name], scope.account)
        stopped.append(name)


def _start(scope: EngineScope, runner: Runner, names: Sequence[str]) -> list[str]:
    errors = []
    for name in names:
        try:
            if scope.docker is not None:
                scope.docker.start(name)
            else:
                run_podman(runner, ["start", name], scope.account)
        except (DockerEngineError, PodmanError) as exc:
            errors.append(str(exc))
    return errors


# --------------------------------------------------------------------------------------------
# The volume_owner module

VOLUME_FIX_ARGUMENT_SPEC: dict[str, Any] = {
    "volume": {"type": "str", "required": True},
    "engine": {"type": "str", "choices": list(ENGINES), "default": "docker"},
    "podman_user": {"type": "str"},
    "owner": {"type": "str"},
    "fixer_image": {"type": "str", "default": DEFAULT_FIXER_IMAGE},
    "pull": {"type": "bool", "default": True},
    "busybox_path": {"type": "path", "default": DEFAULT_BUSYBOX},
    "stop_containers": {"type": "bool", "default": False},
    **DOCKER_ARGUMENT_SPEC,
    "fixer_timeout": {"type": "int", "default": 600},
    "sample_size": {"type": "int", "default": 10},
}


def volume_fix_request(params: Mapping[str, Any]) -> VolumeFixRequest:
    """volume_owner's parameters as a request; OptionError says what is wrong."""
    docker_host, timeout = docker_options(params)
    fixer_timeout = seconds(params["fixer_timeout"], "fixer_timeout")
    size = check_sample_size(params["sample_size"])
    if params["podman_user"] and params["engine"] != "podman":
        raise OptionError("podman_user needs engine: podman")
    owner = None
    if params["owner"]:
        try:
            owner = parse_owner(params["owner"])
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    return VolumeFixRequest(
        volume=plain_name(params["volume"], "volume"),
        engine=params["engine"],
        podman_user=plain_name(params["podman_user"], "podman_user") if params["podman_user"] else None,
        owner=owner,
        fixer_image=plain_name(params["fixer_image"], "fixer_image"),
        pull=params["pull"],
        busybox_path=host_path(params["busybox_path"], "busybox_path"),
        stop_containers=params["stop_containers"],
        docker_host=docker_host,
        timeout=timeout,
        fixer_timeout=fixer_timeout,
        sample_size=size,
    )


def run_volume_fix(request: VolumeFixRequest, runner: Runner, check_mode: bool, diff: bool) -> dict[str, Any]:
    """Everything volume_owner returns; every failure is a sentence that names the volume or the daemon."""
    try:
        result = fix_volume(request, runner, check_mode)
    except MissingDockerSdk as exc:
        raise FixFailed(
            missing_required_lib("docker", reason=f"to fix the volumes of the Docker daemon at {exc}"),
            exception=DOCKER_SDK_IMPORT_ERROR,
        ) from None
    except (VolumeError, FixerError):
        raise
    except (DockerEngineError, PodmanError, OSError, ValueError) as exc:
        raise FixFailed(f"volume {request.volume} could not be fixed: {exc}") from None
    changes = result.pop("diff")
    if diff:
        result["diff"] = changes
    return result


VOLUME_FIX = Fix("named_volume", "volume_owner", VOLUME_FIX_ARGUMENT_SPEC, volume_fix_request, run_volume_fix)
