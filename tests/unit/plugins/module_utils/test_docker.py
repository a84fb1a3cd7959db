# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker helpers: files out of archives, the userns-remap setting and its maps, error wrapping."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from docker.errors import APIError, NotFound

from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DockerEngine,
    DockerEngineError,
    RemapSetting,
    connect,
    dockerd_cmdlines,
    file_from_tar,
    remap_enabled,
    remap_from_cmdline,
    remap_from_daemon_json,
    remap_maps,
    remap_setting,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase


def tar_with(*members: tuple[str, str, bytes]) -> bytes:
    """A tar archive of (kind, name, payload) members: kind file, link or dir."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
            elif kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = payload.decode()
                archive.addfile(info)
            else:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("archive", "expected"),
    [
        (tar_with(("file", "passwd", b"root:x:0:0::/:/bin/sh\n")), ("file", "root:x:0:0::/:/bin/sh\n")),
        (tar_with(("link", "passwd", b"../usr/share/passwd")), ("link", "../usr/share/passwd")),
        (tar_with(("dir", "etc", b"")), ("other", "")),
        (tar_with(), ("other", "")),
        (tar_with(("file", "group", b"caf\xe9:x:5:\n")), ("file", "caf\udce9:x:5:\n")),
    ],
)
def test_file_from_tar(archive: bytes, expected: tuple[str, str]) -> None:
    assert file_from_tar(archive) == expected


def test_file_from_tar_refuses_garbage() -> None:
    with pytest.raises(DockerEngineError, match="could not be read"):
        file_from_tar(b"this is not a tar archive at all" * 40)


class FakeApi:
    """The few APIClient calls DockerEngine makes, answering from a dict of container files."""

    def __init__(self, files: dict[str, bytes], fail: Exception | None = None) -> None:
        self.files = files
        self.fail = fail
        self.asked: list[str] = []

    def get_archive(self, container: str, path: str) -> tuple[Any, dict[str, Any]]:
        self.asked.append(path)
        if self.fail is not None:
            raise self.fail
        if path not in self.files:
            raise NotFound(f"Could not find the file {path} in container {container}")
        return iter([self.files[path][:10], self.files[path][10:]]), {}

    def containers(self, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002 - the SDK's name
        if self.fail is not None:
            raise self.fail
        return [{"Id": "a" * 64}, {"Id": "b" * 64}, {"Names": ["/no-id"]}]


def test_read_file_follows_links_inside_the_container() -> None:
    api = FakeApi(
        {
            "/etc/passwd": tar_with(("link", "passwd", b"../usr/lib/passwd")),
            "/usr/lib/passwd": tar_with(("file", "passwd", b"app:x:1000:1000::/:/bin/sh\n")),
        }
    )
    engine = DockerEngine(api, "unix:///x.sock")
    assert engine.read_file("c1", "/etc/passwd") == "app:x:1000:1000::/:/bin/sh\n"
    assert api.asked == ["/etc/passwd", "/usr/lib/passwd"]


def test_read_file_of_a_missing_file_is_none_and_a_link_loop_ends() -> None:
    engine = DockerEngine(FakeApi({"/etc/group": tar_with(("link", "group", b"group"))}), "unix:///x.sock")
    assert engine.read_file("c1", "/etc/passwd") is None
    assert engine.read_file("c1", "/etc/group") is None


def test_sdk_errors_become_one_error_that_names_the_daemon() -> None:
    engine = DockerEngine(FakeApi({}, fail=APIError("500 Server Error: boom")), "unix:///x.sock")
    with pytest.raises(DockerEngineError, match=r"the Docker daemon at unix:///x.sock failed to list containers"):
        engine.container_ids()
    with pytest.raises(DockerEngineError, match="failed to copy /etc/passwd"):
        engine.read_file("c1", "/etc/passwd")


def test_container_ids_skip_entries_without_an_id() -> None:
    assert DockerEngine(FakeApi({}), "unix:///x.sock").container_ids() == ["a" * 64, "b" * 64]


def test_connect_to_a_socket_nobody_answers(tmp_path: Path) -> None:
    with pytest.raises(DockerEngineError, match="does not answer"):
        connect(f"unix://{tmp_path}/nothing.sock", timeout=2)


@pytest.mark.parametrize(
    ("value", "setting"),
    [
        ("default", RemapSetting("dockremap", "dockremap")),
        ("app", RemapSetting("app", "app")),
        ("app:staff", RemapSetting("app", "staff")),
        ("  ", None),
    ],
)
def test_remap_setting_parse(value: str, setting: RemapSetting | None) -> None:
    assert RemapSetting.parse(value) == setting


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"userns-remap": "default"}', "default"),
        ('{"log-level": "info"}', None),
        ("not json", None),
        ('["userns-remap"]', None),
    ],
)
def test_remap_from_daemon_json(text: str, value: str | None) -> None:
    assert remap_from_daemon_json(text) == value


@pytest.mark.parametrize(
    ("argv", "value"),
    [
        (["dockerd", "--userns-remap=default"], "default"),
        (["dockerd", "--userns-remap", "app:app", "-H", "unix://"], "app:app"),
        (["dockerd", "--userns-remap=a", "--userns-remap=b"], "b"),
        (["dockerd", "--userns-remap"], None),
        (["dockerd"], None),
    ],
)
def test_remap_from_cmdline(argv: list[str], value: str | None) -> None:
    assert remap_from_cmdline(argv) == value


def test_remap_setting_prefers_the_running_daemon_over_daemon_json(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "comm").write_text("dockerd\n")
    (proc / "42" / "cmdline").write_bytes(b"/usr/bin/dockerd\0--userns-remap=app\0")
    (proc / "43").mkdir()
    (proc / "43" / "comm").write_text("bash\n")
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"userns-remap": "default"}')
    assert dockerd_cmdlines(str(proc)) == [["/usr/bin/dockerd", "--userns-remap=app"]]
    assert remap_setting(str(daemon_json), str(proc)) == RemapSetting("app", "app")
    (proc / "42" / "cmdline").write_bytes(b"/usr/bin/dockerd\0")
    assert remap_setting(str(daemon_json), str(proc)) == RemapSetting("dockremap", "dockremap")
    assert remap_setting(str(tmp_path / "absent.json"), str(proc)) is None


@pytest.mark.parametrize(
    ("info", "enabled"),
    [
        ({"SecurityOptions": ["name=seccomp,profile=default", "name=userns"]}, True),
        ({"SecurityOptions": ["name=seccomp,profile=default"]}, False),
        ({}, False),
    ],
)
def test_remap_enabled(info: dict[str, Any], enabled: bool) -> None:
    assert remap_enabled(info) is enabled


def test_remap_maps_from_subuid_and_subgid(tmp_path: Path) -> None:
    accounts = AccountDatabase.from_text(
        "dockremap:x:120:130::/:/usr/sbin/nologin\nother:x:121:121::/:/bin/sh\n", "dockremap:x:130:\nstaff:x:50:\n"
    )
    subuid = tmp_path / "subuid"
    subgid = tmp_path / "subgid"
    subuid.write_text("other:100000:65536\ndockremap:231072:65536\ndockremap:400000:10\n")
    subgid.write_text("dockremap:231072:65536\nstaff:500000:65536\n")
    uid_map, gid_map = remap_maps(RemapSetting("dockremap", "dockremap"), accounts, str(subuid), str(subgid))
    assert uid_map.lines() == ["0:231072:65536", "65536:400000:10"]
    assert gid_map.lines() == ["0:231072:65536"]
    _uid_map, gid_map = remap_maps(RemapSetting("dockremap", "staff"), accounts, str(subuid), str(subgid))
    assert gid_map.lines() == ["0:500000:65536"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (RemapSetting("ghost", "ghost"), "remaps to user 'ghost', which does not exist"),
        (RemapSetting("other", "other"), "has no ranges in"),
    ],
)
def test_remap_maps_errors(tmp_path: Path, setting: RemapSetting, message: str) -> None:
    accounts = AccountDatabase.from_text("other:x:121:121::/:/bin/sh\n", "other:x:121:\n")
    subuid = tmp_path / "subuid"
    subuid.write_text("other:100000:65536\n")
    with pytest.raises(DockerEngineError, match=message):
        remap_maps(setting, accounts, str(subuid), str(tmp_path / "subgid"))
