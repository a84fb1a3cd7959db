# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recorded-shape host results for report tests: a fleet of N hosts, a few of them affected.

The findings are built with ``make_finding`` exactly as the detections build them (same ids,
messages, observed/expected keys and fix texts as _classes/bind_mount.py, named_volume.py,
subid.py and unprivileged_port.py write), so report.md and report.html are tested on the
shapes a real audit returns, on the controller, without an engine.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.findings import make_finding

ENGINES = {"docker": "20.10.24", "podman": "4.3.1", "rootless_users": ["app"]}


def bind_mount(container: str, path: str, uid: int) -> dict[str, Any]:
    return make_finding(
        "bind_mount", "error", path,
        f"container {container} runs as {uid}:{uid} and cannot write {path} (mounted rw at /data): "
        f"owned by 0:0, mode 0755, other access through mode bits is r-x",
        id_parts=(f"{uid}:{uid}",), container=container, engine="docker", user=f"{uid}:{uid}",
        observed={"uid": 0, "gid": 0, "mode": "0755", "evidence": [
            {"source": "inspect", "key": "Config.User", "value": f"{uid}:{uid}"},
            {"source": "host", "key": "stat", "value": f"{path} 0:0 0755"},
        ], "confidence": "confirmed"},
        expected={"uid": uid, "gid": uid, "access": "rw"},
        fixable=True, fix=f"chown {uid}:{uid} on 1,204 of 1,310 entries",
    )


def named_volume(volume: str, container: str) -> dict[str, Any]:
    finding = make_finding(
        "named_volume", "warning", volume,
        f"volume {volume} is owned by 999:999 but {container} runs as 70:70; writes fail with "
        f"'permission denied'",
        id_parts=("docker", None, "owner"), engine="docker",
        observed={"uid": 999, "gid": 999, "confidence": "likely"}, expected={"uid": 70, "gid": 70},
        fixable=True, fix="chown 70:70 on 12 of 12 entries (fixer container)",
    )
    finding["container"] = container
    finding["advice"] = [{"operation": "set_user", "value": "999:999"}]
    return finding


def subid(user: str, total: int) -> dict[str, Any]:
    return make_finding(
        "subid", "error", user,
        f"{user} has {total} subordinate UIDs in /etc/subuid and at least 65536 are expected "
        f"(SUB_UID_COUNT or min_count); images with files owned by higher IDs fail with "
        f"'potentially insufficient UIDs or GIDs available in user namespace'",
        id_parts=("too_small", "subuid"), user=user,
        observed={"path": "/etc/subuid", "count": total}, expected={"count": 65536},
        fixable=True, fix=f"give {user} {65536 - total} more subordinate UIDs (permfix.containers.subid)",
    )


def unprivileged_port(user: str, port: int) -> dict[str, Any]:
    return make_finding(
        "unprivileged_port", "info", "net.ipv4.ip_unprivileged_port_start",
        f"port {port} is declared as needed, but net.ipv4.ip_unprivileged_port_start is 1024: rootless "
        f"containers cannot publish it",
        id_parts=("declared", str(port)), user=user,
        observed={"value": 1024}, expected={"value": port}, fixable=True,
        fix=f"set net.ipv4.ip_unprivileged_port_start to {port} in /etc/sysctl.d/50-permfix.conf",
    )


def fleet_results(hosts: int = 200, affected: int = 5, unreachable: int = 2) -> dict[str, dict[str, Any]]:
    """``{host: result}`` as audit.yml collects it: ``affected`` hosts with findings of every
    class and severity (the same problems on several hosts), ``unreachable`` hosts with a
    reason, and the rest clean."""
    names = [f"node{index:03d}.example.com" for index in range(1, hosts + 1)]
    results: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        if index < affected:
            findings = [bind_mount("web", f"/srv/web{index}/data", 1000)]
            if index % 2 == 0:
                findings.append(subid("app", 1000 + index))
            if index % 3 == 0:
                findings.append(named_volume(f"pgdata{index}", "db"))
            if index == affected - 1:
                findings.append(unprivileged_port("app", 80))
                findings.append(bind_mount("<script>alert(1)</script>", "/srv/x & y", 33))
            results[name] = {"reachable": True, "engines": ENGINES, "findings": findings}
        elif index >= hosts - unreachable:
            results[name] = {"reachable": False, "reason": f"unreachable: Failed to connect to {name} port 22"}
        else:
            results[name] = {"reachable": True, "engines": ENGINES, "findings": []}
    return results
