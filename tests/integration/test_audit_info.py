# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""audit_info on this machine: the same engines and findings as the single modules, in one call,
and a Docker daemon that does not answer costs only the Docker part of two detections."""

from __future__ import annotations

import os
import shutil
import socket
from typing import Any

import pytest

import permfix_testlib as lib

CONTAINER_UID = 4321
SINGLE = (("subid_info", "subid"), ("unprivileged_port_info", "unprivileged_port"),
          ("bind_mount_info", "bind_mount"), ("volume_owner_info", "named_volume"))


@pytest.fixture
def seeded(make_user, docker_client):
    """A rootless-podman user without subuid, and a Docker container (as 4321) with a root-owned
    bind mount it cannot write and a fresh named volume it cannot write."""
    user = make_user("pfaud")
    lib.run_as(user, ["mkdir", "-p", f"{user.home}/.local/share/containers"])
    name = lib.random_name("pfaudit")
    directory = f"/srv/{name}"
    os.makedirs(directory, mode=0o755)
    volume = docker_client.volumes.create(name)
    container = None
    try:
        container = docker_client.containers.create(
            lib.IMAGE_BUSYBOX,
            ["sleep", "600"],
            name=name,
            user=f"{CONTAINER_UID}:{CONTAINER_UID}",
            network_mode="none",
            volumes={directory: {"bind": "/data", "mode": "rw"}, name: {"bind": "/state", "mode": "rw"}},
        )
        yield {"user": user, "directory": directory, "volume": name, "container": name}
    finally:
        if container is not None:
            container.remove(force=True)
        volume.remove(force=True)
        shutil.rmtree(directory, ignore_errors=True)


def _mine(findings: list[dict[str, Any]], seeded: dict[str, Any]) -> list[dict[str, Any]]:
    """The findings about this test's own user, container, directory and volume, in their order
    (other tests on this machine may add users and containers of their own at any time)."""
    return [f for f in findings
            if f["user"] == seeded["user"].name or f["container"] == seeded["container"]
            or f["subject"] in (seeded["directory"], seeded["volume"])]


def _dead_socket(path: str) -> str:
    """A unix socket file that nobody listens on: a Docker daemon that is down."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    return f"unix://{path}"


def test_audit_info_returns_the_single_modules_engines_and_findings(seeded):
    user = seeded["user"]
    spec = {"path": seeded["directory"], "uid": CONTAINER_UID, "name": "declared"}
    inputs = {
        "subid_info": {"users": [user.name]},
        "unprivileged_port_info": {"ports": [80]},
        "bind_mount_info": {"specs": [spec]},
        "volume_owner_info": {},
    }
    audited = lib.run_module("audit_info", {"subid_users": [user.name], "unprivileged_ports": [80],
                                            "bind_mount_specs": [spec]}, check=True)
    engines = lib.run_module("engine_info", {})
    singles = {module: lib.run_module(module, args) for module, args in inputs.items()}

    assert not audited.get("failed"), audited.get("msg")
    assert audited["changed"] is False
    assert audited["errors"] == [] and all(entry["error"] is None for entry in audited["detections"].values())
    # the engines: the same versions, and both see this test's rootless user
    assert {k: audited["engines"][k] for k in ("docker", "podman")} == {
        k: engines["engines"][k] for k in ("docker", "podman")
    }
    assert user.name in audited["engines"]["rootless_users"] and user.name in engines["engines"]["rootless_users"]
    # the findings: identical (ids and content) and in the order subid, port, bind mount, volume
    expected = [finding for module, _name in SINGLE for finding in _mine(singles[module]["findings"], seeded)]
    assert _mine(audited["findings"], seeded) == expected
    classes = [finding["class"] for finding in expected]
    assert classes == sorted(classes, key=[name for _module, name in SINGLE].index)
    # every seeded problem is there: no subuid, the directory (container and spec), the volume
    assert {(f["class"], f["subject"]) for f in expected} >= {
        ("subid", user.name), ("bind_mount", seeded["directory"]), ("named_volume", seeded["volume"])}
    assert {f["container"] for f in expected if f["class"] == "bind_mount"} == {seeded["container"], "declared"}
    # the declared port is judged alike (a finding or none, depending on this host's value)
    port_ids = [f["id"] for f in audited["findings"] if f["class"] == "unprivileged_port" and f["user"] is None]
    assert port_ids == [f["id"] for f in singles["unprivileged_port_info"]["findings"] if f["user"] is None]
    # the counts per detection add up to what was returned
    for _module, name in SINGLE:
        entry = audited["detections"][name]
        assert entry["ran"] is True
        assert entry["findings"] == len([f for f in audited["findings"] if f["class"] == name])


def test_a_docker_host_without_a_daemon_is_an_error_of_the_docker_detections_only(seeded, tmp_path):
    user = seeded["user"]
    docker_host = _dead_socket(str(tmp_path / "docker.sock"))

    audited = lib.run_module("audit_info", {"subid_users": [user.name], "docker_host": docker_host}, check=True)
    subids = lib.run_module("subid_info", {"users": [user.name]})
    bind_mounts = lib.run_module("bind_mount_info", {"docker_host": docker_host})

    assert not audited.get("failed"), audited.get("msg")
    assert audited["engines"]["docker"] is None
    for name in ("bind_mount", "named_volume"):
        entry = audited["detections"][name]
        assert entry["error"].startswith(
            f"Docker was not examined: the Docker daemon at {docker_host} does not answer"
        ), entry
        assert entry["ran"] is True  # podman was still examined
    assert audited["detections"]["subid"] == {"ran": True, "findings": len(subids["findings"]), "error": None}
    assert audited["detections"]["unprivileged_port"]["error"] is None
    assert [error.split(":")[0] for error in audited["errors"]] == ["bind_mount", "named_volume"]
    # the subid findings are all there, this test's user among them
    mine = _mine([f for f in audited["findings"] if f["class"] == "subid"], seeded)
    assert mine and mine == _mine(subids["findings"], seeded)
    # the Docker container is not seen by either, and the single module did not fail either
    assert not bind_mounts.get("failed"), bind_mounts.get("msg")
    assert not [f for f in audited["findings"] if f["container"] == seeded["container"]]
    assert any(docker_host in note for note in bind_mounts["notes"])


@pytest.mark.parametrize("audit_args, module, module_args", [
    ({"bind_mount_allowed_roots": ["srv"]}, "bind_mount_info", {"allowed_roots": ["srv"]}),
    ({"subid_min_count": -5}, "subid_info", {"min_count": -5}),
    ({"named_volume_owners": {"db": "postgres"}}, "volume_owner_info", {"owners": {"db": "postgres"}}),
    ({"docker_host": "tcp://127.0.0.1:2375"}, "engine_info", {"docker_host": "tcp://127.0.0.1:2375"}),
])
def test_invalid_options_fail_with_the_single_modules_message(audit_args, module, module_args):
    audited = lib.run_module("audit_info", audit_args)
    single = lib.run_module(module, module_args)
    assert audited["failed"] is True and single["failed"] is True
    assert audited["msg"] == single["msg"]
