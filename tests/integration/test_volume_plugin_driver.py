# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A named volume on a real non-local driver: reported as not inspectable, never "fixed".

No volume plugin can be pulled here, so the test serves one itself: Docker discovers legacy
(v1) plugins by their unix socket in /run/docker/plugins/, and speaks the VolumeDriver
protocol (JSON over HTTP) to it. The plugin keeps each volume's data in a directory of its own.
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
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

import permfix_testlib as lib

PLUGIN_DIR = "/run/docker/plugins"
LABEL_VOLUME = "permfix.containers.volume"


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _handler(root: str) -> type:
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


@pytest.fixture
def plugin_volume(docker_client) -> Iterator[tuple[str, str, str]]:
    """(driver, volume, data directory): a volume on a legacy plugin served by this test."""
    driver = lib.random_name("pfdrv")
    root = tempfile.mkdtemp(prefix="pfdrv-data-")
    os.makedirs(PLUGIN_DIR, exist_ok=True)
    socket_path = os.path.join(PLUGIN_DIR, f"{driver}.sock")
    server = _UnixHTTPServer(socket_path, _handler(root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    volume = lib.random_name("pfplugvol")
    try:
        docker_client.volumes.create(volume, driver=driver)
        data = os.path.join(root, volume)
        os.makedirs(os.path.join(data, "sub"), exist_ok=True)
        with open(os.path.join(data, "sub", "file"), "w", encoding="utf-8") as handle:
            handle.write("x\n")
        for path in (data, os.path.join(data, "sub"), os.path.join(data, "sub", "file")):
            os.chown(path, 1000, 1000)
        yield driver, volume, data
    finally:
        for container in docker_client.containers.list(all=True, filters={"volume": volume}):
            container.remove(force=True)
        try:
            docker_client.volumes.get(volume).remove(force=True)
        except Exception:  # noqa: BLE001 - best-effort clean-up
            pass
        server.shutdown()
        server.server_close()
        os.unlink(socket_path)
        shutil.rmtree(root, ignore_errors=True)


def _owners(data: str) -> dict[str, tuple[int, int]]:
    result = {}
    for dirpath, dirnames, filenames in os.walk(data):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            info = os.lstat(path)
            result[os.path.relpath(path, data)] = (info.st_uid, info.st_gid)
    return result


def test_a_volume_on_a_plugin_driver_is_reported_not_inspectable_and_never_fixed(docker_client, plugin_volume):
    driver, volume, data = plugin_volume
    assert docker_client.api.inspect_volume(volume)["Driver"] == driver
    # a container running as 999 really cannot write the plugin's volume
    status = docker_client.containers.run(lib.IMAGE_BUSYBOX, ["touch", "/data/sub/probe"], user="999:999",
                                          volumes={volume: {"bind": "/data", "mode": "rw"}}, network_mode="none",
                                          detach=True)
    try:
        assert status.wait()["StatusCode"] != 0
    finally:
        status.remove(force=True)
    before = _owners(data)

    info = lib.run_module("volume_owner_info", {"engines": ["docker"], "owners": {volume: "999:999"}})
    assert not info.get("failed"), info
    mine = [f for f in info["findings"] if f["subject"] == volume]
    assert len(mine) == 1, info["findings"]
    assert mine[0]["class"] == "named_volume" and mine[0]["fixable"] is False
    assert mine[0]["id"].endswith(f"not_inspectable:{volume}")
    assert driver in mine[0]["message"]

    since = time.time_ns()
    for check in (True, False):
        result = lib.run_module("volume_owner", {"volume": volume, "owner": "999:999"}, check=check)
        assert result.get("changed") is not True, result
        assert result.get("failed") is True, result
        assert driver in result["msg"] and "neither inspect nor fix" in result["msg"]
    events = docker_client.events(since=int(since // 1_000_000_000) - 1, until=int(time.time()) + 1, decode=True,
                                  filters={"type": "container", "label": f"{LABEL_VOLUME}={volume}"})
    assert list(events) == [], "a fixer or inspector container was started for a plugin volume"
    assert _owners(data) == before
