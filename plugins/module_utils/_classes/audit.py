# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Every detection of a host in one module call (``audit_info``): what the audit playbook runs.

The engines and the four detections are the same functions the single ``*_info`` modules call
(see ``_core.contracts``), run one after the other in one process so that the fleet audit costs one module
round trip per host. A detection that fails is recorded (its error sentence) and the others go on;
only invalid options fail the module, with the sentences the single modules give.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ansible_collections.permfix.containers.plugins.module_utils._classes.bind_mount import BIND_MOUNT_INFO
from ansible_collections.permfix.containers.plugins.module_utils._classes.named_volume import VOLUME_INFO
from ansible_collections.permfix.containers.plugins.module_utils._classes.subid import SUBID_INFO
from ansible_collections.permfix.containers.plugins.module_utils._classes.unprivileged_port import PORT_INFO
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Detection
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import DetectionError
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.detect import EngineReport, detect_engines
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DOCKER_ARGUMENT_SPEC,
    docker_options,
    docker_presence,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.scopes import EngineCache

# In this order: the order of the findings in the result and in the report.
DETECTIONS: tuple[Detection, ...] = (SUBID_INFO, PORT_INFO, BIND_MOUNT_INFO, VOLUME_INFO)

# audit_info's own options: (detection, the option of that detection's module it sets).
OPTIONS: dict[str, tuple[str, str]] = {
    "subid_users": ("subid", "users"),
    "subid_discover": ("subid", "discover"),
    "subid_min_count": ("subid", "min_count"),
    "subid_counts": ("subid", "counts"),
    "unprivileged_ports": ("unprivileged_port", "ports"),
    "unprivileged_port_discover": ("unprivileged_port", "discover"),
    "unprivileged_port_sysctl_dirs": ("unprivileged_port", "sysctl_dirs"),
    "unprivileged_port_sysctl_conf": ("unprivileged_port", "sysctl_conf"),
    "bind_mount_engines": ("bind_mount", "engines"),
    "bind_mount_podman_users": ("bind_mount", "podman_users"),
    "bind_mount_containers": ("bind_mount", "containers"),
    "bind_mount_specs": ("bind_mount", "specs"),
    "bind_mount_allowed_roots": ("bind_mount", "allowed_roots"),
    "bind_mount_allow_home_subdirs": ("bind_mount", "allow_home_subdirs"),
    "bind_mount_scan": ("bind_mount", "scan"),
    "bind_mount_docker_host": ("bind_mount", "docker_host"),
    "named_volume_engines": ("named_volume", "engines"),
    "named_volume_podman_users": ("named_volume", "podman_users"),
    "named_volume_volumes": ("named_volume", "volumes"),
    "named_volume_owners": ("named_volume", "owners"),
    "named_volume_fixer_image": ("named_volume", "fixer_image"),
    "named_volume_docker_host": ("named_volume", "docker_host"),
}

EngineDetector = Callable[[Runner, str, float], EngineReport]


def argument_spec(detections: Sequence[Detection] = DETECTIONS) -> dict[str, Any]:
    """audit_info's argument spec: each mirrored option has the spec of the option it sets."""
    by_name = {detection.name: detection for detection in detections}
    names = [detection.name for detection in detections]
    spec: dict[str, Any] = {"detections": {"type": "list", "elements": "str", "choices": names, "default": names}}
    spec.update(
        {option: by_name[name].argument_spec[key] for option, (name, key) in OPTIONS.items() if name in by_name}
    )
    spec.update(DOCKER_ARGUMENT_SPEC)
    return spec


@dataclasses.dataclass
class AuditRequest:
    docker_host: str
    timeout: int
    requests: dict[str, Any]  # the selected detections' validated requests, by detection name


def detection_params(detection: Detection, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters ``detection``'s own module would get for audit_info's ``params``."""
    values = detection.defaults()
    for key in DOCKER_ARGUMENT_SPEC:
        if key in values:
            values[key] = params[key]
    # after the shared Docker options: a detection's own docker_host (<detection>_docker_host) wins
    for option, (name, key) in OPTIONS.items():
        if name == detection.name and params.get(option) is not None:
            values[key] = params[option]
    return values


def audit_request(params: Mapping[str, Any], detections: Sequence[Detection] = DETECTIONS) -> AuditRequest:
    """Validate every option of the selected detections before anything runs (OptionError)."""
    docker_host, timeout = docker_options(params)
    requests = {
        detection.name: detection.request(detection_params(detection, params))
        for detection in detections
        if detection.name in params["detections"]
    }
    return AuditRequest(docker_host, timeout, requests)


def docker_problem(docker_host: str, report: EngineReport) -> str | None:
    """Why the Docker daemon should answer and does not; None when it answers or is simply absent
    (no socket at the default address is an engine the host does not have, not a failure)."""
    if report.docker is not None:
        return None
    presence = docker_presence(docker_host)
    if not presence.exists:
        return (
            None
            if presence.absent
            else f"no Docker daemon at {docker_host} (the socket {presence.socket} does not exist)"
        )
    if report.docker_notes:
        return report.docker_notes[0]
    return f"the Docker daemon at {docker_host} does not answer"


def _unexpected(detection: Detection, exc: Exception) -> str:
    return (
        f"{detection.module} stopped on an unexpected error ({type(exc).__name__}: {exc}); "
        "run it alone on this host for details"
    )


def audit(
    request: AuditRequest,
    runner: Runner,
    detections: Sequence[Detection] = DETECTIONS,
    engines: EngineDetector = detect_engines,
) -> dict[str, Any]:
    """The engines, then each selected detection; a failure is recorded and the rest go on."""
    errors: list[str] = []
    try:
        report = engines(runner, request.docker_host, float(request.timeout))
    except Exception as exc:  # the engines are a fact to record, never a reason to stop
        report = EngineReport()
        errors.append(f"engines: unexpected error ({type(exc).__name__}: {exc})")
    docker_down = docker_problem(request.docker_host, report)
    findings: list[dict[str, Any]] = []
    summary: dict[str, dict[str, Any]] = {}
    cache = EngineCache()  # the engines' scopes and containers, learnt once for every detection of this run
    for detection in detections:
        entry: dict[str, Any] = {"ran": False, "findings": 0, "error": None}
        summary[detection.name] = entry
        if detection.name not in request.requests:
            continue
        detection_request = request.requests[detection.name]
        if (
            detection.docker_scoped
            and docker_down is not None
            and "docker" in detection_request.engines
            # a detection given its own daemon (bind_mount_docker_host...) asks that one itself
            and getattr(detection_request, "docker_host", request.docker_host) == request.docker_host
        ):
            # the other engines are still examined; asking a daemon that does not answer again would only wait
            others = tuple(engine for engine in detection_request.engines if engine != "docker")
            detection_request = dataclasses.replace(detection_request, engines=others)
            entry["error"] = f"Docker was not examined: {docker_down}"
        if hasattr(detection_request, "cache"):  # the detections that examine containers share one EngineCache
            detection_request = dataclasses.replace(detection_request, cache=cache)
        try:
            found = detection.run(detection_request, runner)["findings"]
        except DetectionError as exc:
            entry["error"] = str(exc)
        except Exception as exc:  # one detection's bug must not lose the others' findings
            entry["error"] = _unexpected(detection, exc)
        else:
            entry.update(ran=True, findings=len(found))
            findings.extend(found)
        if entry["error"] is not None:
            errors.append(f"{detection.name}: {entry['error']}")
    return {"engines": report.as_dict(), "findings": findings, "detections": summary, "errors": errors}


AUDIT_INFO = Detection("audit", "audit_info", argument_spec(), audit_request, audit, warnings_from="errors")
