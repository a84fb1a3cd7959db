# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A named volume on a real non-local driver: reported as not inspectable, never "fixed".

No volume plugin can be pulled here, so the test serves one itself: Docker discovers legacy
(v1) plugins by their unix socket in /run/docker/plugins/ and speaks the VolumeDriver protocol
(JSON over HTTP) to it; the plugin keeps each volume's data in a directory of its own.

The machine's shared dockerd must never learn about that plugin: a daemon that once used a
legacy plugin keeps asking for it after its socket is gone (15 s on every ``docker volume ls``)
until it restarts. So the test runs a private dockerd of its own in a private mount namespace
(and a private network namespace: with ``--bridge none`` dockerd deletes its namespace's docker0):
there a tmpfs hides the shared daemon's /run/docker, /run/containerd and /etc/docker, and the
test's own plugin directory is bound onto /run/docker/plugins. The private daemon has its own
data root, exec root, pid file, socket, containerd (started under its exec root) and containerd
namespaces, no bridge and no iptables rules; it has no images and runs no container.
"""

from __future__ import annotations

import json
import os
import shutil
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from private_dockerd import PrivateDockerd, pids_in_namespace

import permfix_testlib as lib

# The mountpoints the private namespace covers; the host's view of them must never change.
HIDDEN = ("/run/docker", "/run/containerd", "/etc/docker")
PLUGIN_SOCKETS = "/run/docker/plugins"
# --------------------------------------------------------------------------------------------
# A legacy VolumeDriver plugin served by the test


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _handler(root: str, calls: list[str]) -> type:
    class VolumeDriver(BaseHTTPRequestHandler):
        """The VolumeDriver endpoints Docker calls; each volume is a directory under ``root``."""

        def log_message(self, *args: Any) -> None:  # keep pytest's output clean
            pass

        def address_string(self) -> str:  # a unix socket has no client address
            return "docker"

        def do_POST(self) -> None:  # noqa: N802 - the http.server interface
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            name = request.get("Name", "")
            path = os.path.join(root, name)
            endpoint = self.path.lstrip("/")
            calls.append(endpoint)
            if endpoint == "Plugin.Activate":
                answer: dict[str, Any] = {"Implements": ["VolumeDriver"]}
            elif endpoint == "VolumeDriver.Create":
                os.makedirs(path, exist_ok=True)
                answer = {"Err": ""}
            elif endpoint == "VolumeDriver.Remove":
                shutil.rmtree(path, ignore_errors=True)
                answer = {"Err": ""}
            elif endpoint in ("VolumeDriver.Mount", "VolumeDriver.Path"):
                answer = {"Mountpoint": path, "Err": ""}
            elif endpoint == "VolumeDriver.Unmount":
                answer = {"Err": ""}
            elif endpoint == "VolumeDriver.Get":
                answer = ({"Volume": {"Name": name, "Mountpoint": path, "Status": {}}, "Err": ""}
                          if os.path.isdir(path) else {"Err": f"no such volume {name}"})
            elif endpoint == "VolumeDriver.List":
                answer = {"Volumes": [{"Name": entry, "Mountpoint": os.path.join(root, entry)}
                                      for entry in sorted(os.listdir(root))], "Err": ""}
            elif endpoint == "VolumeDriver.Capabilities":
                answer = {"Capabilities": {"Scope": "local"}}
            else:
                answer = {"Err": f"unsupported endpoint {endpoint}"}
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return VolumeDriver


@dataclass
class Plugin:
    """A legacy volume plugin listening on ``socket_path`` (outside every /run/docker/plugins)."""

    name: str
    socket_path: str
    root: str
    calls: list[str] = field(default_factory=list)
    server: _UnixHTTPServer | None = None

    def start(self) -> None:
        self.server = _UnixHTTPServer(self.socket_path, _handler(self.root, self.calls))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)


# --------------------------------------------------------------------------------------------
# A private dockerd


def _mounts_of_interest(base: str) -> set[str]:
    """The host's mountpoints that the private daemon must never change."""
    found = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4]
            if point.startswith(base + "/") or point == base or any(
                point == hidden or point.startswith(hidden + "/plugins") for hidden in HIDDEN
            ):
                found.add(point)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


@dataclass
class PluginDaemon:
    daemon: PrivateDockerd
    plugin: Plugin
    client: Any


def _shared_daemon_unaffected(docker_client: Any, plugin: Plugin, names: list[str]) -> None:
    """The machine's shared dockerd knows nothing of the plugin and lists volumes cleanly."""
    listed = docker_client.api.volumes()
    assert not listed.get("Warnings"), listed.get("Warnings")
    shared_names = {volume["Name"] for volume in listed.get("Volumes") or []}
    assert shared_names.isdisjoint(names)
    assert plugin.name not in (docker_client.info().get("Plugins") or {}).get("Volume", [])
    assert not os.path.exists(os.path.join(PLUGIN_SOCKETS, f"{plugin.name}.sock"))
    cli = lib.sh("docker", "-H", "unix:///var/run/docker.sock", "volume", "ls", check=False)
    assert cli.returncode == 0 and cli.stderr.strip() == "", cli.stderr


@pytest.fixture(scope="module")
def plugin_daemon(docker_client) -> Iterator[PluginDaemon]:
    """A private dockerd and a legacy volume plugin that only it can see."""
    base = tempfile.mkdtemp(prefix="pfdockerd-")
    plugins_dir = os.path.join(base, "plugins")
    os.mkdir(plugins_dir, 0o700)
    driver = lib.random_name("pfdrv")
    plugin = Plugin(driver, os.path.join(plugins_dir, f"{driver}.sock"), os.path.join(base, "plugin-data"))
    os.mkdir(plugin.root, 0o755)
    mounts_before = _mounts_of_interest(base)
    bridge_before = os.path.exists("/sys/class/net/docker0")  # the shared daemon's bridge
    daemon = PrivateDockerd(base, plugins_dir)
    client = None
    try:
        plugin.start()
        daemon.start()
        client = daemon.client()
        yield PluginDaemon(daemon, plugin, client)
    finally:
        if client is not None:
            for volume in client.volumes.list():
                try:
                    volume.remove(force=True)
                except Exception:  # noqa: BLE001 - best-effort clean-up, the data root goes below
                    pass
            client.close()
        daemon.stop()  # before the plugin: a live daemon must never see its plugin vanish
        plugin.stop()
        leaked = _mounts_of_interest(base) - mounts_before
        for point in sorted(leaked, reverse=True):
            lib.sh("umount", "--lazy", point, check=False)
        shutil.rmtree(base, ignore_errors=True)
        assert not leaked, f"the private dockerd's mounts leaked into the host's namespace: {sorted(leaked)}"
        if bridge_before:
            assert os.path.exists("/sys/class/net/docker0"), "the shared daemon's bridge docker0 was removed"
        _shared_daemon_unaffected(docker_client, plugin, [])


# --------------------------------------------------------------------------------------------
# Tests


def _owners(data: str) -> dict[str, tuple[int, int]]:
    result = {}
    for dirpath, dirnames, filenames in os.walk(data):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            info = os.lstat(path)
            result[os.path.relpath(path, data)] = (info.st_uid, info.st_gid)
    return result


def test_a_volume_on_a_plugin_driver_is_reported_not_inspectable_and_never_fixed(docker_client, plugin_daemon) -> None:
    daemon, plugin, client = plugin_daemon.daemon, plugin_daemon.plugin, plugin_daemon.client
    mounts_before = _mounts_of_interest(daemon.base)
    plugged = lib.random_name("pfplugvol")
    local = lib.random_name("pflocvol")

    # A volume on the plugin, owned by 1000 where its (declared) user is 999.
    client.volumes.create(plugged, driver=plugin.name)
    assert client.api.inspect_volume(plugged)["Driver"] == plugin.name
    assert "Plugin.Activate" in plugin.calls and "VolumeDriver.Create" in plugin.calls
    data = os.path.join(plugin.root, plugged)
    os.makedirs(os.path.join(data, "sub"))
    with open(os.path.join(data, "sub", "file"), "w", encoding="utf-8") as handle:
        handle.write("x\n")
    for path in (data, os.path.join(data, "sub"), os.path.join(data, "sub", "file")):
        os.chown(path, 1000, 1000)
    before = _owners(data)

    # A local volume on the same daemon: root-owned root, one file owned by 1000.
    mountpoint = client.api.create_volume(local)["Mountpoint"]
    assert mountpoint.startswith(daemon.base + "/")
    with open(os.path.join(mountpoint, "file"), "w", encoding="utf-8") as handle:
        handle.write("x\n")
    os.chown(os.path.join(mountpoint, "file"), 1000, 1000)

    # The machine's daemon is not involved, and the namespace keeps the plugin to itself; the
    # private daemon runs its own containerd (under its exec root), not the machine's.
    commands = [_cmdline(pid) for pid in pids_in_namespace(daemon.namespace or "")]
    assert any(c[:1] == ["containerd"] and f"{daemon.base}/exec/containerd/containerd.toml" in c for c in commands), (
        commands
    )
    _shared_daemon_unaffected(docker_client, plugin, [plugged, local])
    assert _mounts_of_interest(daemon.base) == mounts_before

    owners = {plugged: "999:999", local: "999:999"}
    info = lib.run_module("volume_owner_info", {"engines": ["docker"], "docker_host": daemon.host, "owners": owners})
    assert not info.get("failed"), info.get("msg")
    records = {record["name"]: record for record in info["volumes"]}
    assert set(records) == {plugged, local}, info["notes"]

    record = records[plugged]
    assert (record["status"], record["access_method"], record["driver"]) == ("not_inspectable", "none", plugin.name)
    assert "observed" not in record
    assert plugin.name in record["reason"] and "neither inspect nor fix" in record["reason"]
    mine = [finding for finding in info["findings"] if finding["subject"] == plugged]
    assert len(mine) == 1, info["findings"]
    assert mine[0]["id"] == f"named_volume:docker:not_inspectable:{plugged}"
    assert (mine[0]["class"], mine[0]["severity"], mine[0]["fixable"], mine[0]["fix"]) == (
        "named_volume",
        "info",
        False,
        None,
    )
    assert plugin.name in mine[0]["message"] and "not checked" in mine[0]["message"]
    assert plugged not in [entry["volume"] for entry in info["fix_plan"]]

    # The local volume is examined for real on the host: 2 entries, both differ from 999:999.
    record = records[local]
    assert (record["status"], record["access_method"], record["driver"]) == ("stale", "host", "local")
    observed = record["observed"]
    assert (observed["method"], observed["uid"], observed["entries"], observed["mismatched"]) == ("host", 0, 2, 2)
    [finding] = [finding for finding in info["findings"] if finding["subject"] == local]
    assert finding["fixable"] is True
    assert [entry["volume"] for entry in info["fix_plan"]] == [local]

    # volume_owner: check, apply, check, apply: never changed, never fixed, a clear sentence.
    for check in (True, False, True, False):
        result = lib.run_module(
            "volume_owner", {"volume": plugged, "owner": "999:999", "docker_host": daemon.host}, check=check, diff=True
        )
        assert result.get("changed") is not True, result
        assert result.get("failed") is True, result
        assert result.get("fixer") is None and result.get("after") is None
        message = result["msg"]
        assert plugin.name in message and plugged in message, message
        assert "neither inspect nor fix" in message and "not fixed" in message and "Traceback" not in message

    # The local volume's fix is predicted (check mode runs nothing).
    predicted = lib.run_module(
        "volume_owner", {"volume": local, "owner": "999:999", "docker_host": daemon.host}, check=True
    )
    assert not predicted.get("failed"), predicted.get("msg")
    assert predicted["changed"] is True and predicted["method"] == "host"
    assert (predicted["before"]["entries"], predicted["before"]["mismatched"]) == (2, 2)

    # Nothing ran: no container event on the private daemon since it started, no image
    # imported for a fixer, the plugin volume never mounted, its owners untouched.
    events = list(client.events(since=daemon.started_at, until=int(time.time()) + 1, decode=True,
                                filters={"type": "container"}))
    assert events == [], "a container was started on the private daemon"
    assert client.containers.list(all=True) == [] and client.images.list(all=True) == []
    assert "VolumeDriver.Mount" not in plugin.calls
    assert _owners(data) == before

    _shared_daemon_unaffected(docker_client, plugin, [plugged, local])


def test_a_crashed_private_daemon_is_reported_as_not_reachable() -> None:
    base = tempfile.mkdtemp(prefix="pfdockerd-")
    plugins_dir = os.path.join(base, "plugins")
    os.mkdir(plugins_dir, 0o700)
    daemon = PrivateDockerd(base, plugins_dir)
    try:
        daemon.start()
        client = daemon.client()
        volume = client.api.create_volume(lib.random_name("pfgone"))["Name"]
        client.close()
        daemon.kill()  # its socket stays behind, nobody accepts on it
        assert os.path.exists(daemon.socket_path)
        for check in (True, False):
            result = lib.run_module(
                "volume_owner", {"volume": volume, "owner": "999:999", "docker_host": daemon.host}, check=check
            )
            assert result.get("failed") is True and result.get("changed") is not True, result
            assert daemon.host in result["msg"] and "is dockerd running" in result["msg"], result["msg"]
            assert "Traceback" not in result["msg"]
        info = lib.run_module("volume_owner_info", {"engines": ["docker"], "docker_host": daemon.host})
        assert not info.get("failed") and info["findings"] == [] and info["volumes"] == []
        assert any(daemon.host in note and "not examined" in note for note in info["notes"]), info["notes"]
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
