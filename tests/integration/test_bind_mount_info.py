# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""bind_mount_info against the real Docker daemon, rootful podman and rootless podman users."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import permfix_testlib as lib

SUBID_LOW, SUBID_HIGH, SUBID_BLOCK = 100000, 600100000, 65536


# --------------------------------------------------------------------------------------------
# Helpers (also imported by test_bind_mount_role.py)


def occupied_subids() -> list[tuple[int, int]]:
    ranges = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                ranges.append((int(parts[1]), int(parts[1]) + int(parts[2])))
    return ranges


def free_subid_block() -> int:
    """A random start of SUBID_BLOCK ids inside the login.defs bounds that no line uses."""
    taken = occupied_subids()
    for _attempt in range(1000):
        start = SUBID_LOW + secrets.randbelow((SUBID_HIGH - SUBID_LOW) // SUBID_BLOCK - 1) * SUBID_BLOCK
        end = start + SUBID_BLOCK
        if all(end <= low or start >= high for low, high in taken):
            return start
    raise AssertionError("no free subordinate id block found")


def rootless_user(make_user: Callable[..., lib.User]) -> tuple[lib.User, int]:
    """A user with its own subordinate ids and the busybox image in its podman storage."""
    user = make_user("pfbm")
    start = free_subid_block()
    last = start + SUBID_BLOCK - 1
    lib.sh("usermod", "--add-subuids", f"{start}-{last}", "--add-subgids", f"{start}-{last}", user.name)
    lib.podman_import_busybox(user)
    return user, start


def oracle_uid_map(user: lib.User) -> list[tuple[int, int, int]]:
    """The rootless namespace as podman itself sets it up."""
    text = lib.run_as(user, ["podman", "unshare", "cat", "/proc/self/uid_map"]).stdout
    return [tuple(int(field) for field in line.split()) for line in text.splitlines() if line.strip()]  # type: ignore[misc]


def to_host(uid_map: list[tuple[int, int, int]], container_id: int) -> int:
    for inside, outside, length in uid_map:
        if inside <= container_id < inside + length:
            return outside + container_id - inside
    raise AssertionError(f"{container_id} is not mapped by {uid_map}")


@pytest.fixture
def srv_dir() -> Iterator[Callable[..., str]]:
    """Factory for root-owned directories below /srv (removed afterwards)."""
    made: list[str] = []

    def factory(mode: int = 0o755) -> str:
        os.makedirs("/srv", exist_ok=True)
        path = tempfile.mkdtemp(prefix="pfbm-", dir="/srv")
        os.chmod(path, mode)
        made.append(path)
        return path

    yield factory
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def docker_container(docker_client: Any) -> Iterator[Callable[..., Any]]:
    """Factory for busybox containers (never pulled; removed afterwards)."""
    made: list[Any] = []

    def factory(*, start: bool = True, **kwargs: Any) -> Any:
        kwargs.setdefault("name", lib.random_name("pfbm"))
        kwargs.setdefault("network_mode", "none")
        kwargs.setdefault("command", ["sleep", "3600"])
        if start:
            container = docker_client.containers.run(lib.IMAGE_BUSYBOX, detach=True, **kwargs)
        else:
            container = docker_client.containers.create(lib.IMAGE_BUSYBOX, **kwargs)
        made.append(container)
        return container

    yield factory
    for container in made:
        try:
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - best-effort clean-up of a test container
            pass


def info(**args: Any) -> dict[str, Any]:
    result = lib.run_module("bind_mount_info", args)
    assert not result.get("failed"), result.get("msg") or result
    assert result["changed"] is False
    return result


def only(items: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [item for item in items if all(item.get(key) == value for key, value in match.items())]
    assert len(found) == 1, f"expected one item matching {match}, got {found}"
    return found[0]


# --------------------------------------------------------------------------------------------
# Docker


def test_docker_user_1000_cannot_write_a_root_owned_bind_mount(docker_container, srv_dir) -> None:
    path = srv_dir()
    container = docker_container(user="1000:1000", volumes={path: {"bind": "/data", "mode": "rw"}})
    denied = container.exec_run(["touch", "/data/probe"])
    assert denied.exit_code != 0 and b"Permission denied" in denied.output

    result = info(engines=["docker"], containers=[container.name])
    finding = only(result["findings"], container=container.name)
    assert finding["id"] == f"bind_mount:{container.name}:{path}"
    assert (finding["class"], finding["severity"], finding["subject"], finding["engine"]) == (
        "bind_mount",
        "error",
        path,
        "docker",
    )
    assert finding["observed"] == {
        "uid": 0, "gid": 0, "mode": "0755", "type": "directory", "access": "r-x", "via": "other",
        "entries": 1, "mismatched": 1,
    }
    assert finding["expected"] == {
        "uid": 1000, "gid": 1000, "access": "rw", "needs": "rwx",
        "container_uid": 1000, "container_gid": 1000, "container_path": "/data",
    }
    assert finding["fixable"] is True
    assert finding["fix"] == "chown 1000:1000 on 1 of 1 entries"
    assert "cannot write" in finding["message"]
    mount = only(result["mounts"], container=container.name)
    assert (mount["status"], mount["map_source"], mount["host_uid"]) == ("denied", "kernel", 1000)
    assert only(result["fix_plan"], path=path)["strategies"] == ["chown", "acl"]


def test_docker_stopped_container_resolves_a_name_from_its_own_passwd(docker_container, srv_dir) -> None:
    path = srv_dir()
    with open(os.path.join(path, "existing"), "w", encoding="utf-8") as handle:
        handle.write("x")
    container = docker_container(start=False, user="postgres", volumes={path: {"bind": "/var/lib/db", "mode": "ro"}})
    os.chmod(path, 0o700)
    result = info(engines=["docker"], containers=[container.name])
    finding = only(result["findings"], container=container.name)
    assert finding["expected"]["container_uid"] == 999 and finding["expected"]["container_gid"] == 999
    assert finding["expected"]["access"] == "ro" and finding["expected"]["needs"] == "r-x"
    assert finding["observed"]["mismatched"] == 2
    mount = only(result["mounts"], container=container.name)
    assert mount["map_source"] == "identity"
    # Once the directory is readable by others the ro mount is fine.
    os.chmod(path, 0o755)
    result = info(engines=["docker"], containers=[container.name])
    assert result["findings"] == []
    assert only(result["mounts"], container=container.name)["status"] == "ok"


def test_docker_root_container_and_a_writable_mount_have_no_finding(docker_container, srv_dir) -> None:
    path = srv_dir(0o700)
    root = docker_container(volumes={path: {"bind": "/data", "mode": "rw"}})
    assert root.exec_run(["touch", "/data/probe"]).exit_code == 0
    result = info(engines=["docker"], containers=[root.name])
    assert result["findings"] == []
    assert only(result["mounts"], container=root.name)["check"]["via"] == "capability"


def test_docker_unknown_container_user_is_a_note(docker_container, srv_dir) -> None:
    path = srv_dir()
    container = docker_container(start=False, user="ghost", volumes={path: {"bind": "/data", "mode": "rw"}})
    result = info(engines=["docker"], containers=[container.name])
    assert result["findings"] == []
    assert only(result["mounts"], container=container.name)["status"] == "unresolved"
    assert any("user 'ghost'" in note and "/etc/passwd" in note for note in result["notes"])


def test_docker_socket_and_single_file_mounts_are_reported_but_never_planned(docker_container, srv_dir) -> None:
    path = srv_dir()
    server, sock_path, single = lib.socket_and_file(path, "agent.sock", "settings.conf")
    try:
        mounts = {sock_path: {"bind": "/run/agent.sock", "mode": "rw"}, single: {"bind": "/etc/app.conf", "mode": "ro"}}
        container = docker_container(start=False, user="1000:1000", volumes=mounts)
        result = info(engines=["docker"], containers=[container.name])
    finally:
        server.close()
    assert result["fix_plan"] == []
    reasons = {item["path"]: item["reason"] for item in result["skipped_mounts"]}
    assert "socket, not a directory" in reasons[sock_path]
    assert "regular file, not a directory" in reasons[single]
    assert {finding["fixable"] for finding in result["findings"]} == {False}


# --------------------------------------------------------------------------------------------
# Rootless podman


def test_rootless_podman_uid_999_maps_to_subuid_start_plus_998(make_user) -> None:
    user, start = rootless_user(make_user)
    data = os.path.join(user.home, "data")
    lib.run_as(user, ["mkdir", data])
    running, stopped = lib.random_name("pfbm"), lib.random_name("pfbm")
    lib.run_as(user, ["podman", "run", "-d", "--name", running, "--network", "none", "--user", "999",
                      "-v", f"{data}:/data", lib.IMAGE_BUSYBOX, "sleep", "3600"])
    lib.run_as(user, ["podman", "create", "--name", stopped, "--network", "none", "--user", "999",
                      "-v", f"{data}:/data", lib.IMAGE_BUSYBOX, "sleep", "3600"])
    denied = lib.run_as(user, ["podman", "exec", running, "touch", "/data/probe"], check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr + denied.stdout

    oracle = oracle_uid_map(user)
    expected_host = to_host(oracle, 999)
    assert expected_host == start + 998

    result = info(engines=["podman"], podman_users=[user.name])
    for name, source in ((running, "kernel"), (stopped, "computed")):
        finding = only(result["findings"], container=name)
        assert finding["user"] == user.name and finding["engine"] == "podman"
        assert finding["id"] == f"bind_mount:{name}:{user.name}:{data}"
        assert finding["expected"]["uid"] == expected_host and finding["expected"]["gid"] == start + 998
        assert finding["expected"]["container_uid"] == 999
        assert finding["observed"]["uid"] == user.uid
        assert finding["fixable"] is True
        mount = only(result["mounts"], container=name)
        assert mount["map_source"] == source
        assert mount["uid_map"] == [f"{inside}:{outside}:{length}" for inside, outside, length in oracle]
    # Both containers need the same host owner: one plan entry for the directory.
    plan = only(result["fix_plan"], path=data)
    assert sorted(plan["containers"]) == sorted([running, stopped])
    assert plan["uid"] == start + 998


def test_rootless_podman_keep_id_and_explicit_uidmap(make_user) -> None:
    user, start = rootless_user(make_user)
    data = os.path.join(user.home, "data")
    lib.run_as(user, ["mkdir", data])
    keep, mapped = lib.random_name("pfbm"), lib.random_name("pfbm")
    lib.run_as(user, ["podman", "create", "--name", keep, "--network", "none", "--userns", "keep-id",
                      "-v", f"{data}:/data", lib.IMAGE_BUSYBOX, "sleep", "3600"])
    lib.run_as(
        user,
        [
            "podman",
            "create",
            "--name",
            mapped,
            "--network",
            "none",
            "--uidmap",
            "0:1:500",
            "--gidmap",
            "0:1:500",
            "-v",
            f"{data}:/data",
            lib.IMAGE_BUSYBOX,
            "sleep",
            "3600",
        ],
    )
    result = info(engines=["podman"], podman_users=[user.name])
    keep_mount = only(result["mounts"], container=keep)
    assert (keep_mount["status"], keep_mount["host_uid"], keep_mount["container_uid"]) == ("ok", user.uid, user.uid)
    mapped_finding = only(result["findings"], container=mapped)
    # Container root is the namespace's uid 1, the first subordinate id; it has CAP_DAC_OVERRIDE
    # but the directory's owner (the user) is not mapped into its namespace.
    assert mapped_finding["expected"]["uid"] == start
    assert mapped_finding["expected"]["container_uid"] == 0


# --------------------------------------------------------------------------------------------
# Declared specs and bad input


def test_spec_for_a_container_that_does_not_exist_yet(srv_dir) -> None:
    path = srv_dir()
    result = info(engines=[], specs=[{"path": path, "uid": 1000, "gid": 1000, "name": "future"}])
    finding = only(result["findings"], container="future")
    assert finding["severity"] == "warning" and finding["engine"] is None
    assert result["containers_examined"] == 0


def test_spec_with_a_missing_path_is_a_note() -> None:
    missing = f"/srv/{lib.random_name('pfbm-missing-')}"
    result = info(engines=[], specs=[{"path": missing, "uid": 1000}])
    assert result["findings"] == []
    assert any(f"{missing} does not exist" in note for note in result["notes"])


def test_spec_with_an_unknown_user_name_fails_with_a_clear_message(srv_dir) -> None:
    path = srv_dir()
    result = lib.run_module("bind_mount_info", {"engines": [], "specs": [{"path": path, "uid": "no-such-user-pf"}]})
    assert result.get("failed") is True
    assert "user 'no-such-user-pf' does not exist on this host" in result["msg"]
    assert "specs[0]" in result["msg"]
    assert "Traceback" not in str(result)


def test_spec_with_a_name_inside_a_rootless_namespace_fails_with_a_clear_message(srv_dir, make_user) -> None:
    user = make_user("pfbm")
    result = lib.run_module(
        "bind_mount_info",
        {"engines": [], "specs": [{"path": srv_dir(), "uid": "postgres", "rootless_user": user.name}]},
    )
    assert result.get("failed") is True
    assert "ids inside a rootless namespace must be numbers" in result["msg"]


def test_a_docker_daemon_that_does_not_answer_is_a_note() -> None:
    with tempfile.TemporaryDirectory(prefix="pfbm-") as tmp:
        path = os.path.join(tmp, "docker.sock")
        silent = socket.socket(socket.AF_UNIX)
        silent.bind(path)  # bound, never listening: connections are refused
        try:
            result = info(engines=["docker"], docker_host=f"unix://{path}", timeout=3)
        finally:
            silent.close()
    assert result["findings"] == [] and result["containers_examined"] == 0
    assert any(f"unix://{path}" in note and "not examined" in note for note in result["notes"]), result["notes"]
    # No socket at all: a note too, still no failure.
    absent = info(engines=["docker"], docker_host=f"unix://{path}", timeout=3)
    assert any("the socket does not exist" in note for note in absent["notes"]), absent["notes"]


def test_podman_failing_for_a_user_is_a_note(make_user) -> None:
    user = make_user("pfbm")
    storage = os.path.join(user.home, ".local", "share", "containers")
    os.makedirs(storage, mode=0o700)  # owned by root: the user's podman cannot create its storage
    result = info(engines=["podman"], podman_users=[user.name, "no-such-user-pf"])
    assert any(f"podman containers of user {user.name} were not examined" in note for note in result["notes"]), result[
        "notes"
    ]
    assert any("podman user 'no-such-user-pf' does not exist" in note for note in result["notes"])


# --------------------------------------------------------------------------------------------
# Rootful podman


def test_rootful_podman_identity_and_explicit_uidmap(srv_dir) -> None:
    path = srv_dir()
    lib.podman_import_busybox()
    plain, mapped = lib.random_name("pfbm"), lib.random_name("pfbm")
    try:
        lib.sh("podman", "create", "--name", plain, "--network", "none", "--user", "1000:1000",
               "-v", f"{path}:/data", lib.IMAGE_BUSYBOX, "sleep", "3600")
        lib.sh("podman", "create", "--name", mapped, "--network", "none", "--user", "postgres",
               "--uidmap", "0:200000:65536", "--gidmap", "0:300000:65536",
               "-v", f"{path}:/data:ro", lib.IMAGE_BUSYBOX, "sleep", "3600")
        os.chmod(path, 0o700)
        result = info(engines=["podman"], podman_users=["root"], containers=[plain, mapped])
    finally:
        lib.sh("podman", "rm", "-f", plain, mapped, check=False)
    first = only(result["findings"], container=plain)
    assert (first["engine"], first["user"], first["expected"]["uid"]) == ("podman", None, 1000)
    second = only(result["findings"], container=mapped)
    assert (second["expected"]["uid"], second["expected"]["gid"]) == (200999, 300999)
    assert second["expected"]["access"] == "ro"
    assert only(result["mounts"], container=mapped)["map_source"] == "engine"
