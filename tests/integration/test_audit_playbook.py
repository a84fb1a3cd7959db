# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit playbook end to end, against real hosts: this machine, a container without any
engine (over the docker connection), and a host that cannot be reached."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import permfix_testlib as lib

AUDIT = lib.REPO_ROOT / "playbooks" / "audit.yml"


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def engineless_host(docker_client):
    """A running bookworm container (python3, no docker, no podman) reachable over docker exec."""
    name = lib.random_name("pfaudit")
    container = docker_client.containers.run(lib.IMAGE_BOOKWORM, name=name, detach=True, network_mode="none")
    try:
        yield name
    finally:
        container.remove(force=True)


def _inventory(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "inventory.ini"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_audit_localhost_reports_a_rootless_user_without_subids_and_changes_nothing(tmp_path, make_user, docker_client):
    user = make_user("pfaud")
    lib.run_as(user, ["mkdir", "-p", f"{user.home}/.local/share/containers"])
    before = {path: _digest(path) for path in ("/etc/subuid", "/etc/subgid")}
    report_dir = tmp_path / "report"

    result = lib.run_playbook(
        AUDIT,
        extra_vars={"permfix_hosts": "localhost", "permfix_report_dir": str(report_dir)},
        inventory="localhost,",
        args=["-c", "local", "-e", "ansible_python_interpreter=/usr/bin/python3"],
        json_output=False,
    )

    assert result.rc == 0, result.stdout + result.stderr
    report = json.loads((report_dir / "report.json").read_text())
    host = report["hosts"]["localhost"]
    assert host["reachable"] is True
    assert host["engines"]["docker"] == docker_client.version()["Version"]
    assert host["engines"]["podman"] == lib.sh("podman", "version", "--format", "{{.Client.Version}}").stdout.strip()
    assert user.name in host["engines"]["rootless_users"]
    mine = [f for f in host["findings"] if f["user"] == user.name and f["class"] == "subid"]
    assert mine and all(f["severity"] == "error" for f in mine), host["findings"]
    assert report["summary"]["findings"]["error"] >= len(mine)
    markdown = (report_dir / "report.md").read_text()
    assert "### localhost" in markdown and user.name in markdown
    # the run printed the findings and where the report is
    assert user.name in result.stdout and f"{report_dir}/report.json" in result.stdout
    assert {path: _digest(path) for path in before} == before


def test_audit_of_a_host_without_engines_and_an_unreachable_host(tmp_path, engineless_host):
    inventory = _inventory(tmp_path, [
        f"{engineless_host} ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3",
        # a closed port on this machine's loopback: ssh is refused at once
        "gone ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_ssh_timeout=5",
    ])
    report_dir = tmp_path / "report"

    result = lib.run_playbook(AUDIT, inventory=inventory, extra_vars={"permfix_report_dir": str(report_dir)},
                              json_output=False)

    assert result.rc == 0, result.stdout + result.stderr
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["hosts"]) == {engineless_host, "gone"}
    host = report["hosts"][engineless_host]
    assert host["reachable"] is True
    assert host["engines"] == {"docker": None, "podman": None, "rootless_users": []}
    assert report["hosts"]["gone"]["reachable"] is False
    assert "127.0.0.1" in report["hosts"]["gone"]["reason"] or "port 1" in report["hosts"]["gone"]["reason"]
    assert report["summary"]["hosts"] == 2 and report["summary"]["unreachable"] == 1
    assert "## Unreachable hosts\n\n| host | reason |\n|---|---|\n| gone | " in (report_dir / "report.md").read_text()


def test_permfix_fail_on_error_fails_the_run_but_still_writes_the_report(tmp_path, make_user):
    user = make_user("pffail")
    lib.run_as(user, ["mkdir", "-p", f"{user.home}/.local/share/containers"])
    report_dir = tmp_path / "report"
    extra = {"permfix_hosts": "localhost", "permfix_report_dir": str(report_dir), "permfix_fail_on": "error"}

    result = lib.run_playbook(AUDIT, extra_vars=extra, json_output=False)

    assert result.rc != 0
    assert "error(s)" in result.stdout and "see " in result.stdout
    assert json.loads((report_dir / "report.json").read_text())["summary"]["findings"]["error"] >= 1


def test_permfix_fail_on_rejects_an_unknown_level(tmp_path):
    extra = {"permfix_hosts": "localhost", "permfix_report_dir": str(tmp_path), "permfix_fail_on": "sometimes"}
    result = lib.run_playbook(AUDIT, extra_vars=extra, json_output=False)
    assert result.rc != 0
    assert "permfix_fail_on must be none, error or warning, not sometimes" in result.stdout


def test_audit_in_check_mode_still_writes_the_report(tmp_path):
    report_dir = tmp_path / "report"
    result = lib.run_playbook(AUDIT, extra_vars={"permfix_hosts": "localhost", "permfix_report_dir": str(report_dir)},
                              check=True, json_output=False)
    assert result.rc == 0, result.stdout + result.stderr
    assert os.path.getsize(report_dir / "report.json") > 0
