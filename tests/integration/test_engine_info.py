# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""engine_info against the machine's real Docker daemon and podman."""

from __future__ import annotations

import socket

import permfix_testlib as lib


def test_reports_the_running_docker_daemon_and_podman(docker_client):
    result = lib.run_module("engine_info", check=True)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["engines"]["docker"] == docker_client.version()["Version"]
    assert result["engines"]["podman"] == lib.sh("podman", "version", "--format", "{{.Client.Version}}").stdout.strip()


def test_a_user_with_podman_storage_is_a_rootless_user(make_user):
    user = make_user("pfeng")
    assert user.name not in lib.run_module("engine_info")["engines"]["rootless_users"]
    lib.run_as(user, ["mkdir", "-p", f"{user.home}/.local/share/containers"])
    assert user.name in lib.run_module("engine_info")["engines"]["rootless_users"]


def test_a_user_running_rootless_podman_is_found_by_its_pause_process(make_user):
    user = make_user("pfpause")
    # a running pause process, and no storage directory left behind
    lib.run_as(user, ["podman", "unshare", "true"])
    lib.run_as(user, ["rm", "-rf", f"{user.home}/.local/share/containers", f"{user.home}/.config/containers"])
    assert lib.sh("pgrep", "-u", user.name, "-x", "podman pause", check=False).returncode == 0
    assert user.name in lib.run_module("engine_info")["engines"]["rootless_users"]


def test_a_missing_docker_socket_is_recorded_not_an_error(tmp_path):
    result = lib.run_module("engine_info", {"docker_host": f"unix://{tmp_path}/docker.sock"})
    assert not result.get("failed"), result
    assert result["engines"]["docker"] is None
    assert result["notes"] == [
        f"docker is installed but its daemon is not running (no socket at {tmp_path}/docker.sock)"
    ]


def test_a_daemon_that_does_not_answer_is_recorded_with_the_reason(tmp_path):
    path = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # bound, never listening: connections are refused
    try:
        result = lib.run_module("engine_info", {"docker_host": f"unix://{path}", "timeout": 2})
    finally:
        listener.close()
    assert not result.get("failed"), result
    assert result["engines"]["docker"] is None
    assert result["notes"][0].startswith(f"the Docker daemon at unix://{path} does not answer:")


def test_bad_parameters_get_a_clear_message():
    result = lib.run_module("engine_info", {"docker_host": "tcp://127.0.0.1:2375"})
    assert result["failed"] and "docker_host must be a unix:// address" in result["msg"]
    result = lib.run_module("engine_info", {"timeout": 0})
    assert result["failed"] and result["msg"] == "timeout must be a positive number of seconds"
