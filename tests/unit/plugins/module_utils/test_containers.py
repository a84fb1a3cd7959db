# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine-neutral container model: Docker and podman inspect data, podman through a fake Runner."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._engines import podman as _podman
from ansible_collections.permfix.containers.plugins.module_utils._engines.containers import (
    container_from_docker,
    container_from_podman,
    podman_containers,
    podman_read_file,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import PodmanError, rootless_namespace
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import (
    IDENTITY,
    in_host_namespaces,
    parse_colon_map,
    read_proc_maps,
    rootless_map,
)

# Trimmed from real inspect output on Docker 20.10 and podman 4.3.1.
DOCKER_INSPECT = {
    "Id": "559b590ff0d7cb07283b56a18c3821731ca35c36cd32825c7942c9251ef31bdb",
    "Name": "/web",
    "Image": "sha256:a35e3f835f4b",
    "State": {"Status": "running", "Running": True, "Pid": 23273},
    "Config": {"User": "1000:1000", "Image": "permfix-test/busybox:latest"},
    "HostConfig": {"UsernsMode": "", "GroupAdd": None, "CapAdd": None, "CapDrop": None, "Privileged": False},
    "Mounts": [
        {
            "Type": "bind",
            "Source": "/srv/web",
            "Destination": "/data",
            "Mode": "",
            "RW": True,
            "Propagation": "rprivate",
        },
        {"Type": "volume", "Name": "v1", "Source": "/var/lib/docker/volumes/v1/_data", "Destination": "/v", "RW": True},
        {"Type": "bind", "Source": "/etc/localtime", "Destination": "/etc/localtime", "Mode": "ro", "RW": False},
    ],
}

PODMAN_INSPECT = {
    "Id": "7096893070ef89fb6d9bf644aee0cba519710a2122fa55d940dedbe014282c1d",
    "Name": "r1",
    "Image": "1db5d0e1b121",
    "ImageName": "localhost/permfix-test/busybox:latest",
    "State": {"Status": "exited", "Running": False, "Pid": 0},
    "Config": {"User": "999"},
    "HostConfig": {"UsernsMode": "", "GroupAdd": [], "CapAdd": [], "CapDrop": ["CAP_AUDIT_WRITE"], "IDMappings": None},
    "Mounts": [
        {
            "Type": "bind",
            "Source": "/home/app/data",
            "Destination": "/data",
            "Driver": "",
            "Mode": "",
            "Options": ["rbind"],
            "RW": True,
        }
    ],
}


def test_docker_container_model() -> None:
    container = container_from_docker(DOCKER_INSPECT)
    assert (container.engine, container.name, container.user, container.user_source) == (
        "docker",
        "web",
        "1000:1000",
        "container",
    )
    assert container.running and container.pid == 23273
    assert [(m.type, m.source, m.destination, m.access) for m in container.mounts] == [
        ("bind", "/srv/web", "/data", "rw"),
        ("volume", "/var/lib/docker/volumes/v1/_data", "/v", "rw"),
        ("bind", "/etc/localtime", "/etc/localtime", "ro"),
    ]
    assert container.uid_map == IDENTITY and container.map_source == "identity"
    assert container.owner is None
    assert container.describe() == "docker container web"


def test_docker_falls_back_to_the_image_user() -> None:
    data = dict(DOCKER_INSPECT, Config={"User": ""})
    container = container_from_docker(data, {"Config": {"User": "postgres"}})
    assert (container.user, container.user_source) == ("postgres", "image")
    assert container_from_docker(data, {"Config": {"User": ""}}).user_source == "default"


def test_docker_userns_remap_applies_unless_the_container_uses_the_host_namespace() -> None:
    remap = (parse_colon_map(["0:231072:65536"]), parse_colon_map(["0:231072:65536"]))
    remapped = container_from_docker(DOCKER_INSPECT, remap=remap)
    assert remapped.uid_map.to_host(1000) == 232072 and remapped.map_source == "computed"
    host = dict(DOCKER_INSPECT, HostConfig=dict(DOCKER_INSPECT["HostConfig"], UsernsMode="host"))
    assert container_from_docker(host, remap=remap).uid_map == IDENTITY


@pytest.mark.parametrize(
    ("cap_add", "cap_drop", "privileged", "has"),
    [
        (None, None, False, True),
        ([], ["CAP_AUDIT_WRITE"], False, True),
        ([], ["ALL"], False, False),
        ([], ["DAC_OVERRIDE"], False, False),
        ([], ["CAP_DAC_OVERRIDE"], False, False),
        (["DAC_OVERRIDE"], ["ALL"], False, True),
        ([], ["ALL"], True, True),
    ],
)
def test_dac_override(cap_add, cap_drop, privileged, has) -> None:
    data = dict(DOCKER_INSPECT, HostConfig={"CapAdd": cap_add, "CapDrop": cap_drop, "Privileged": privileged})
    assert container_from_docker(data).has_dac_override() is has


ACCOUNT = Account("app", 1002, 1002, "/home/app")
ROOTLESS_NS = (rootless_map(1002, [(400000, 65536)]), rootless_map(1002, [(400000, 65536)]))


def test_podman_rootful_default_is_the_identity() -> None:
    container = container_from_podman(PODMAN_INSPECT)
    assert container.uid_map == IDENTITY
    assert (container.state, container.running, container.pid) == ("exited", False, None)
    assert container.image == "localhost/permfix-test/busybox:latest"


def test_podman_rootful_idmappings_are_container_to_host() -> None:
    data = dict(PODMAN_INSPECT, HostConfig={"IDMappings": {"UidMap": ["0:200000:65536"], "GidMap": ["0:300000:65536"]}})
    container = container_from_podman(data)
    assert container.uid_map.to_host(999) == 200999
    assert container.gid_map.to_host(999) == 300999
    assert container.map_source == "engine"


def test_podman_rootless_default_maps_999_to_subuid_start_plus_998() -> None:
    container = container_from_podman(PODMAN_INSPECT, ACCOUNT, ROOTLESS_NS)
    assert container.uid_map.to_host(999) == 400998
    assert container.uid_map.to_host(0) == 1002
    assert container.owner == "app"
    assert container.describe() == "rootless podman container r1 of user app"
    assert container.map_source == "computed"


def test_podman_rootless_keep_id_composes_idmappings_with_the_user_namespace() -> None:
    mappings = {
        "UidMap": ["0:1:1002", "1002:0:1", "1003:1003:64534"],
        "GidMap": ["0:1:1002", "1002:0:1", "1003:1003:64534"],
    }
    data = dict(
        PODMAN_INSPECT, Config={"User": "1002:1002"}, HostConfig={"UsernsMode": "private", "IDMappings": mappings}
    )
    container = container_from_podman(data, ACCOUNT, ROOTLESS_NS)
    assert container.uid_map.to_host(1002) == 1002
    assert container.uid_map.to_host(999) == 400999
    assert container.map_source == "engine"


def test_podman_rootless_without_a_known_namespace_is_unknown() -> None:
    container = container_from_podman(PODMAN_INSPECT, ACCOUNT, None)
    assert container.map_source == "unknown"


def test_podman_idmappings_that_do_not_parse_become_a_note() -> None:
    data = dict(PODMAN_INSPECT, HostConfig={"IDMappings": {"UidMap": ["garbage"]}})
    container = container_from_podman(data)
    assert container.uid_map == IDENTITY
    assert "do not parse" in container.notes[0]


# --------------------------------------------------------------------------------------------
# podman through a fake Runner


def tar_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def as_runner_text(data: bytes) -> str:
    """What AnsibleModule.run_command returns for binary output (surrogate escapes)."""
    return data.decode("utf-8", "surrogateescape")


class FakePodman:
    """Answers podman commands from a table of argv suffixes; records every call."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], cwd: str | None) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        index = list(argv).index("/usr/bin/podman")
        key = tuple(argv[index + 1:])
        if key not in self.answers:
            return 125, "", f"unexpected command {key}"
        return self.answers[key]


@pytest.fixture(autouse=True)
def fixed_podman_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_podman, "podman_path", lambda: "/usr/bin/podman")


PASSWD = b"root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999::/tmp:/bin/sh\n"


def test_podman_read_file_decodes_the_tar_from_runner_text() -> None:
    runner = FakePodman({("cp", "c1:/etc/passwd", "-"): (0, as_runner_text(tar_of("passwd", PASSWD)), "")})
    assert podman_read_file(runner, "c1", "/etc/passwd", None) == PASSWD.decode()


def test_podman_read_file_missing_and_failing() -> None:
    runner = FakePodman(
        {
            ("cp", "c1:/etc/group", "-"): (
                125,
                "",
                'Error: "/etc/group" could not be found on container c1: no such file or directory',
            ),
            ("cp", "c1:/etc/passwd", "-"): (125, "", "Error: container state improper"),
        }
    )
    assert podman_read_file(runner, "c1", "/etc/group", None) is None
    with pytest.raises(PodmanError, match="container state improper"):
        podman_read_file(runner, "c1", "/etc/passwd", None)


def test_rootless_namespace_asks_podman_unshare_as_the_user() -> None:
    runner = FakePodman(
        {
            ("unshare", "cat", "/proc/self/uid_map"): (0, "0 1002 1\n1 400000 65536\n", ""),
            ("unshare", "cat", "/proc/self/gid_map"): (0, "0 1002 1\n1 400000 65536\n", ""),
        }
    )
    (uid_map, _gid_map), source = rootless_namespace(runner, ACCOUNT)
    assert source == "podman unshare"
    assert uid_map.to_host(999) == 400998
    assert runner.calls[0][:4] == ["setpriv", "--reuid=1002", "--regid=1002", "--init-groups"]


def test_podman_containers_lists_inspects_and_reads_accounts() -> None:
    stopped = dict(PODMAN_INSPECT, Config={"User": ""}, Image="img1")
    runner = FakePodman(
        {
            ("ps", "-a", "--format", "json"): (0, json.dumps([{"Id": PODMAN_INSPECT["Id"], "Names": ["r1"]}]), ""),
            ("container", "inspect", PODMAN_INSPECT["Id"]): (0, json.dumps([stopped]), ""),
            ("image", "inspect", "img1"): (0, json.dumps([{"Config": {"User": "postgres"}}]), ""),
            ("cp", f"{PODMAN_INSPECT['Id']}:/etc/passwd", "-"): (0, as_runner_text(tar_of("passwd", PASSWD)), ""),
            ("cp", f"{PODMAN_INSPECT['Id']}:/etc/group", "-"): (
                0,
                as_runner_text(tar_of("group", b"postgres:x:999:\n")),
                "",
            ),
        }
    )
    containers, notes = podman_containers(runner)
    assert notes == []
    [container] = containers
    assert (container.user, container.user_source) == ("postgres", "image")
    assert container.accounts is not None and container.accounts.user("postgres").uid == 999


def test_podman_containers_of_a_user_without_containers_asks_nothing_more() -> None:
    runner = FakePodman({("ps", "-a", "--format", "json"): (0, "[]", "")})
    assert podman_containers(runner, ACCOUNT) == ([], [])
    assert len(runner.calls) == 1


def test_podman_failing_for_a_user_raises_with_the_user_named() -> None:
    runner = FakePodman({("ps", "-a", "--format", "json"): (125, "", "Error: cannot set up namespace")})
    with pytest.raises(PodmanError, match="as user app failed with exit code 125: Error: cannot set up namespace"):
        podman_containers(runner, ACCOUNT)


def test_a_container_whose_passwd_cannot_be_read_keeps_a_note() -> None:
    data: dict[str, Any] = dict(PODMAN_INSPECT)
    runner = FakePodman(
        {
            ("ps", "-a", "--format", "json"): (0, json.dumps([{"Id": data["Id"]}]), ""),
            ("container", "inspect", data["Id"]): (0, json.dumps([data]), ""),
            ("cp", f"{data['Id']}:/etc/passwd", "-"): (125, "", "Error: boom"),
        }
    )
    [container], _notes = podman_containers(runner)
    assert container.accounts is None
    assert "could not be read" in container.notes[0]


# --------------------------------------------------------------------------------------------
# Maps from /proc, only when /proc shows the host's processes


def fake_proc(tmp_path: Path, pid_ns: str, self_map: str, container_map: str | None = None) -> str:
    proc = tmp_path / "proc"
    (proc / "self" / "ns").mkdir(parents=True)
    os.symlink(pid_ns, proc / "self" / "ns" / "pid")
    (proc / str(os.getpid())).mkdir()
    for name in ("uid_map", "gid_map"):
        (proc / str(os.getpid()) / name).write_text(self_map)
    if container_map is not None:
        (proc / "4242").mkdir()
        for name in ("uid_map", "gid_map"):
            (proc / "4242" / name).write_text(container_map)
    return str(proc)


@pytest.mark.parametrize(
    ("pid_ns", "self_map", "trusted"),
    [
        ("pid:[4026531836]", "         0          0 4294967295\n", True),
        ("pid:[4026532406]", "         0          0 4294967295\n", False),  # inside a container
        ("pid:[4026531836]", "0 1000 1\n1 100000 65536\n", False),  # inside a user namespace
    ],
)
def test_proc_maps_are_trusted_only_in_the_host_namespaces(
    tmp_path: Path, pid_ns: str, self_map: str, trusted: bool
) -> None:
    assert in_host_namespaces(fake_proc(tmp_path, pid_ns, self_map)) is trusted


def test_read_proc_maps(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, "pid:[4026531836]", "0 0 4294967295\n", "0 1002 1\n1 400000 65536\n")
    maps = read_proc_maps(4242, proc)
    assert maps is not None and maps[0].to_host(999) == 400998
    assert read_proc_maps(4343, proc) is None
    assert read_proc_maps(None, proc) is None
