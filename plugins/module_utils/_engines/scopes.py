# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TODO docstring (_volumes)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.containers import (
    Container,
    docker_containers,
    podman_containers,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    HAS_DOCKER_SDK,
    DockerEngine,
    DockerEngineError,
    MissingDockerSdk,
    NotFound,
    connect,
    docker_socket_path,
    remap_enabled,
    remap_maps,
    remap_setting,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.fixer import DockerFixer, PodmanFixer
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
    podman_json,
    rootless_namespace,
    run_podman,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.volumes import (
    Volume,
    VolumeError,
    volume_from_inspect,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import (
    Account,
    AccountDatabase,
    AccountsError,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import IDENTITY, IdMap

# --------------------------------------------------------------------------------------------
# Engines


# The engines a container detection can examine (the ``engines`` option of every one).
ENGINES: Tuple[str, ...] = ("docker", "podman")


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
