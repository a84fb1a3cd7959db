# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit playbook end to end, against real hosts: this machine, a container without any
engine (over the docker connection), and a host that cannot be reached."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
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

    # the host that could not be reached is unreachable in the recap and fails the run, after the report
    assert result.rc != 0, result.stdout + result.stderr
    assert "unreachable=1" in result.stdout.split("PLAY RECAP")[-1].split("gone")[1].split("\n")[0]
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


def test_permfix_fail_on_unreachable_false_keeps_the_run_green(tmp_path, engineless_host):
    inventory = _inventory(tmp_path, [
        f"{engineless_host} ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3",
        "gone ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_ssh_timeout=5",
    ])
    extra = {"permfix_report_dir": str(tmp_path / "report"), "permfix_fail_on_unreachable": False}
    result = lib.run_playbook(AUDIT, inventory=inventory, extra_vars=extra, json_output=False)
    assert result.rc == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "report" / "report.json").read_text())["hosts"]["gone"]["reachable"] is False


@pytest.fixture(scope="module")
def podman_host(docker_client, tmp_path_factory):
    """One running container from the podman image (python3, podman, no Docker): a host whose
    audit takes seconds, for the tests of the report's location and of "since last run"."""
    name = lib.random_name("pfcheap")
    api = docker_client.api
    host_config = api.create_host_config(
        cap_add=["SYS_ADMIN"], security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        devices=["/dev/fuse"], network_mode="none",
    )
    created = api.create_container(lib.IMAGE_PODMAN, command=["sleep", "infinity"], name=name, host_config=host_config)
    api.start(created["Id"])
    container = docker_client.containers.get(created["Id"])
    inventory = tmp_path_factory.mktemp("cheap") / "hosts"
    inventory.write_text(f"cheap ansible_host={name} ansible_connection=community.docker.docker "
                         "ansible_python_interpreter=/usr/bin/python3\n", encoding="utf-8")
    try:
        yield container, inventory
    finally:
        container.remove(force=True)


def _exec(container, script: str) -> None:
    code, output = container.exec_run(["bash", "-c", script])
    assert code == 0, output.decode(errors="replace")


def test_an_unwritable_report_dir_fails_with_a_sentence_naming_it(tmp_path, podman_host):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n", encoding="utf-8")
    target = blocker / "report"
    result = lib.run_playbook(AUDIT, inventory=podman_host[1], extra_vars={"permfix_report_dir": str(target)},
                              json_output=False)
    assert result.rc != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert f"cannot write the report into {target} (permfix_report_dir)" in output
    assert "Traceback" not in output


def test_a_relative_report_dir_lands_in_the_directory_the_run_started_in(tmp_path, podman_host):
    result = lib.run_playbook(AUDIT, inventory=podman_host[1], extra_vars={"permfix_report_dir": "rel/reports"},
                              cwd=tmp_path, json_output=False)
    assert result.rc == 0, result.stdout + result.stderr
    written = tmp_path / "rel" / "reports"
    assert json.loads((written / "report.json").read_text())["hosts"]["cheap"]["reachable"] is True
    assert f"report: {written}/report.json" in result.stdout
    assert not (lib.REPO_ROOT / "playbooks" / "rel").exists()


def test_ansible_navigator_runs_the_audit_by_its_name_from_another_directory(tmp_path, podman_host):
    """ansible-navigator (no execution environment) finds the collection through ANSIBLE_COLLECTIONS_PATH
    and the report lands in the directory it was started in."""
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [str(lib.VENV_BIN / "ansible-navigator"), "run", "permfix.containers.audit", "--ee", "false",
         "--mode", "stdout", "-i", str(podman_host[1]), "--pae", "false", "--lf", str(tmp_path / "navigator.log")],
        cwd=work, env=lib.ansible_env(), capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((work / "permfix-report" / "report.json").read_text())
    assert set(report["hosts"]) == {"cheap"} and report["hosts"]["cheap"]["reachable"] is True
    assert f"report: {work}/permfix-report/report.json" in proc.stdout


def test_since_last_run_marks_new_and_resolved_and_fail_on_new_fails_only_on_new(tmp_path, podman_host):
    container, inventory = podman_host
    report_dir = tmp_path / "report"
    # an old problem that stays: a rootless user with too few subordinate ids (a warning)
    _exec(container, "useradd -m -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 old; printf 'old:100000:1000\\n' > /etc/subuid;"
                     " cp /etc/subuid /etc/subgid; install -d -o old -g old /home/old/.local/share/containers")
    extra = {"permfix_report_dir": str(report_dir), "permfix_fail_on": "warning", "permfix_fail_on_new": True}

    # a first run: nothing to compare with, every finding is new, so it fails
    first = lib.run_playbook(AUDIT, inventory=inventory, extra_vars=extra, json_output=False)
    first_report = json.loads((report_dir / "report.json").read_text())
    assert first_report["summary"]["since_last_run"] is None
    assert first_report["summary"]["findings"]["warning"] > 0 and first.rc != 0, first.stdout[-2000:]

    # one new problem (a rootless user without any subordinate ids): new, and the run fails on it alone
    _exec(container, "useradd -m -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 new;"
                     " install -d -o new -g new /home/new/.local/share/containers")
    second = lib.run_playbook(AUDIT, inventory=inventory, extra_vars=extra, json_output=False)
    assert second.rc != 0
    assert "new warning(s) found on cheap" in " ".join(second.stdout.split())
    report = json.loads((report_dir / "report.json").read_text())
    findings = report["hosts"]["cheap"]["findings"]
    new_ids = {f["id"] for f in findings if f["change"] == "new"}
    assert new_ids and {f["user"] for f in findings if f["change"] == "new"} == {"new"}, findings
    assert {f["user"] for f in findings if f["change"] == "unchanged" and f["class"] == "subid"} == {"old"}, findings
    assert report["summary"]["since_last_run"]["hosts_with_new"] == ["cheap"]
    assert report["comparison"]["previous_generated_at"] == first_report["generated_at"]

    # the new user is gone again: its findings are resolved, nothing is new, and fail_on_new passes
    # although the old warning remains
    _exec(container, "userdel -r new")
    third = lib.run_playbook(AUDIT, inventory=inventory, extra_vars=extra, json_output=False)
    assert third.rc == 0, third.stdout[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    since = report["summary"]["since_last_run"]
    assert since["new"] == {"error": 0, "warning": 0, "info": 0} and since["hosts_with_new"] == [], since
    assert {f["id"] for f in report["comparison"]["resolved"]} == new_ids, report["comparison"]
    assert report["summary"]["findings"]["warning"] > 0

    # a report that is not one: a warning, no comparison, and the run goes on
    (tmp_path / "junk.json").write_text("{not json", encoding="utf-8")
    junk = lib.run_playbook(AUDIT, inventory=inventory, json_output=False,
                            extra_vars={"permfix_report_dir": str(tmp_path / "r2"),
                                        "permfix_compare_with": str(tmp_path / "junk.json")})
    assert junk.rc == 0, junk.stdout[-3000:]
    assert "not compared with the previous run" in junk.stdout
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["summary"]["since_last_run"] is None
