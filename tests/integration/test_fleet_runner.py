# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet through ansible-runner (the engine AWX runs jobs with): ten hosts simulated as
containers from the local podman image, seeded with different problems, and one host that
cannot be reached. The audit reports exactly the seeded problems and fails the job with
permfix_fail_on=error; remediate (checked first, then applied in rolling batches) fixes them;
the second audit is clean and passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ansible_runner
import pytest

import permfix_testlib as lib

AUDIT = lib.REPO_ROOT / "playbooks" / "audit.yml"
REMEDIATE = lib.REPO_ROOT / "playbooks" / "remediate.yml"

APP_UID = 3000
SPEC = {"path": "/srv/app/data", "uid": 1000, "gid": 1000, "access": "rw", "name": "app"}

# host index -> the problems seeded on it
SEEDS: dict[int, tuple[str, ...]] = {
    0: (),
    1: (),
    2: ("subid",),
    3: ("subid",),
    4: ("bind_mount",),
    5: ("bind_mount",),
    6: ("unprivileged_port",),
    7: ("unprivileged_port",),
    8: ("subid", "bind_mount", "unprivileged_port"),
    9: ("subid", "unprivileged_port"),
}

SEED_SUBID = f"""
set -e
useradd --create-home --uid {APP_UID} -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 app
printf '# managed by hand\\napp:100000:1000\\n' > /etc/subuid
cp /etc/subuid /etc/subgid
install -d -o app -g app -m 0700 /home/app/.local/share/containers /run/user/{APP_UID}
"""
SEED_BIND_MOUNT = "set -e; install -d -o root -g root -m 0755 /srv/app/data; touch /srv/app/data/existing"
SEED_PORT = "set -e; sysctl -w net.ipv4.ip_unprivileged_port_start=1024"


def _exec(container, script: str) -> str:
    code, output = container.exec_run(["bash", "-c", script])
    text = output.decode(errors="replace")
    if code != 0:
        raise AssertionError(f"seeding {container.name} failed ({code}): {text}")
    return text


@pytest.fixture(scope="module")
def fleet(docker_client):
    """Ten running containers (python3, podman) seeded per SEEDS; removed afterwards."""
    prefix = lib.random_name("pffleet")
    api = docker_client.api
    containers = []
    try:
        for index in range(len(SEEDS)):
            host_config = api.create_host_config(
                cap_add=["SYS_ADMIN", "NET_ADMIN"],
                security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                devices=["/dev/fuse"],
                network_mode="none",
            )
            # what `docker run --security-opt systempaths=unconfined` sends: nothing masked,
            # /proc/sys writable (only this container's network namespace is ever written)
            host_config.update({"MaskedPaths": [], "ReadonlyPaths": []})
            created = api.create_container(lib.IMAGE_PODMAN, command=["sleep", "infinity"],
                                           name=f"{prefix}-{index:02d}", host_config=host_config)
            api.start(created["Id"])
            containers.append(docker_client.containers.get(created["Id"]))
        for index, container in enumerate(containers):
            # every host starts at the kernel default (Docker starts network namespaces at 0)
            script = [SEED_PORT]
            if "subid" in SEEDS[index]:
                script.append(SEED_SUBID)
            if "bind_mount" in SEEDS[index]:
                script.append(SEED_BIND_MOUNT)
            _exec(container, "\n".join(script))
        yield [container.name for container in containers], containers
    finally:
        for container in containers:
            container.remove(force=True)


def _inventory(tmp_path: Path, names: list[str]) -> Path:
    lines = ["[fleet]"]
    for index, name in enumerate(names):
        host_vars = [f"ansible_host={name}"]
        if "bind_mount" in SEEDS[index]:
            host_vars.append("bind_mounts_specs='" + json.dumps([SPEC]) + "'")
        if "unprivileged_port" in SEEDS[index]:
            host_vars.append("unprivileged_ports_needed='[80]'")
        lines.append(f"h{index:02d} " + " ".join(host_vars))
    lines += [
        "[unreachable]",
        # a docker connection to a container that does not exist
        f"gone ansible_host={lib.random_name('pfnone')}",
        "[all:vars]",
        "ansible_connection=community.docker.docker",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    path = tmp_path / "inventory" / "hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run(tmp_path: Path, ident: str, playbook: Path, inventory: Path, extravars: dict[str, Any], check: bool = False):
    """One ansible-runner job with a private data directory, as AWX would start it."""
    # one private data directory per job: ansible-runner keeps env/cmdline between runs
    private = tmp_path / "runner" / ident
    private.mkdir(parents=True)
    env = lib.ansible_env()
    envvars = {key: env[key] for key in env if key.startswith("ANSIBLE_") or key == "PATH"}
    runner = ansible_runner.run(
        private_data_dir=str(private),
        ident=ident,
        playbook=str(playbook),
        inventory=str(inventory),
        extravars=extravars,
        envvars=envvars,
        cmdline="--check" if check else None,
        forks=11,
        quiet=True,
    )
    artifacts = private / "artifacts" / ident
    events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").glob("*.json"))]
    return runner, artifacts, events


def _stats_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    matches = [event for event in events if event.get("event") == "playbook_on_stats"]
    assert len(matches) == 1, [event.get("event") for event in events]
    return matches[0]["event_data"]


def _problems(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(host, finding["class"]) for host, entry in report["hosts"].items()
            for finding in entry["findings"] if finding["severity"] != "info"}


SEEDED = {(f"h{index:02d}", problem) for index, problems in SEEDS.items() for problem in problems}


def _files(containers) -> dict[str, str]:
    return {
        container.name: _exec(
            container,
            "cat /etc/subuid /etc/subgid 2>/dev/null; stat -c '%u:%g %a' /srv/app/data 2>/dev/null; "
            "sysctl -n net.ipv4.ip_unprivileged_port_start; ls /etc/sysctl.d",
        )
        for container in containers
    }


def _run_limited(tmp_path, ident, playbook, inventory, extravars, limit=None, tags=None, check=False):
    """One job with AWX's Limit and Job Tags fields (these runs change nothing: the story below needs the seeds)."""
    private = tmp_path / "runner" / ident
    private.mkdir(parents=True)
    env = lib.ansible_env()
    envvars = {key: env[key] for key in env if key.startswith("ANSIBLE_") or key == "PATH"}
    runner = ansible_runner.run(private_data_dir=str(private), ident=ident, playbook=str(playbook),
                                inventory=str(inventory), extravars=extravars, envvars=envvars,
                                limit=limit, tags=tags, cmdline="--check" if check else None, forks=11, quiet=True)
    artifacts = private / "artifacts" / ident
    events = [json.loads(path.read_text()) for path in sorted((artifacts / "job_events").glob("*.json"))]
    return runner, artifacts, events


def test_a_limit_without_localhost_reports_exactly_the_limited_hosts(tmp_path, fleet):
    names = fleet[0]
    inventory = _inventory(tmp_path, names)
    report_dir = tmp_path / "report"
    runner, artifacts, events = _run_limited(tmp_path, "audit-limit", AUDIT, inventory,
                                             {"permfix_report_dir": str(report_dir)}, limit="h00:h04")
    assert runner.rc == 0, (artifacts / "stdout").read_text()[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["hosts"]) == {"h00", "h04"}
    assert _problems(report) == {("h04", "bind_mount")}
    assert _stats_event(events)["artifact_data"]["permfix_summary"] == report["summary"]


def test_tags_of_one_role_keep_the_checks_and_the_summary(tmp_path, fleet):
    names = fleet[0]
    inventory = _inventory(tmp_path, names)
    runner, artifacts, events = _run_limited(tmp_path, "remediate-tags", REMEDIATE, inventory, {},
                                             limit="h02:h04", tags="subids", check=True)
    stdout = (artifacts / "stdout").read_text()
    assert runner.rc == 0, stdout[-3000:]
    summary = _stats_event(events)["artifact_data"]["permfix_remediation"]
    # subids would fix h02; h04's bind mount is left, its role was not selected
    assert summary["hosts"] == 2 and summary["not_finished"] == [], summary
    assert summary["fixed"] >= 1 and summary["remaining"] >= 1 and summary["new"] == 0, summary
    assert "TASK [Find the problems before the fix]" in stdout
    assert "remediation of bind_mount is switched off" in stdout
    assert "TASK [Make bind-mounted directories usable" not in stdout


def test_a_run_where_every_host_is_unreachable_fails_after_writing_the_report(tmp_path, fleet):
    names = fleet[0]
    inventory = _inventory(tmp_path, names)
    report_dir = tmp_path / "report"
    runner, artifacts, events = _run_limited(tmp_path, "audit-gone", AUDIT, inventory,
                                             {"permfix_report_dir": str(report_dir),
                                              "permfix_fail_on_unreachable": False}, limit="gone")
    assert runner.status == "failed" and runner.rc != 0
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["hosts"]) == {"gone"} and report["hosts"]["gone"]["reachable"] is False
    assert "no host was audited" in (artifacts / "stdout").read_text()


def test_fleet_audit_remediate_audit_through_ansible_runner(tmp_path, fleet):
    names, containers = fleet
    inventory = _inventory(tmp_path, names)
    report_dir = tmp_path / "report"

    # 1. the scheduled audit turns red: exactly the seeded problems, and the unreachable host
    runner, artifacts, events = _run(tmp_path, "audit-before", AUDIT, inventory,
                                     {"permfix_report_dir": str(report_dir), "permfix_fail_on": "error"})
    assert runner.status == "failed" and runner.rc != 0
    assert (artifacts / "status").read_text() == "failed"
    assert (artifacts / "rc").read_text() == str(runner.rc)
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["hosts"]) == {f"h{index:02d}" for index in SEEDS} | {"gone"}
    assert _problems(report) == SEEDED, json.dumps(report["hosts"], indent=1)
    assert report["hosts"]["gone"]["reachable"] is False and report["hosts"]["gone"]["reason"]
    assert all(report["hosts"][f"h{index:02d}"]["reachable"] for index in SEEDS)
    assert report["summary"]["unreachable"] == 1
    assert report["summary"]["findings"]["error"] >= 1
    markdown = (report_dir / "report.md").read_text()
    assert "## Unreachable hosts" in markdown and "\n| gone | " in markdown, markdown
    seeded_count = sum(1 for entry in report["hosts"].values() for f in entry["findings"] if f["severity"] != "info")
    stats = _stats_event(events)
    assert stats["artifact_data"]["permfix_summary"] == report["summary"]
    # the findings fail the job (once, on the controller step) and "gone", which could not be audited, fails too
    assert set(runner.stats["failures"]) | set(runner.stats["dark"]) >= {"gone"}
    assert any(
        event.get("event") == "runner_on_failed"
        and event["event_data"].get("task") == "Fail when findings reach permfix_fail_on"
        for event in events
    )

    # 2. check mode is a faithful preview: it predicts every fix and changes nothing
    before = _files(containers)
    runner, artifacts, events = _run(tmp_path, "remediate-check", REMEDIATE, inventory,
                                     {"permfix_serial": 4, "permfix_max_fail_percentage": 100}, check=True)
    summary = _stats_event(events)["artifact_data"]["permfix_remediation"]
    assert _files(containers) == before
    assert summary["fixed"] == seeded_count and summary["remaining"] == 0, summary
    assert summary["not_finished"] == ["gone"], summary
    assert runner.stats["changed"], "check mode predicted no change"
    assert set(runner.stats["dark"]) == {"gone"}

    # 3. the rolling remediation fixes them (the unreachable host is reported, not fatal)
    runner, artifacts, events = _run(tmp_path, "remediate", REMEDIATE, inventory,
                                     {"permfix_serial": 4, "permfix_max_fail_percentage": 100})
    stats = _stats_event(events)
    summary = stats["artifact_data"]["permfix_remediation"]
    assert summary["fixed"] == seeded_count and summary["remaining"] == 0 and summary["new"] == 0, summary
    assert summary["not_finished"] == ["gone"], summary
    assert set(runner.stats["dark"]) == {"gone"} and not runner.stats["failures"]
    assert set(runner.stats["changed"]) == {f"h{index:02d}" for index, problems in SEEDS.items() if problems}
    batches = [event for event in events if event.get("event") == "playbook_on_play_start"
               and event["event_data"].get("play") == "Remediate container permission problems"]
    assert len(batches) == 3  # 11 hosts, 4 per batch

    # 4. the next scheduled audit is clean and green
    report_dir = tmp_path / "report-after"
    # ("gone" still cannot be audited: with permfix_fail_on_unreachable false that does not fail the job)
    runner, artifacts, events = _run(tmp_path, "audit-after", AUDIT, inventory,
                                     {"permfix_report_dir": str(report_dir), "permfix_fail_on": "error",
                                      "permfix_fail_on_unreachable": False})
    assert runner.status == "successful" and runner.rc == 0, (artifacts / "stdout").read_text()[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert _problems(report) == set(), json.dumps(report["hosts"], indent=1)
    assert report["hosts"]["gone"]["reachable"] is False
    assert _stats_event(events)["artifact_data"]["permfix_summary"]["findings"]["error"] == 0
