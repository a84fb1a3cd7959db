# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.permfix.containers.plugins.filter.remediation import FilterModule

FILTERS = FilterModule().filters()
remediation_changes = FILTERS["remediation_changes"]


def shape(fixed=(), skipped=(), notes=()):
    """A role result in the common shape."""
    return {
        "changed": bool(fixed),
        "fixed": list(fixed),
        "skipped": list(skipped),
        "notes": list(notes),
        "findings": [],
    }


SUBIDS = shape(
    fixed=[{"user": "app", "uid": 1000, "subuid": {"wanted": 65536}, "subgid": {"wanted": 65536}}, {"user": "ci"}],
    skipped=[{"id": "subid:overlap:subuid:3:other", "reason": "ranges of other and third overlap"}],
    notes=["ranges of other and third overlap"],
)
PORTS = shape(
    fixed=[{"key": "net.ipv4.ip_unprivileged_port_start", "value": 80, "runtime": {"before": 1024, "after": 80},
            "persisted": {"before": 1024, "after": 80}, "file_changes": [], "actions": []}],
    notes=["podman as bob: not installed"],
)
MOUNTS = shape(
    fixed=[{"path": "/srv/app/data", "uid": 1000, "gid": 1000}, {"path": "/srv/cache", "uid": 999, "gid": 999}],
    skipped=[{"path": "/var/run/docker.sock", "reason": "/var/run/docker.sock is a socket, not a directory"},
             {"path": "/srv/shared", "reason": "/srv/shared is needed by different owners (999:999, 1000:1000)"}],
    notes=["podman is not installed on this host; no podman containers were examined"],
)
VOLUMES = shape(
    fixed=[{"volume": "pgdata", "engine": "docker", "user": None, "owner": "999:999"}],
    skipped=[{"id": "named_volume:docker:shared", "reason": "shared is used by users 1 and 2"}],
    notes=["podman is not installed on this host; no podman volumes were examined"],
)


@pytest.mark.parametrize(
    "results, changes, notes",
    [
        pytest.param({}, [], [], id="no role ran"),
        pytest.param(
            {"subids": None, "unprivileged_ports": None, "bind_mounts": None, "named_volumes": None},
            [],
            [],
            id="every role null",
        ),
        pytest.param(
            {"subids": SUBIDS},
            ["subid: subordinate UIDs and GIDs of app", "subid: subordinate UIDs and GIDs of ci"],
            ["ranges of other and third overlap"],
            id="subids: one line per user, its notes (not its skipped)",
        ),
        pytest.param(
            {"unprivileged_ports": PORTS},
            ["unprivileged_port: net.ipv4.ip_unprivileged_port_start 1024 -> 80"],
            ["podman as bob: not installed"],
            id="unprivileged_ports: runtime before -> value",
        ),
        pytest.param(
            {"unprivileged_ports": shape(fixed=[{"key": "net.ipv4.ip_unprivileged_port_start", "value": 443}])},
            ["unprivileged_port: net.ipv4.ip_unprivileged_port_start ? -> 443"],
            [],
            id="unprivileged_ports: unknown before is ?",
        ),
        pytest.param(
            {"unprivileged_ports": shape(fixed=[{"value": 80, "runtime": {"before": None}}])},
            ["unprivileged_port: net.ipv4.ip_unprivileged_port_start None -> 80"],
            [],
            id="unprivileged_ports: null before as Jinja prints it, key defaults to the parameter",
        ),
        pytest.param(
            {
                "unprivileged_ports": shape(
                    notes=["net.ipv4.ip_unprivileged_port_start is already 0, below 80; not raised"]
                )
            },
            [],
            ["net.ipv4.ip_unprivileged_port_start is already 0, below 80; not raised"],
            id="unprivileged_ports: unchanged, only notes",
        ),
        pytest.param(
            {"bind_mounts": MOUNTS},
            ["bind_mount: owners below /srv/app/data", "bind_mount: owners below /srv/cache"],
            [
                "/var/run/docker.sock is a socket, not a directory",
                "/srv/shared is needed by different owners (999:999, 1000:1000)",
            ],
            id="bind_mounts: one line per path, the reasons of skipped (not its notes)",
        ),
        pytest.param(
            {"named_volumes": VOLUMES},
            ["named_volume: owners in volume pgdata"],
            ["podman is not installed on this host; no podman volumes were examined"],
            id="named_volumes: one line per volume, its notes (not its skipped)",
        ),
        pytest.param(
            {"named_volumes": VOLUMES, "bind_mounts": MOUNTS, "unprivileged_ports": PORTS, "subids": SUBIDS},
            [
                "subid: subordinate UIDs and GIDs of app",
                "subid: subordinate UIDs and GIDs of ci",
                "unprivileged_port: net.ipv4.ip_unprivileged_port_start 1024 -> 80",
                "bind_mount: owners below /srv/app/data",
                "bind_mount: owners below /srv/cache",
                "named_volume: owners in volume pgdata",
            ],
            [
                "ranges of other and third overlap",
                "podman as bob: not installed",
                "/var/run/docker.sock is a socket, not a directory",
                "/srv/shared is needed by different owners (999:999, 1000:1000)",
                "podman is not installed on this host; no podman volumes were examined",
            ],
            id="all four, in the order the playbook applies them whatever the input order",
        ),
        pytest.param(
            {"subids": shape(), "unprivileged_ports": shape(), "bind_mounts": shape(), "named_volumes": shape()},
            [],
            [],
            id="nothing changed, nothing to say",
        ),
    ],
)
def test_changes_and_notes(results, changes, notes) -> None:
    assert remediation_changes(results) == {"changes": changes, "notes": notes}


@pytest.mark.parametrize(
    "before, after, notes",
    [
        pytest.param(None, None, [], id="none"),
        pytest.param([], [], [], id="empty"),
        pytest.param(
            ["docker: the daemon did not answer"],
            [],
            ["not examined before the fix: docker: the daemon did not answer"],
            id="before",
        ),
        pytest.param(
            [], ["podman as app: timeout"], ["not examined after the fix: podman as app: timeout"], id="after"
        ),
        pytest.param(
            ["a: x", "b: y"],
            ["c: z"],
            [
                "not examined before the fix: a: x",
                "not examined before the fix: b: y",
                "not examined after the fix: c: z",
            ],
            id="both, before first",
        ),
    ],
)
def test_detection_errors_come_after_the_roles_notes(before, after, notes) -> None:
    result = remediation_changes({"named_volumes": shape(notes=["role note"])}, before, after)
    assert result == {"changes": [], "notes": ["role note"] + notes}


@pytest.mark.parametrize(
    "results, args, message",
    [
        pytest.param([], (), "must be a mapping, not list", id="input not a mapping"),
        pytest.param({"subid": shape()}, (), "does not know the role(s) subid", id="unknown role"),
        pytest.param({"subids": ["changed"]}, (), "subids_result must be a mapping", id="old list shape"),
        pytest.param(
            {"bind_mounts": shape(fixed=["/srv/x"])},
            (),
            "an item of bind_mounts_result.fixed must be a mapping",
            id="fixed item not a mapping",
        ),
        pytest.param({}, ("docker: down",), "errors_before must be a list of strings", id="errors as a string"),
    ],
)
def test_wrong_input_is_refused(results, args, message) -> None:
    with pytest.raises(AnsibleFilterError, match=None) as raised:
        remediation_changes(results, *args)
    assert message in str(raised.value)


def test_only_this_filter_is_registered() -> None:
    assert set(FILTERS) == {"remediation_changes"}
