# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Which container engines a host has: Docker (through its API) and podman (rootful and rootless).

An absent engine is a fact to record, never an error: every function here returns None or an
empty list for it, and says why in a note.


This is what ``engine_info`` runs (:data:`ENGINE_INFO`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Detection
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DEFAULT_DOCKER_HOST,
    DOCKER_ARGUMENT_SPEC,
    docker_api_version,
    docker_options,
    docker_presence,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
    podman_path,
    podman_version,
    rootless_users,
)


@dataclass
class EngineReport:
    """What the report's ``engines`` block says about one host, plus human-readable notes."""

    docker: str | None = None
    podman: str | None = None
    rootless_users: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    docker_notes: list[str] = field(default_factory=list)  # the notes about Docker alone

    def as_dict(self) -> dict[str, Any]:
        return {"docker": self.docker, "podman": self.podman, "rootless_users": list(self.rootless_users)}


def detect_docker(docker_host: str = DEFAULT_DOCKER_HOST, timeout: float = 10.0) -> tuple[str | None, list[str]]:
    """The Docker daemon's version (None when there is no daemon) and notes on why not."""
    notes: list[str] = []
    presence = docker_presence(docker_host)
    if not presence.exists:
        if presence.installed:
            notes.append(f"docker is installed but its daemon is not running (no socket at {presence.socket})")
        return None, notes
    try:
        return str(docker_api_version(docker_host, timeout).get("Version") or "unknown"), notes
    except (OSError, ValueError) as exc:
        notes.append(f"the Docker daemon at {docker_host} does not answer: {exc}")
        return None, notes


def detect_podman(runner: Runner) -> tuple[str | None, list[str], list[str]]:
    """The podman version, the names of rootless podman users, and notes."""
    if podman_path() is None:
        return None, [], []
    notes: list[str] = []
    try:
        version = podman_version(runner)
    except PodmanError as exc:
        version = None
        notes.append(f"podman is installed but does not answer: {exc}")
    users = [account.name for account in rootless_users()]
    return version, users, notes


def detect_engines(runner: Runner, docker_host: str = DEFAULT_DOCKER_HOST, timeout: float = 10.0) -> EngineReport:
    """Docker and podman on this host, and the users with rootless podman state."""
    docker_version, docker_notes = detect_docker(docker_host, timeout)
    podman, users, podman_notes = detect_podman(runner)
    return EngineReport(docker_version, podman, users, docker_notes + podman_notes, docker_notes)


def engine_info(request: tuple[str, int], runner: Runner) -> dict[str, Any]:
    """What engine_info returns for the Docker host and timeout in ``request``."""
    docker_host, timeout = request
    report = detect_engines(runner, docker_host, float(timeout))
    return {"engines": report.as_dict(), "notes": report.notes}


ENGINE_INFO = Detection("engines", "engine_info", DOCKER_ARGUMENT_SPEC, docker_options, engine_info)
