# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""volume_owner_info and volume_owner against the real Docker daemon and rootless podman."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Callable

import pytest
from test_bind_mount_info import rootless_user

import permfix_testlib as lib

LABEL_VOLUME = "permfix.containers.volume"
POPULATE = (
    "mkdir -p /v/a/b && echo x > /v/a/b/f && touch /v/g && ln -s /etc/passwd /v/lnk "
    "&& chown -R 1000:1000 /v && chown -h 1000:1000 /v/lnk"
)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def docker_volume(docker_client: Any) -> Iterator[Callable[[], str]]:
    """Factory: a Docker volume with entries (a nested directory, a symlink to /etc/passwd)
    owned by 1000:1000. Volumes and the containers using them are removed afterwards."""
    made: list[str] = []

    def factory() -> str:
        name = lib.random_name("pfvol")
        docker_client.volumes.create(name)
        made.append(name)
        docker_client.containers.run(
            lib.IMAGE_BUSYBOX, ["sh", "-c", POPULATE], volumes={name: {"bind": "/v", "mode": "rw"}},
            network_mode="none", remove=True,
        )
        return name

    yield factory
    for name in made:
        for container in docker_client.containers.list(all=True, filters={"volume": name}):
            container.remove(force=True)
        try:
            docker_client.volumes.get(name).remove(force=True)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass


@pytest.fixture
def fixer_image(docker_client: Any) -> Iterator[str]:
    """A random fixer image name (built by the module from busybox); removed afterwards."""
    name = f"localhost/{lib.random_name('pffix')}:1"
    yield name
    try:
        docker_client.images.remove(name, force=True)
    except Exception:  # noqa: BLE001 - the test may not have built it
        pass


def run(args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    result = lib.run_module("volume_owner", args, check=check, diff=diff)
    assert not result.get("failed"), result.get("msg") or result
    return result


def fixer_events(docker_client: Any, volume: str, since_ns: int) -> list[dict[str, Any]]:
    """Container events of fixer/inspector containers for ``volume`` since ``since_ns``."""
    events = docker_client.events(
        since=int(since_ns // 1_000_000_000) - 1,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "label": f"{LABEL_VOLUME}={volume}"},
    )
    return [event for event in events if int(event.get("timeNano", 0)) >= since_ns]


def pull_events(docker_client: Any, since_ns: int) -> list[dict[str, Any]]:
    events = docker_client.events(
        since=int(since_ns // 1_000_000_000) - 1, until=int(time.time()) + 1, decode=True,
        filters={"type": "image", "event": "pull"},
    )
    return [event for event in events if int(event.get("timeNano", 0)) >= since_ns]


def podman_fixer_events(user: lib.User | None, volume: str, since_ns: int) -> list[dict[str, Any]]:
    """podman's container events of fixer/inspector containers for ``volume`` since ``since_ns``."""
    argv = ["podman", "events", "--stream=false", "--since", str(since_ns // 1_000_000_000 - 1),
            "--until", str(int(time.time()) + 1), "--filter", f"label={LABEL_VOLUME}={volume}", "--format", "json"]
    output = lib.run_as(user, argv).stdout if user is not None else lib.sh(*argv).stdout
    events = []
    for line in output.splitlines():
        if line.strip():
            event = json.loads(line)
            if event_ns(event["Time"]) >= since_ns:
                events.append(event)
    return events


def podman_fixer_statuses(user: lib.User | None, volume: str, since_ns: int,
                          wanted: frozenset = frozenset({"create", "start", "remove"})) -> set[str]:
    """The statuses of the fixer's podman events since ``since_ns``, once they include ``wanted``.

    podman writes some events from other processes than the one that ran the container (the
    ``remove`` of a ``--rm`` container comes from conmon's cleanup), so they can appear in the
    events file a moment after the run returned: look again for up to a minute (no speed is
    asserted; the loop ends as soon as they are there).
    """
    statuses: set[str] = set()
    for _attempt in range(120):
        statuses = {event["Status"] for event in podman_fixer_events(user, volume, since_ns)}
        if statuses >= wanted:
            break
        time.sleep(0.5)
    return statuses


def event_ns(text: str) -> int:
    """Nanoseconds since the epoch of podman's RFC 3339 event time (nanosecond precision)."""
    stamp, _dot, rest = text.partition(".")
    digits = "".join(ch for ch in rest if ch.isdigit())
    zone = rest[len(digits):] if rest else text[19:]
    base = datetime.fromisoformat(stamp + (zone.replace("Z", "+00:00") or "+00:00"))
    return int(base.timestamp()) * 1_000_000_000 + int((digits + "000000000")[:9])


def leftovers(docker_client: Any, volume: str) -> list[Any]:
    return docker_client.containers.list(all=True, filters={"label": f"{LABEL_VOLUME}={volume}"})


def can_write(docker_client: Any, volume: str) -> tuple[int, bytes]:
    container = docker_client.containers.run(
        lib.IMAGE_BUSYBOX, ["sh", "-c", "touch /data/a/b/probe && echo written >> /data/a/b/f"],
        user="999:999", volumes={volume: {"bind": "/data", "mode": "rw"}}, network_mode="none", detach=True,
    )
    try:
        status = container.wait()
        return status["StatusCode"], container.logs()
    finally:
        container.remove(force=True)


# --------------------------------------------------------------------------------------------
# Docker


def test_docker_volume_rhythm_only_mismatched_entries_no_pull(docker_client, docker_volume, fixer_image) -> None:
    started = time.time_ns()
    volume = docker_volume()
    user = docker_client.containers.create(
        lib.IMAGE_BUSYBOX, ["sleep", "3600"], name=lib.random_name("pfvc"), user="999:999",
        volumes={volume: {"bind": "/data", "mode": "rw"}}, network_mode="none",
    )
    code, output = can_write(docker_client, volume)
    assert code != 0 and b"Permission denied" in output
    mountpoint = docker_client.api.inspect_volume(volume)["Mountpoint"]
    passwd_before = os.stat("/etc/passwd")

    info = lib.run_module("volume_owner_info", {"engines": ["docker"], "volumes": [volume]})
    assert not info.get("failed"), info.get("msg")
    finding = next(f for f in info["findings"] if f["subject"] == volume)
    assert finding["class"] == "named_volume" and finding["severity"] == "error" and finding["fixable"]
    assert user.name in finding["container"]
    assert finding["observed"]["uid"] == 1000 and finding["observed"]["mismatched"] == 6
    assert finding["expected"]["uid"] == 999 and finding["expected"]["containers"] == [user.name]
    assert info["fix_plan"][0]["owner"] == "999:999"

    args = {"volume": volume, "fixer_image": fixer_image, "pull": False}
    mark = time.time_ns()
    predicted = run(args, check=True, diff=True)
    assert predicted["changed"] is True and predicted["fixer"] is None
    assert predicted["before"]["mismatched"] == 6
    assert (
        predicted["diff"]["before"]["root_owner"] == "1000:1000"
        and predicted["diff"]["after"]["root_owner"] == "999:999"
    )
    assert fixer_events(docker_client, volume, mark) == []
    assert os.stat(mountpoint).st_uid == 1000

    mark = time.time_ns()
    applied = run(args)
    assert applied["changed"] is True
    assert applied["fixer"]["rc"] == 0 and applied["fixer"]["image_source"] == "imported"
    assert {event["Action"] for event in fixer_events(docker_client, volume, mark)} >= {"create", "start", "destroy"}
    assert applied["after"]["mismatched"] == 0 and applied["after"]["uid"] == 999
    for rel in ("", "a", "a/b", "a/b/f", "g"):
        st = os.stat(os.path.join(mountpoint, rel))
        assert (st.st_uid, st.st_gid) == (999, 999), rel
    link = os.lstat(os.path.join(mountpoint, "lnk"))
    assert (link.st_uid, link.st_gid) == (999, 999)
    passwd_after = os.stat("/etc/passwd")
    assert (passwd_after.st_uid, passwd_after.st_gid, passwd_after.st_ctime_ns) == (
        passwd_before.st_uid, passwd_before.st_gid, passwd_before.st_ctime_ns)
    assert leftovers(docker_client, volume) == []

    mark = time.time_ns()
    again_check = run(args, check=True)
    assert again_check["changed"] is False
    again = run(args)
    assert again["changed"] is False and again["fixer"] is None
    assert fixer_events(docker_client, volume, mark) == [], "a second run must not start any container"

    code, output = can_write(docker_client, volume)
    assert code == 0, output
    assert pull_events(docker_client, started) == []


def test_only_mismatched_entries_are_changed(docker_client, docker_volume, fixer_image) -> None:
    volume = docker_volume()
    mountpoint = docker_client.api.inspect_volume(volume)["Mountpoint"]
    right = os.path.join(mountpoint, "right")
    with open(right, "w", encoding="utf-8") as handle:
        handle.write("already right\n")
    os.chown(right, 999, 999)
    before = os.stat(right).st_ctime_ns
    result = run({"volume": volume, "owner": "999:999", "fixer_image": fixer_image, "pull": False})
    assert result["changed"] is True and result["before"]["mismatched"] == 6
    assert os.stat(right).st_ctime_ns == before, "an entry that was already right was touched"


def test_fixer_is_locked_down_and_symlinks_are_not_followed(docker_client, docker_volume, fixer_image) -> None:
    volume = docker_volume()
    mountpoint = docker_client.api.inspect_volume(volume)["Mountpoint"]
    target_dir = tempfile.mkdtemp(prefix="pfvol-outside-")
    try:
        outside = os.path.join(target_dir, "victim")
        with open(outside, "w", encoding="utf-8") as handle:
            handle.write("host file\n")
        os.chown(outside, 4321, 4321)
        os.symlink(outside, os.path.join(mountpoint, "to_host_file"))
        os.symlink(target_dir, os.path.join(mountpoint, "to_host_dir"))
        passwd = os.stat("/etc/passwd")

        result = run({"volume": volume, "owner": "999:999", "fixer_image": fixer_image, "pull": False})
        assert result["changed"] is True

        security = result["fixer"]["security"]
        assert security["network_mode"] == "none"
        assert security["cap_drop"] == ["ALL"]
        assert sorted(security["cap_add"]) == ["CHOWN", "DAC_READ_SEARCH"]
        assert security["readonly_rootfs"] is True
        assert security["privileged"] is False
        assert "no-new-privileges" in security["security_opt"]
        assert security["mounts"] == [{"type": "volume", "name": volume, "destination": "/v", "rw": True}]

        assert (os.stat(outside).st_uid, os.stat(outside).st_gid) == (4321, 4321)
        assert os.stat(target_dir).st_uid == 0
        assert (os.stat("/etc/passwd").st_uid, os.stat("/etc/passwd").st_ctime_ns) == (
            passwd.st_uid,
            passwd.st_ctime_ns,
        )
        for name in ("lnk", "to_host_file", "to_host_dir"):
            st = os.lstat(os.path.join(mountpoint, name))
            assert (st.st_uid, st.st_gid) == (999, 999), name
        assert leftovers(docker_client, volume) == []
    finally:
        import shutil

        shutil.rmtree(target_dir, ignore_errors=True)


def test_failing_fixer_is_removed_and_reported(docker_client, docker_volume) -> None:
    volume = docker_volume()
    image = f"localhost/{lib.random_name('pfnosh')}:1"
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        info = tarfile.TarInfo("etc")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        archive.addfile(info)
    docker_client.api.import_image_from_data(data.getvalue(), repository=image.rsplit(":", 1)[0], tag="1")
    try:
        result = lib.run_module(
            "volume_owner", {"volume": volume, "owner": "999:999", "fixer_image": image, "pull": False}
        )
        assert result.get("failed") is True
        assert "fixer container" in result["msg"] and "Traceback" not in result["msg"]
        assert leftovers(docker_client, volume) == []
    finally:
        docker_client.images.remove(image, force=True)


def test_stop_containers_stops_and_restarts(docker_client, docker_volume, fixer_image) -> None:
    volume = docker_volume()
    container = docker_client.containers.run(
        lib.IMAGE_BUSYBOX, ["sleep", "3600"], name=lib.random_name("pfvc"), user="999:999",
        volumes={volume: {"bind": "/data", "mode": "rw"}}, network_mode="none", detach=True,
    )
    args = {"volume": volume, "fixer_image": fixer_image, "pull": False, "stop_containers": True}
    predicted = run(args, check=True)
    assert predicted["changed"] is True and predicted["stopped_containers"] == [container.name]
    container.reload()
    assert container.status == "running"
    first_start = container.attrs["State"]["StartedAt"]
    applied = run(args)
    assert applied["changed"] is True and applied["stopped_containers"] == [container.name]
    container.reload()
    assert container.status == "running" and container.attrs["State"]["StartedAt"] != first_start
    again = run(args)
    assert again["changed"] is False and again["stopped_containers"] == []


def test_inspector_container_counts_a_mount_backed_volume(docker_client, fixer_image) -> None:
    name = lib.random_name("pfvtmp")
    docker_client.volumes.create(name, driver="local", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    try:
        # Build the image through the fix module's import path on another (host) volume first.
        lib.run_module("volume_owner", {"volume": name, "owner": "0:0", "fixer_image": fixer_image, "pull": False})
        info = lib.run_module(
            "volume_owner_info",
            {"engines": ["docker"], "volumes": [name], "owners": {name: "999:999"}, "fixer_image": fixer_image},
        )
        assert not info.get("failed"), info.get("msg")
        record = info["volumes"][0]
        assert record["access_method"] == "container"
        assert record["observed"]["method"] == "container"
        assert (record["observed"]["uid"], record["observed"]["entries"], record["observed"]["mismatched"]) == (0, 1, 1)
        assert leftovers(docker_client, name) == []
    finally:
        docker_client.volumes.get(name).remove(force=True)


# --------------------------------------------------------------------------------------------
# Bad input


def test_unknown_volume(fixer_image) -> None:
    name = lib.random_name("pfnone")
    result = lib.run_module("volume_owner", {"volume": name, "owner": "999:999", "fixer_image": fixer_image})
    assert result.get("failed") is True
    assert f"volume '{name}' does not exist in Docker" in result["msg"]
    assert "docker volume ls" in result["msg"]


def test_docker_daemon_not_answering() -> None:
    directory = tempfile.mkdtemp(prefix="pfvol-sock-")
    path = os.path.join(directory, "docker.sock")
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        bound.bind(path)  # bound, never listening: connections are refused
        result = lib.run_module("volume_owner", {"volume": "x", "owner": "1:1", "docker_host": f"unix://{path}"})
        assert result.get("failed") is True
        assert f"unix://{path}" in result["msg"] and "Traceback" not in result["msg"]
        assert "is dockerd running" in result["msg"]
        missing = os.path.join(directory, "missing.sock")
        result = lib.run_module("volume_owner", {"volume": "x", "owner": "1:1", "docker_host": f"unix://{missing}"})
        assert result.get("failed") is True
        assert "does not exist" in result["msg"] and missing in result["msg"]
        info = lib.run_module("volume_owner_info", {"engines": ["docker"], "docker_host": f"unix://{path}"})
        assert not info.get("failed") and info["findings"] == []
        assert any(f"unix://{path}" in note for note in info["notes"])
    finally:
        bound.close()
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


def test_no_image_and_no_busybox(docker_client, docker_volume, fixer_image) -> None:
    volume = docker_volume()
    result = lib.run_module(
        "volume_owner",
        {
            "volume": volume,
            "owner": "999:999",
            "fixer_image": fixer_image,
            "pull": False,
            "busybox_path": "/nonexistent/busybox",
        },
    )
    assert result.get("failed") is True
    msg = result["msg"]
    assert fixer_image in msg and "/nonexistent/busybox" in msg and "busybox_path" in msg and "fixer_image" in msg
    assert leftovers(docker_client, volume) == []
    mountpoint = docker_client.api.inspect_volume(volume)["Mountpoint"]
    assert os.stat(mountpoint).st_uid == 1000


def test_no_owner_and_no_container() -> None:
    # A volume nobody uses and no owner: the module says which option to set.
    import docker

    client = docker.from_env()
    name = lib.random_name("pfvol")
    client.volumes.create(name)
    try:
        result = lib.run_module("volume_owner", {"volume": name})
        assert result.get("failed") is True and "set owner" in result["msg"]
    finally:
        client.volumes.get(name).remove(force=True)
        client.close()


# --------------------------------------------------------------------------------------------
# Rootless podman


def test_rootless_podman_volume_rhythm(make_user) -> None:
    user, start = rootless_user(make_user)
    volume = lib.random_name("pfvol")
    image = f"localhost/{lib.random_name('pffix')}:1"
    lib.run_as(user, ["podman", "volume", "create", volume])
    lib.run_as(
        user,
        ["podman", "run", "--rm", "--network", "none", "-v", f"{volume}:/v", lib.IMAGE_BUSYBOX, "sh", "-c", POPULATE],
    )
    container = lib.random_name("pfvc")
    lib.run_as(user, ["podman", "create", "--name", container, "--network", "none", "--user", "999:999",
                      "-v", f"{volume}:/data", lib.IMAGE_BUSYBOX, "sleep", "3600"])
    probe = ["podman", "run", "--rm", "--network", "none", "--user", "999:999", "-v", f"{volume}:/data",
             lib.IMAGE_BUSYBOX, "sh", "-c", "touch /data/a/b/probe"]
    denied = lib.run_as(user, probe, check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    mountpoint = os.path.join(user.home, ".local/share/containers/storage/volumes", volume, "_data")
    assert os.stat(mountpoint).st_uid == start + 999  # container 1000 is subuid_start + 999

    info = lib.run_module("volume_owner_info", {"engines": ["podman"], "podman_users": [user.name]})
    assert not info.get("failed"), info.get("msg")
    finding = next(f for f in info["findings"] if f["subject"] == volume)
    assert finding["user"] == user.name and finding["container"] == container
    assert finding["expected"]["uid"] == 999 and finding["expected"]["host_uid"] == start + 998

    args = {"volume": volume, "engine": "podman", "podman_user": user.name, "fixer_image": image, "pull": False}
    mark = time.time_ns()
    predicted = run(args, check=True)
    assert predicted["changed"] is True and predicted["fixer"] is None
    assert os.stat(mountpoint).st_uid == start + 999
    assert podman_fixer_events(user, volume, mark) == []
    mark = time.time_ns()
    applied = run(args)
    assert applied["changed"] is True and applied["fixer"]["rc"] == 0
    assert podman_fixer_statuses(user, volume, mark) >= {"create", "start", "remove"}
    assert applied["fixer"]["security"]["network_mode"] == "none"
    assert applied["fixer"]["security"]["readonly_rootfs"] is True
    assert len(applied["fixer"]["security"]["mounts"]) == 1
    for rel in ("", "a", "a/b", "a/b/f", "g"):
        st = os.stat(os.path.join(mountpoint, rel))
        assert (st.st_uid, st.st_gid) == (start + 998, start + 998), rel
    assert os.lstat(os.path.join(mountpoint, "lnk")).st_uid == start + 998
    assert os.stat("/etc/passwd").st_uid == 0
    listed = lib.run_as(user, ["podman", "ps", "-a", "--filter", f"label={LABEL_VOLUME}={volume}", "-q"]).stdout
    assert listed.strip() == ""

    mark = time.time_ns()
    assert run(args, check=True)["changed"] is False
    again = run(args)
    assert again["changed"] is False and again["fixer"] is None
    assert podman_fixer_events(user, volume, mark) == [], "a second run must not start any container"
    allowed = lib.run_as(user, probe, check=False)
    assert allowed.returncode == 0, allowed.stderr


# --------------------------------------------------------------------------------------------
# Rootful podman


def test_rootful_podman_volume_rhythm() -> None:
    if lib.sh("podman", "image", "exists", lib.IMAGE_BUSYBOX, check=False).returncode != 0:
        lib.podman_import_busybox()  # the shared test image (not removed: other tests use it)
    volume = lib.random_name("pfvol")
    image = f"localhost/{lib.random_name('pffix')}:1"
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    container = lib.random_name("pfvc")
    lib.sh("podman", "volume", "create", volume)
    try:
        populate = ["podman", "run", "--rm", "--network", "none", *limits, "-v", f"{volume}:/v", lib.IMAGE_BUSYBOX]
        lib.sh(*populate, "sh", "-c", POPULATE)
        lib.sh("podman", "create", "--name", container, "--network", "none", "--user", "999:999", *limits,
               "-v", f"{volume}:/data", lib.IMAGE_BUSYBOX, "sleep", "3600")
        mountpoint = json.loads(lib.sh("podman", "volume", "inspect", volume).stdout)[0]["Mountpoint"]
        args = {"volume": volume, "engine": "podman", "fixer_image": image, "pull": False}
        predicted = run(args, check=True)
        assert predicted["changed"] is True and predicted["owner"]["containers"] == [container]
        mark = time.time_ns()
        applied = run(args)
        assert applied["changed"] is True and applied["fixer"]["rc"] == 0
        assert len(applied["fixer"]["security"]["mounts"]) == 1
        assert podman_fixer_statuses(None, volume, mark) >= {"create", "start", "remove"}
        for rel in ("", "a", "a/b", "a/b/f", "g"):
            st = os.stat(os.path.join(mountpoint, rel))
            assert (st.st_uid, st.st_gid) == (999, 999), rel
        mark = time.time_ns()
        assert run(args, check=True)["changed"] is False
        again = run(args)
        assert again["changed"] is False and again["fixer"] is None
        assert podman_fixer_events(None, volume, mark) == []
        assert lib.sh("podman", "ps", "-a", "--filter", f"label={LABEL_VOLUME}={volume}", "-q").stdout.strip() == ""
    finally:
        lib.sh("podman", "rm", "--force", container, check=False)
        lib.sh("podman", "volume", "rm", "--force", volume, check=False)
        lib.sh("podman", "rmi", "--force", image, check=False)
