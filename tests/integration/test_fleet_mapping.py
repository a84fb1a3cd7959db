# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one mapping from role variables to audit_info options (playbooks/vars/detections.yml):
for each role variable that changes what remediate fixes, a container host seeded so that the
variable matters, with that variable in its host variables. One ad-hoc audit_info run without
the mapping proves each seed is seen differently without the variable; then one audit and one
real remediate over every host: the audit's findings are exactly what remediate fixed (fixable)
and left (not fixable), and every role that changed something fixed a finding the audit showed.

The *_docker_host variables are covered by test_docker_host_mapping.py (a private dockerd on
this machine): the container hosts have no Docker daemon nor Docker SDK."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

import permfix_testlib as lib

AUDIT = lib.REPO_ROOT / "playbooks" / "audit.yml"
REMEDIATE = lib.REPO_ROOT / "playbooks" / "remediate.yml"

APP = "useradd --create-home --uid 3000 -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 app"
ROOTLESS = "install -d -o app -g app -m 0700 /home/app/.local/share/containers /run/user/3000"


def _ranges(count: int) -> str:
    return f"printf 'app:100000:{count}\\n' > /etc/subuid; cp /etc/subuid /etc/subgid"


# user app creates (does not start) a rootless container publishing host port 80
ROOTLESS_PUBLISHER = ("chmod 0644 /tmp/busybox.tar; su - app -c 'export XDG_RUNTIME_DIR=/run/user/3000; "
                      "podman import /tmp/busybox.tar localhost/pfbb >/dev/null; "
                      "podman create --name web -p 80:8080 localhost/pfbb sleep 1 >/dev/null'")
BUSYBOX = "podman import --change 'CMD [\"sh\"]' /tmp/busybox.tar localhost/pfbb >/dev/null"


def _container(name: str, path: str) -> str:
    return (f"install -d -m 0755 {path}; podman create --name {name} --user 1000 --network none "
            f"-v {path}:/data localhost/pfbb sleep 1 >/dev/null")


VOLUME = ("podman volume create v1 >/dev/null; podman volume create v2 >/dev/null; "
          "podman create --name c1 --user 999 --network none -v v1:/data localhost/pfbb sleep 1 >/dev/null")


def _spec(path: str, uid: int = 1000) -> list[dict[str, Any]]:
    return [{"path": path, "uid": uid, "gid": uid, "access": "rw", "name": "app"}]


# name -> (host variables, seed script, the class the variable is about, does the mapped audit find something)
SCENARIOS: dict[str, tuple[dict[str, Any], str, str, bool]] = {
    "subids_users": ({"subids_users": [{"name": "app"}], "subids_discover": False}, APP, "subid", True),
    "subids_users_count": ({"subids_users": [{"name": "app", "count": 200000}]}, f"{APP}; {_ranges(65536)}",
                           "subid", True),
    # only discovery finds a rootless user without any entry (a user with entries is always examined)
    "subids_discover": ({"subids_discover": False}, f"{APP}; : > /etc/subuid; : > /etc/subgid; {ROOTLESS}",
                        "subid", False),
    "subids_min_count": ({"subids_min_count": 100000}, f"{APP}; {_ranges(65536)}; {ROOTLESS}", "subid", True),
    "unprivileged_ports_needed": ({"unprivileged_ports_needed": [80]}, "", "unprivileged_port", True),
    # only discovery finds the port 80 a rootless container publishes (created, never started: no tun device needed)
    "unprivileged_ports_discover": ({"unprivileged_ports_discover": False}, f"{APP}; {_ranges(65536)}; {ROOTLESS}; "
                                    f"{ROOTLESS_PUBLISHER}", "unprivileged_port", False),
    "unprivileged_ports_sysctl_files": (
        {"unprivileged_ports_needed": [80], "unprivileged_ports_sysctl_dirs": ["/etc/pf-sysctl.d"],
         "unprivileged_ports_sysctl_conf": "/etc/pf-sysctl.conf"},
        "install -d /etc/pf-sysctl.d; echo 'net.ipv4.ip_unprivileged_port_start = 80' > /etc/pf-sysctl.d/10-port.conf;"
        " : > /etc/pf-sysctl.conf; sysctl -w net.ipv4.ip_unprivileged_port_start=80 >/dev/null",
        "unprivileged_port", False),
    "bind_mounts_specs": ({"bind_mounts_specs": _spec("/srv/app/data")}, "install -d -m 0755 /srv/app/data",
                          "bind_mount", True),
    "bind_mounts_allowed_roots": ({"bind_mounts_specs": _spec("/data2/app"), "bind_mounts_allowed_roots": ["/data2"]},
                                  "install -d -m 0755 /data2/app", "bind_mount", True),
    "bind_mounts_allow_home_subdirs": (
        {"bind_mounts_specs": _spec("/home/app/data", 3000), "bind_mounts_allow_home_subdirs": False},
        f"{APP}; install -d -m 0755 /home/app/data", "bind_mount", True),
    "bind_mounts_discover": ({"bind_mounts_discover": False}, f"{BUSYBOX}; {_container('c1', '/srv/c1')}",
                             "bind_mount", False),
    "bind_mounts_containers": ({"bind_mounts_containers": ["c2"]},
                               f"{BUSYBOX}; {_container('c1', '/srv/c1')}; {_container('c2', '/srv/c2')}",
                               "bind_mount", True),
    "bind_mounts_engines": ({"bind_mounts_engines": ["docker"]}, f"{BUSYBOX}; {_container('c1', '/srv/c1')}",
                            "bind_mount", False),
    "bind_mounts_podman_users": ({"bind_mounts_podman_users": ["nobody"]},
                                 f"{BUSYBOX}; {_container('c1', '/srv/c1')}", "bind_mount", False),
    "named_volumes_discover": ({"named_volumes_discover": False}, f"{BUSYBOX}; {VOLUME}", "named_volume", False),
    "named_volumes_engines": ({"named_volumes_engines": ["docker"]}, f"{BUSYBOX}; {VOLUME}", "named_volume", False),
    "named_volumes_volumes": ({"named_volumes_volumes": ["v2"]}, f"{BUSYBOX}; {VOLUME}", "named_volume", False),
    "named_volumes_podman_users": ({"named_volumes_podman_users": ["nobody"]}, f"{BUSYBOX}; {VOLUME}",
                                   "named_volume", False),
}
# the audit_info options of the mapping that carry each scenario's variable
DROP: dict[str, list[str]] = {
    "subids_users": ["subid_users"],
    "subids_users_count": ["subid_counts"],
    "subids_discover": ["subid_discover"],
    "subids_min_count": ["subid_min_count"],
    "unprivileged_ports_needed": ["unprivileged_ports"],
    "unprivileged_ports_discover": ["unprivileged_port_discover"],
    "unprivileged_ports_sysctl_files": ["unprivileged_port_sysctl_dirs", "unprivileged_port_sysctl_conf"],
    "bind_mounts_specs": ["bind_mount_specs"],
    "bind_mounts_allowed_roots": ["bind_mount_allowed_roots"],
    "bind_mounts_allow_home_subdirs": ["bind_mount_allow_home_subdirs"],
    "bind_mounts_discover": ["bind_mount_engines"],
    "bind_mounts_containers": ["bind_mount_containers"],
    "bind_mounts_engines": ["bind_mount_engines"],
    "bind_mounts_podman_users": ["bind_mount_podman_users"],
    "named_volumes_discover": ["detections", "named_volume_volumes"],
    "named_volumes_engines": ["named_volume_engines"],
    "named_volumes_volumes": ["named_volume_volumes"],
    "named_volumes_podman_users": ["named_volume_podman_users"],
}
PORT_1024 = "sysctl -w net.ipv4.ip_unprivileged_port_start=1024 >/dev/null"


def _problems(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if f["severity"] != "info"]


@pytest.fixture(scope="module")
def mapped_runs(docker_client, tmp_path_factory):
    """One container host per scenario; the default audit, the mapped audit and one remediate over all."""
    tmp = tmp_path_factory.mktemp("mapping")
    prefix = lib.random_name("pfmap")
    api = docker_client.api
    containers = []
    try:
        for name in SCENARIOS:
            host_config = api.create_host_config(
                cap_add=["SYS_ADMIN", "NET_ADMIN"], security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                devices=["/dev/fuse"], network_mode="none",
            )
            host_config.update({"MaskedPaths": [], "ReadonlyPaths": []})
            created = api.create_container(lib.IMAGE_PODMAN, command=["sleep", "infinity"],
                                           name=f"{prefix}-{name.replace('_', '-')}", host_config=host_config)
            api.start(created["Id"])
            containers.append(docker_client.containers.get(created["Id"]))
        for (name, scenario), container in zip(SCENARIOS.items(), containers):
            seed = scenario[1]
            if "pfbb" in seed:
                subprocess.run(["docker", "cp", str(lib.BUSYBOX_TARBALL), f"{container.name}:/tmp/busybox.tar"],
                               check=True, capture_output=True)
            code, output = container.exec_run(["bash", "-c", f"set -e; {PORT_1024}; {seed}"])
            assert code == 0, f"seeding {name} failed: {output.decode(errors='replace')}"
        lines = ["[mapping]"]
        for (name, scenario), container in zip(SCENARIOS.items(), containers):
            host_vars = scenario[0]
            lines.append(f"{name} ansible_host={container.name} ansible_python_interpreter=/usr/bin/python3")
            (tmp / "host_vars").mkdir(exist_ok=True)
            (tmp / "host_vars" / f"{name}.json").write_text(json.dumps(dict(host_vars, pf_drop=DROP[name])),
                                                            encoding="utf-8")
        lines += ["[mapping:vars]", "ansible_connection=community.docker.docker"]
        inventory = tmp / "hosts"
        inventory.write_text("\n".join(lines) + "\n", encoding="utf-8")

        # the mapping without the options that carry the scenario's variable, each host
        plain = lib.run_playbook(
            [{"hosts": "mapping", "gather_facts": False, "check_mode": True,
              "vars_files": [str(lib.REPO_ROOT / "playbooks" / "vars" / "detections.yml")],
              "tasks": [{"name": "Audit without the variable",
                         "permfix.containers.audit_info": "{{ __permfix_detections | dict2items"
                                                          " | rejectattr('key', 'in', pf_drop) | items2dict }}"}]}],
            inventory=inventory,
        )
        audit = lib.run_playbook(AUDIT, inventory=inventory, extra_vars={"permfix_report_dir": str(tmp / "report")},
                                 json_output=False)
        remediate = lib.run_playbook(REMEDIATE, inventory=inventory)
        yield {"plain": plain, "audit": audit, "remediate": remediate,
               "report": json.loads((tmp / "report" / "report.json").read_text())}
    finally:
        for container in containers:
            container.remove(force=True)


def _summary_hosts(result: lib.PlaybookResult) -> dict[str, Any]:
    for play in result.data.get("plays", []):
        for task in play["tasks"]:
            if task["task"]["name"] == "Build the summary":
                for host_result in task["hosts"].values():
                    return host_result["ansible_facts"]["permfix_remediation"]["hosts"]
    raise AssertionError(f"no summary in the remediate run: {result.stdout[-3000:]} {result.stderr[-2000:]}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_audit_reports_exactly_what_remediate_fixes(mapped_runs, scenario):
    klass, finds = SCENARIOS[scenario][2:]
    plain_run = mapped_runs["plain"]
    assert plain_run.rc == 0, plain_run.stdout[-3000:] + plain_run.stderr[-2000:]
    plain_result = plain_run.data["plays"][0]["tasks"][0]["hosts"][scenario]
    plain = {(f["id"], f["fixable"]) for f in _problems(plain_result["findings"])}
    report = mapped_runs["report"]["hosts"][scenario]
    assert report["reachable"] is True, report
    audited = _problems(report["findings"])
    audit_ids = {f["id"] for f in audited}
    fixable = {f["id"] for f in audited if f["fixable"]}

    # the variable matters: without its options the audit sees this class differently
    mapped = {(f["id"], f["fixable"]) for f in audited}
    mine = {m for m in mapped if m[0].startswith(klass)}
    assert {p for p in plain if p[0].startswith(klass)} != mine, (plain, mapped)
    assert bool(audit_ids) is finds, audited

    assert mapped_runs["remediate"].rc == 0, mapped_runs["remediate"].stdout[-3000:]
    outcome = _summary_hosts(mapped_runs["remediate"])[scenario]
    fixed = {f["id"] for f in outcome["fixed"]}
    remaining = {f["id"] for f in outcome["remaining"]}
    assert fixed == fixable, (outcome["fixed"], audited)
    assert remaining == audit_ids - fixable, (outcome["remaining"], audited)
    assert outcome["new"] == [], outcome["new"]
    # every role that changed something fixed a finding the audit showed
    changed_classes = {line.split(":", 1)[0] for line in outcome["changes"]}
    assert changed_classes <= {f["class"] for f in outcome["fixed"]}, (outcome["changes"], outcome["fixed"])
