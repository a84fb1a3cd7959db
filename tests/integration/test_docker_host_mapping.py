# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The *_docker_host role variables in the one mapping (playbooks/vars/detections.yml).

test_fleet_mapping.py covers every other variable on container hosts, which have no Docker
daemon. Here a private dockerd (its own socket, data root and namespaces, as in
tests/private_dockerd.py) holds the only container with a bind-mount problem and the only
volume with a named-volume problem; the machine's shared daemon knows neither. With
``bind_mounts_docker_host`` and ``named_volumes_docker_host`` naming the private daemon:
an audit_info run without those options (the shared daemon) sees neither problem; the audit
playbook reports both; one real remediate fixes exactly what the audit reported; the next audit
is clean. Only the bind_mounts and named_volumes roles run, scoped to that container and volume.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from private_dockerd import PrivateDockerd

import permfix_testlib as lib

AUDIT = lib.REPO_ROOT / "playbooks" / "audit.yml"
REMEDIATE = lib.REPO_ROOT / "playbooks" / "remediate.yml"
CLASSES = ("bind_mount", "named_volume")


def _problems(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if f["class"] in CLASSES and f["severity"] != "info"]


@pytest.fixture(scope="module")
def private_daemon(docker_client) -> Iterator[dict[str, Any]]:
    """A private dockerd with the busybox image, one container and one volume; removed afterwards."""
    base = tempfile.mkdtemp(prefix="pfdockerh-")
    plugins_dir = os.path.join(base, "plugins")
    os.mkdir(plugins_dir, 0o700)
    daemon = PrivateDockerd(base, plugins_dir)
    os.makedirs("/srv", exist_ok=True)
    data = tempfile.mkdtemp(prefix="pfdockerh-data-", dir="/srv")  # below the bind_mounts role's allowed roots
    os.chmod(data, 0o755)
    try:
        daemon.start()
        saved = subprocess.run(["docker", "save", lib.IMAGE_BUSYBOX], check=True, capture_output=True)
        subprocess.run(["docker", "-H", daemon.host, "load"], input=saved.stdout, check=True, capture_output=True)
        client = daemon.client()
        names = {"container": lib.random_name("pfdh-bind"), "volume_user": lib.random_name("pfdh-vol"),
                 "volume": lib.random_name("pfdhv")}
        client.volumes.create(names["volume"])
        client.containers.create(lib.IMAGE_BUSYBOX, ["sleep", "1"], name=names["container"], user="1000:1000",
                                 network_mode="none", volumes={data: {"bind": "/data", "mode": "rw"}})
        client.containers.create(lib.IMAGE_BUSYBOX, ["sleep", "1"], name=names["volume_user"], user="999:999",
                                 network_mode="none", volumes={names["volume"]: {"bind": "/data", "mode": "rw"}})
        client.close()
        yield {"daemon": daemon, "data": data, **names}
    finally:
        try:
            client = daemon.client()
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.volumes.prune()
            client.close()
        except Exception:  # noqa: BLE001 - the daemon may not have started; stop() below still runs
            pass
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def _vars(setup: dict[str, Any], tmp: Path) -> dict[str, Any]:
    host = setup["daemon"].host
    return {
        "bind_mounts_docker_host": host,
        "bind_mounts_engines": ["docker"],
        "bind_mounts_containers": [setup["container"]],
        "named_volumes_docker_host": host,
        "named_volumes_engines": ["docker"],
        "named_volumes_volumes": [setup["volume"]],
        "named_volumes_fixer_image": lib.IMAGE_BUSYBOX,
        "permfix_remediate_subids": False,
        "permfix_remediate_unprivileged_ports": False,
        "permfix_report_dir": str(tmp),
        "permfix_hosts": "localhost",
        "ansible_connection": "local",
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def _audit(setup: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    run = lib.run_playbook(AUDIT, extra_vars=_vars(setup, tmp), json_output=False, inventory="localhost,")
    assert (tmp / "report.json").exists(), run.stdout[-4000:] + run.stderr[-2000:]
    report = json.loads((tmp / "report.json").read_text())
    assert report["hosts"]["localhost"]["reachable"] is True, (report, run.stdout[-3000:])
    return _problems(report["hosts"]["localhost"]["findings"])


def test_docker_host_variables_reach_the_audit_and_remediate_fixes_what_it_reported(private_daemon, tmp_path):
    setup = private_daemon
    mapped_vars = _vars(setup, tmp_path / "before")

    # without the *_docker_host options (the shared daemon) neither problem exists
    plain = lib.run_module("audit_info", {
        "detections": list(CLASSES), "bind_mount_engines": ["docker"], "bind_mount_containers": [setup["container"]],
        "named_volume_engines": ["docker"], "named_volume_volumes": [setup["volume"]]}, check=True)
    assert not plain.get("failed"), plain
    assert _problems(plain["findings"]) == [], plain["findings"]

    # the audit with the role variables sees both, on the private daemon
    audited = _audit(setup, tmp_path / "before")
    by_class = {f["class"]: f for f in audited}
    assert set(by_class) == set(CLASSES), audited
    assert by_class["bind_mount"]["container"] == setup["container"], audited
    assert by_class["bind_mount"]["subject"] == setup["data"], audited
    assert setup["volume"] in by_class["named_volume"]["subject"], audited
    assert all(f["fixable"] for f in audited), audited

    # remediate fixes exactly those, with the same variables
    remediate = lib.run_playbook(REMEDIATE, extra_vars=mapped_vars, inventory="localhost,")
    assert remediate.rc == 0, remediate.stdout[-4000:] + remediate.stderr[-2000:]
    summary = None
    for play in remediate.data.get("plays", []):
        for task in play["tasks"]:
            if task["task"]["name"] == "Build the summary":
                summary = next(iter(task["hosts"].values()))["ansible_facts"]["permfix_remediation"]["hosts"]
    assert summary is not None, remediate.stdout[-3000:]
    outcome = summary["localhost"]
    fixed = {f["id"] for f in outcome["fixed"]}
    assert fixed == {f["id"] for f in audited}, (outcome, audited)
    assert outcome["new"] == [] and [f for f in outcome["remaining"] if f.get("class") in CLASSES] == [], outcome
    stat = os.stat(setup["data"])
    assert (stat.st_uid, stat.st_gid) == (1000, 1000)

    # and the next audit is clean
    assert _audit(setup, tmp_path / "after") == []
