# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""audit_info's composition: option mapping and validation, order, selection, error capture."""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._classes.audit import (
    DETECTIONS,
    AuditRequest,
    argument_spec,
    audit,
    audit_request,
    detection_params,
    docker_problem,
)
from ansible_collections.permfix.containers.plugins.module_utils._classes.bind_mount import BIND_MOUNT_INFO
from ansible_collections.permfix.containers.plugins.module_utils._classes.named_volume import VOLUME_INFO
from ansible_collections.permfix.containers.plugins.module_utils._classes.subid import SUBID_INFO
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Detection
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import (
    DetectionError,
    OptionError,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX
from ansible_collections.permfix.containers.plugins.module_utils._engines import docker as _docker
from ansible_collections.permfix.containers.plugins.module_utils._engines.detect import EngineReport
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import DEFAULT_DOCKER_HOST

NAMES = ("subid", "unprivileged_port", "bind_mount", "named_volume")
MISSING_SOCKET = "unix:///nonexistent/permfix/docker.sock"


@dataclasses.dataclass(frozen=True)
class FakeRequest:
    engines: tuple[str, ...] = ("docker", "podman")


def _finding(name: str, index: int) -> dict[str, Any]:
    return {"id": f"{name}:{index}", "class": name}


def fake(name: str, behaviour: Any = 2, docker_scoped: bool = False, calls: list | None = None) -> Detection:
    """A detection returning ``behaviour`` findings, or raising it when it is an exception."""

    def run(request: FakeRequest, runner: Any) -> dict[str, Any]:
        if calls is not None:
            calls.append((name, request))
        if isinstance(behaviour, BaseException):
            raise behaviour
        return {"findings": [_finding(name, index) for index in range(behaviour)], "other": "ignored"}

    return Detection(name, f"{name}_info", {}, lambda params: FakeRequest(), run, docker_scoped=docker_scoped)


def engines_answering(runner: Any, docker_host: str, timeout: float) -> EngineReport:
    return EngineReport(docker="20.10.24", podman="4.3.1", rootless_users=["app"])


def engines_docker_down(runner: Any, docker_host: str, timeout: float) -> EngineReport:
    note = f"the Docker daemon at {docker_host} does not answer: [Errno 111] Connection refused"
    return EngineReport(docker=None, podman="4.3.1", notes=[note], docker_notes=[note])


def request_for(selected: tuple[str, ...], docker_host: str = DEFAULT_DOCKER_HOST) -> AuditRequest:
    return AuditRequest(docker_host, 60, {name: FakeRequest() for name in selected})


def full_params(**values: Any) -> dict[str, Any]:
    """audit_info's parameters as AnsibleModule gives them with no option set, then ``values``."""
    params = {name: spec.get("default") for name, spec in argument_spec().items()}
    params.update(values)
    return params


# --------------------------------------------------------------------------------------------
# order and selection


@pytest.mark.parametrize("selected, expected_ids", [
    (NAMES, ["subid:0", "subid:1", "unprivileged_port:0", "unprivileged_port:1",
             "bind_mount:0", "bind_mount:1", "named_volume:0", "named_volume:1"]),
    # the selection's own order does not change the findings' order
    (("named_volume", "subid"), ["subid:0", "subid:1", "named_volume:0", "named_volume:1"]),
    (("bind_mount",), ["bind_mount:0", "bind_mount:1"]),
    ((), []),
])
def test_findings_are_concatenated_in_detection_order(selected, expected_ids):
    calls: list = []
    detections = [fake(name, calls=calls) for name in NAMES]
    result = audit(request_for(selected), runner=None, detections=detections, engines=engines_answering)
    assert [f["id"] for f in result["findings"]] == expected_ids
    assert [name for name, _request in calls] == [name for name in NAMES if name in selected]
    assert result["errors"] == []
    assert result["engines"] == {"docker": "20.10.24", "podman": "4.3.1", "rootless_users": ["app"]}
    for name in NAMES:
        ran = name in selected
        assert result["detections"][name] == {"ran": ran, "findings": 2 if ran else 0, "error": None}


# --------------------------------------------------------------------------------------------
# error capture


@pytest.mark.parametrize(
    "failing, exc, sentence",
    [
        (
            "subid",
            DetectionError("/etc/subuid cannot be read: permission denied"),
            "/etc/subuid cannot be read: permission denied",
        ),
        (
            "bind_mount",
            DetectionError("bind mounts could not be examined: boom"),
            "bind mounts could not be examined: boom",
        ),
        (
            "named_volume",
            KeyError("Mounts"),
            "named_volume_info stopped on an unexpected error (KeyError: 'Mounts'); "
            "run it alone on this host for details",
        ),
        (
            "unprivileged_port",
            RuntimeError("bad answer"),
            "unprivileged_port_info stopped on an unexpected error (RuntimeError: bad answer); "
            "run it alone on this host for details",
        ),
    ],
)
def test_a_failing_detection_is_recorded_and_the_others_go_on(failing, exc, sentence):
    detections = [fake(name, exc if name == failing else 1) for name in NAMES]
    result = audit(request_for(NAMES), runner=None, detections=detections, engines=engines_answering)
    assert result["detections"][failing] == {"ran": False, "findings": 0, "error": sentence}
    assert result["errors"] == [f"{failing}: {sentence}"]
    assert [f["class"] for f in result["findings"]] == [name for name in NAMES if name != failing]
    for name in NAMES:
        if name != failing:
            assert result["detections"][name] == {"ran": True, "findings": 1, "error": None}


def test_every_detection_failing_still_returns_the_engines():
    detections = [fake(name, DetectionError(f"{name} broke")) for name in NAMES]
    result = audit(request_for(NAMES), runner=None, detections=detections, engines=engines_answering)
    assert result["findings"] == []
    assert result["errors"] == [f"{name}: {name} broke" for name in NAMES]
    assert result["engines"]["podman"] == "4.3.1"


def test_engines_that_raise_are_an_error_and_the_detections_still_run():
    def broken(runner: Any, docker_host: str, timeout: float) -> EngineReport:
        raise PermissionError("/proc is not readable")

    detections = [fake(name, 1) for name in NAMES]
    result = audit(request_for(NAMES), runner=None, detections=detections, engines=broken)
    assert result["engines"] == {"docker": None, "podman": None, "rootless_users": []}
    assert result["errors"] == ["engines: unexpected error (PermissionError: /proc is not readable)"]
    assert len(result["findings"]) == 4


# --------------------------------------------------------------------------------------------
# Docker that does not answer


@pytest.fixture
def dead_socket(tmp_path):
    """A unix socket file nobody listens on: a daemon that is down."""
    path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    return f"unix://{path}"


def test_docker_down_is_an_error_of_the_docker_scoped_detections_which_still_examine_podman(dead_socket):
    calls: list = []
    detections = [fake(name, 1, docker_scoped=name in ("bind_mount", "named_volume"), calls=calls) for name in NAMES]
    result = audit(request_for(NAMES, dead_socket), runner=None, detections=detections, engines=engines_docker_down)
    reason = (
        f"Docker was not examined: the Docker daemon at {dead_socket} does not answer: [Errno 111] Connection refused"
    )
    assert result["detections"]["bind_mount"] == {"ran": True, "findings": 1, "error": reason}
    assert result["detections"]["named_volume"] == {"ran": True, "findings": 1, "error": reason}
    assert result["detections"]["subid"] == {"ran": True, "findings": 1, "error": None}
    assert result["errors"] == [f"bind_mount: {reason}", f"named_volume: {reason}"]
    assert dict(calls) == {"subid": FakeRequest(), "unprivileged_port": FakeRequest(),
                           "bind_mount": FakeRequest(("podman",)), "named_volume": FakeRequest(("podman",))}
    assert len(result["findings"]) == 4


@pytest.mark.parametrize(
    "default, report, expected",
    [
        # answers
        (False, EngineReport(docker="20.10.24"), None),
        # no socket at the default address: a host without Docker, not a failure
        (True, EngineReport(notes=["docker is installed but its daemon is not running"]), None),
        # a docker_host that was asked for and is not there
        (
            False,
            EngineReport(),
            f"no Docker daemon at {MISSING_SOCKET} (the socket /nonexistent/permfix/docker.sock does not exist)",
        ),
    ],
)
def test_docker_problem_without_a_socket(monkeypatch, default, report, expected):
    if default:
        monkeypatch.setattr(_docker, "DEFAULT_DOCKER_HOST", MISSING_SOCKET)  # the rule lives in _engines.docker
    assert docker_problem(MISSING_SOCKET, report) == expected


def test_docker_problem_of_a_socket_without_a_daemon_is_the_engines_note(dead_socket):
    assert docker_problem(dead_socket, EngineReport(docker_notes=["it said no"])) == "it said no"
    assert docker_problem(dead_socket, EngineReport()) == f"the Docker daemon at {dead_socket} does not answer"


# --------------------------------------------------------------------------------------------
# options


def test_mirrored_options_are_the_single_modules_own_specs():
    spec = argument_spec()
    assert spec["subid_users"] is SUBID_INFO.argument_spec["users"]
    assert spec["bind_mount_specs"] is BIND_MOUNT_INFO.argument_spec["specs"]
    assert spec["named_volume_owners"] is VOLUME_INFO.argument_spec["owners"]
    assert spec["detections"]["default"] == list(NAMES) == [d.name for d in DETECTIONS]
    assert spec["timeout"] == {"type": "int", "default": 60}


@pytest.mark.parametrize("detection, values, expected", [
    (SUBID_INFO, {"subid_users": ["app"], "subid_min_count": 70000},
     {"users": ["app"], "min_count": 70000, "discover": True, "subuid_path": "/etc/subuid", "required_id": None}),
    (SUBID_INFO, {}, {"users": [], "min_count": None}),
    (BIND_MOUNT_INFO, {"bind_mount_specs": [{"path": "/srv/x", "uid": 1}], "bind_mount_allowed_roots": ["/x"],
                       "docker_host": "unix:///d.sock", "timeout": 5},
     {"specs": [{"path": "/srv/x", "uid": 1}], "allowed_roots": ["/x"], "docker_host": "unix:///d.sock", "timeout": 5,
      "engines": ["docker", "podman"], "scan": True}),
    (BIND_MOUNT_INFO, {"bind_mount_scan": False}, {"scan": False, "specs": []}),
    # a detection's own daemon wins over the shared docker_host; the other detection keeps the shared one
    (BIND_MOUNT_INFO, {"docker_host": "unix:///d.sock", "bind_mount_docker_host": "unix:///b.sock"},
     {"docker_host": "unix:///b.sock"}),
    (VOLUME_INFO, {"docker_host": "unix:///d.sock", "bind_mount_docker_host": "unix:///b.sock"},
     {"docker_host": "unix:///d.sock"}),
    (BIND_MOUNT_INFO, {"bind_mount_engines": [], "bind_mount_containers": ["web"],
                       "bind_mount_podman_users": ["app"], "bind_mount_allow_home_subdirs": False},
     {"engines": [], "containers": ["web"], "podman_users": ["app"], "allow_home_subdirs": False}),
    (SUBID_INFO, {"subid_discover": False, "subid_counts": {"app": 200000}},
     {"discover": False, "counts": {"app": 200000}}),
    (VOLUME_INFO, {"named_volume_engines": ["docker"], "named_volume_volumes": ["v2"],
                   "named_volume_podman_users": ["x"]},
     {"engines": ["docker"], "volumes": ["v2"], "podman_users": ["x"]}),
    (VOLUME_INFO, {"named_volume_owners": {"db": "999:999"}, "named_volume_fixer_image": "img"},
     {"owners": {"db": "999:999"}, "fixer_image": "img", "scan": "full", "inspector": True, "docker_host": None}),
])
def test_detection_params_map_audit_options_onto_the_single_module(detection, values, expected):
    params = detection_params(detection, full_params(**values))
    assert set(params) == set(detection.argument_spec)
    assert {key: params[key] for key in expected} == expected


@pytest.mark.parametrize("values, message", [
    ({"subid_min_count": -1}, f"min_count must be between 0 and {ID_MAX}, not -1"),
    ({"subid_counts": {"app": 0}}, f"counts[app] must be a number of subordinate IDs from 1 to {ID_MAX}, not 0"),
    ({"subid_counts": {"app": "many"}},
     f"counts[app] must be a number of subordinate IDs from 1 to {ID_MAX}, not 'many'"),
    ({"unprivileged_ports": [70000]}, "ports must be port numbers from 1 to 65535; 70000 is not"),
    ({"bind_mount_allowed_roots": ["srv"]}, "allowed_roots[0] must be an absolute path (starting with /), not 'srv'"),
    ({"bind_mount_specs": [{"path": "/srv/x", "uid": "5", "gid": "x", "rootless_user": "app", "access": "rw"}]},
     "specs[0] (/srv/x): specs[0] (/srv/x) gid 'x' is a name: ids inside a rootless namespace must be numbers"),
    ({"named_volume_owners": {"db": "nobody"}}, None),
    ({"docker_host": "tcp://127.0.0.1:2375"},
     "docker_host must be a unix:// address such as unix:///var/run/docker.sock, not 'tcp://127.0.0.1:2375'"),
    ({"timeout": 0}, "timeout must be a positive number of seconds"),
])
def test_invalid_options_fail_with_the_single_modules_message(values, message):
    with pytest.raises(OptionError) as raised:
        audit_request(full_params(**values))
    if message is None:  # the volume module's own parse_owner message
        assert str(raised.value).startswith("owners[db]")
    else:
        assert str(raised.value) == message


@pytest.mark.parametrize("values", [
    {"detections": ["subid"], "unprivileged_ports": [70000]},
    {"detections": ["unprivileged_port"], "named_volume_owners": {"db": "nobody"}},
])
def test_options_of_detections_not_selected_are_not_validated(values):
    request = audit_request(full_params(**values))
    assert list(request.requests) == values["detections"]


def test_audit_request_validates_every_selected_detection_in_order():
    request = audit_request(full_params(subid_users=["root"], unprivileged_ports=[80]))
    assert list(request.requests) == list(NAMES)
    assert request.requests["subid"].users == ["root"]
    assert request.requests["unprivileged_port"]["ports"] == [80]
    assert request.requests["bind_mount"].docker_host == DEFAULT_DOCKER_HOST
    assert (request.docker_host, request.timeout) == (DEFAULT_DOCKER_HOST, 60)
