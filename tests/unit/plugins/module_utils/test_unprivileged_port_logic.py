# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of _ports: published ports from engine JSON, findings and the fix plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._classes.unprivileged_port import (
    HostState,
    PortsError,
    PublishedPort,
    build_findings,
    declared_ports,
    docker_published_ports,
    fix_actions,
    fix_diff,
    needed_value,
    plan_fix,
    podman_published_ports,
    unique,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import validate_finding
from ansible_collections.permfix.containers.plugins.module_utils._host.sysctl import (
    UNPRIVILEGED_PORT_KEY,
    Runtime,
    SysctlError,
    resolve,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.sysctl_plan import DROPIN_NAME

KEY = UNPRIVILEGED_PORT_KEY

PODMAN_PS = [
    {
        "Names": ["web"],
        "State": "created",
        "Ports": [
            {"host_ip": "", "container_port": 8080, "host_port": 80, "range": 1, "protocol": "tcp"},
            {"host_ip": "", "container_port": 8443, "host_port": 443, "range": 3, "protocol": "udp"},
            {"host_ip": "", "container_port": 9000, "host_port": 0, "range": 1, "protocol": "tcp"},
        ],
    },
    {"Names": ["quiet"], "Ports": None},
    {"Id": "0123456789abcdef", "Ports": [{"host_port": 8080, "protocol": "tcp"}]},
    "garbage",
]

DOCKER_INSPECT = [
    {
        "Name": "/proxy",
        "HostConfig": {
            "PortBindings": {
                "80/tcp": [{"HostIp": "", "HostPort": "80"}, {"HostIp": "::", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "", "HostPort": "53-54"}],
                "9000/tcp": [{"HostIp": "", "HostPort": ""}],
            }
        },
    },
    {"Name": "/nothing", "HostConfig": {"PortBindings": None}},
]


def test_podman_published_ports() -> None:
    ports = podman_published_ports(PODMAN_PS, "app")
    assert [(p.container, p.port, p.end, p.protocol, p.user, p.engine) for p in ports] == [
        ("web", 80, 80, "tcp", "app", "podman"),
        ("web", 443, 445, "udp", "app", "podman"),
        ("0123456789ab", 8080, 8080, "tcp", "app", "podman"),
    ]


@pytest.mark.parametrize("entries", [None, {}, "x", [None, 1]])
def test_podman_published_ports_of_odd_output(entries: Any) -> None:
    assert podman_published_ports(entries, "app") == []


def test_docker_published_ports() -> None:
    ports = docker_published_ports(DOCKER_INSPECT, "dev")
    assert sorted((p.container, p.port, p.end, p.protocol) for p in ports) == [
        ("proxy", 53, 54, "udp"),
        ("proxy", 80, 80, "tcp"),
        ("proxy", 8080, 8080, "tcp"),
    ]
    assert {p.engine for p in ports} == {"docker"}


@pytest.mark.parametrize("bad", [0, -1, 65536, True, "80", 80.0])
def test_declared_ports_rejects_what_is_not_a_port(bad: Any) -> None:
    with pytest.raises(PortsError, match="port numbers from 1 to 65535"):
        declared_ports([80, bad])


@pytest.mark.parametrize(
    ("ports", "expected"),
    [([], None), ([8080, 1024], None), ([8080, 443, 80], 80), ([1023], 1023), ([1], 1)],
)
def test_needed_value(ports: list[int], expected: int | None) -> None:
    assert needed_value(declared_ports(ports)) == expected


def test_unique_drops_repeated_ports() -> None:
    port = PublishedPort(80, 80, "tcp", "podman", "web", "app")
    assert unique([port, port, PublishedPort(80, 80, "tcp", "declared")]) == [
        PublishedPort(80, 80, "tcp", "declared"),
        port,
    ]


# ------------------------------------------------------------------ host states


def make_state(
    tmp_path: Path,
    *,
    runtime: int | None = 1024,
    writable: bool = True,
    files: dict[str, str] | None = None,
    ports: list[PublishedPort] | None = None,
    local_range: tuple[int, int] | None = (32768, 60999),
) -> HostState:
    dirs = [str(tmp_path / "etc/sysctl.d"), str(tmp_path / "usr/lib/sysctl.d")]
    for directory in dirs:
        Path(directory).mkdir(parents=True, exist_ok=True)
    for relative, text in (files or {}).items():
        (tmp_path / relative).write_text(text)
    return HostState(
        runtime=Runtime("/proc/sys/net/ipv4/ip_unprivileged_port_start", runtime is not None, runtime,
                        writable and runtime is not None, "net:[1]", True),
        resolution=resolve(KEY, dirs, str(tmp_path / "etc/sysctl.conf")),
        local_port_range=local_range,
        ports=unique(ports or []),
    )


def dirs_of(tmp_path: Path) -> list[str]:
    return [str(tmp_path / "etc/sysctl.d"), str(tmp_path / "usr/lib/sysctl.d")]


WEB = PublishedPort(80, 80, "tcp", "podman", "web", "app")
DNS = PublishedPort(53, 53, "udp", "docker", "dns", "dev")
HIGH = PublishedPort(8080, 8080, "tcp", "podman", "api", "app")


def test_every_finding_fits_the_schema(tmp_path: Path) -> None:
    state = make_state(tmp_path, runtime=40000, writable=False,
                       files={"etc/sysctl.d/50-a.conf": f"{KEY} = 1024\n{KEY} = nope\n"}, ports=[WEB, DNS, HIGH])
    findings = build_findings(state)
    assert findings
    for finding in findings:
        assert validate_finding(finding) == []
    assert len({f["id"] for f in findings}) == len(findings)


def test_blocked_containers_are_errors_one_per_port(tmp_path: Path) -> None:
    findings = build_findings(make_state(tmp_path, ports=[WEB, DNS, HIGH, *declared_ports([443])]))
    errors = [f for f in findings if f["severity"] == "error"]
    assert sorted(((f["container"], f["user"], f["engine"], f["observed"]["port"]) for f in errors), key=str) == [
        ("dns", "dev", "docker", 53), ("web", "app", "podman", 80), (None, None, None, 443),
    ]
    assert all(f["expected"] == {"value": 53} and f["fixable"] for f in errors)
    web = next(f for f in errors if f["container"] == "web")
    assert "rootlessport cannot expose privileged port 80" in web["message"]
    assert web["id"] == f"unprivileged_port:web:blocked:app:80/tcp:{KEY}"


def test_a_fixed_host_has_no_findings(tmp_path: Path) -> None:
    state = make_state(tmp_path, runtime=53, files={f"etc/sysctl.d/{DROPIN_NAME}": f"{KEY} = 53\n"}, ports=[WEB, DNS])
    assert build_findings(state) == []


def test_runtime_value_lost_at_boot_is_a_warning(tmp_path: Path) -> None:
    state = make_state(tmp_path, runtime=80, files={"usr/lib/sysctl.d/50-a.conf": f"{KEY} = 1024\n"}, ports=[WEB])
    [finding] = build_findings(state)
    assert finding["severity"] == "warning"
    assert "becomes 1024 at boot" in finding["message"] and "50-a.conf line 1" in finding["message"]
    assert "web of user app" in finding["message"]
    assert finding["observed"]["persisted"] == 1024 and finding["expected"] == {"persisted": 80}


def test_a_value_below_the_need_is_info(tmp_path: Path) -> None:
    state = make_state(tmp_path, runtime=0, files={"etc/sysctl.d/50-a.conf": f"{KEY} = 0\n"}, ports=[WEB])
    [finding] = build_findings(state)
    assert (finding["severity"], finding["expected"]) == ("info", {"value": 80})
    assert "more than necessary" in finding["message"]


def test_a_low_value_with_nothing_needed_is_info(tmp_path: Path) -> None:
    state = make_state(tmp_path, runtime=500, files={"etc/sysctl.d/50-a.conf": f"{KEY} = 500\n"}, ports=[HIGH])
    [finding] = build_findings(state)
    assert finding["severity"] == "info" and finding["expected"] == {"value": 1024}


def test_value_inside_the_local_port_range(tmp_path: Path) -> None:
    state = make_state(
        tmp_path, runtime=1024, files={"etc/sysctl.d/50-a.conf": f"{KEY} = 40000\n"}, local_range=(32768, 60999)
    )
    findings = build_findings(state)
    ids = [f["id"] for f in findings]
    # the kernel refuses 40000 at boot (above 32768), so 1024 stays: not a persisted 40000
    assert state.resolution.value == 1024 and state.resolution.winner is None
    refused = [f for f in findings if f["id"].startswith("unprivileged_port:refused:")]
    assert len(refused) == 1 and "32768" in refused[0]["message"], findings
    assert f"unprivileged_port:persisted:{KEY}" not in ids
    assert f"unprivileged_port:local_port_range:persisted:{KEY}" not in ids


def test_invalid_lines_and_read_only_proc(tmp_path: Path) -> None:
    state = make_state(tmp_path, writable=False, files={"etc/sysctl.d/50-a.conf": f"# x\n{KEY} = eighty\n"})
    findings = build_findings(state)
    assert [(f["severity"], f["id"].split(":")[1]) for f in findings] == [("warning", "invalid"), ("info", "read_only")]
    assert "line 2" in findings[0]["message"]


def test_a_kernel_without_the_key(tmp_path: Path) -> None:
    assert build_findings(make_state(tmp_path, runtime=None, ports=[HIGH])) == []
    [finding] = build_findings(make_state(tmp_path, runtime=None, ports=[WEB]))
    assert finding["severity"] == "error" and "Linux 4.11" in finding["message"]


# ------------------------------------------------------------------ fix plans


@pytest.mark.parametrize(
    ("runtime", "boot", "allow_raise", "runtime_after", "persisted_after", "files"),
    [
        (1024, None, False, 80, 80, [(DROPIN_NAME, "created")]),  # the usual case
        (80, 80, False, 80, 80, []),  # already right: idempotent
        (0, None, False, 0, 80, [(DROPIN_NAME, "created")]),  # runtime low enough: not raised
        (0, 0, False, 0, 0, []),  # both lower: nothing raised
        (0, 0, True, 80, 80, [(DROPIN_NAME, "created")]),  # raised on request
        (443, 22, False, 80, 22, []),  # boot value low enough
    ],
)
def test_plan_fix_least_privilege(
    tmp_path: Path, runtime: int, boot: int | None, allow_raise: bool, runtime_after: int, persisted_after: int,
    files: list[tuple[str, str]],
) -> None:
    existing = {} if boot is None else {"usr/lib/sysctl.d/50-a.conf": f"{KEY} = {boot}\n"}
    state = make_state(tmp_path, runtime=runtime, files=existing, ports=[WEB, HIGH])
    plan = plan_fix(state, allow_raise=allow_raise, sysctl_dirs=dirs_of(tmp_path))
    assert plan.target == 80
    assert (plan.runtime_before, plan.runtime_after, plan.persisted_after) == (runtime, runtime_after, persisted_after)
    assert [(Path(c.path).name, c.action) for c in plan.changes] == files
    assert plan.changed == (runtime_after != runtime or bool(files))


def test_plan_fix_with_nothing_needed_changes_nothing(tmp_path: Path) -> None:
    plan = plan_fix(make_state(tmp_path, ports=[HIGH]), sysctl_dirs=dirs_of(tmp_path))
    assert (plan.target, plan.changed) == (None, False)
    assert "nothing to change" in plan.notes[0]


def test_plan_fix_on_read_only_proc_persists_only(tmp_path: Path) -> None:
    plan = plan_fix(make_state(tmp_path, writable=False, ports=[WEB]), sysctl_dirs=dirs_of(tmp_path))
    assert (plan.runtime_before, plan.runtime_after, plan.persisted_after) == (1024, 1024, 80)
    assert plan.changed and len(plan.changes) == 1
    assert any("read-only" in note for note in plan.notes)


def test_plan_fix_explicit_zero_is_allowed(tmp_path: Path) -> None:
    plan = plan_fix(make_state(tmp_path), value=0, sysctl_dirs=dirs_of(tmp_path))
    assert (plan.target, plan.runtime_after, plan.persisted_after) == (0, 0, 0)


def test_plan_fix_explicit_value_above_a_need_says_what_stays_blocked(tmp_path: Path) -> None:
    plan = plan_fix(make_state(tmp_path, ports=[WEB]), value=443, sysctl_dirs=dirs_of(tmp_path))
    assert plan.target == 443 and any("web of user app" in note and "stay blocked" in note for note in plan.notes)


@pytest.mark.parametrize(
    ("kwargs", "state_kwargs", "error", "match"),
    [
        ({"value": 70000}, {}, PortsError, "from 0 to 65535"),
        ({"value": -1}, {}, PortsError, "from 0 to 65535"),
        ({"value": 40000}, {}, PortsError, "overlap net.ipv4.ip_local_port_range 32768-60999"),
        ({"value": 80}, {"runtime": None}, SysctlError, "has no net.ipv4.ip_unprivileged_port_start"),
        ({"value": 80, "persist_mode": "sideways"}, {}, PortsError, "persist_mode must be one of"),
        ({"value": 80, "dropin_name": "../x.conf"}, {}, PortsError, "plain file name"),
        ({"value": 80, "dropin_name": "x.txt"}, {}, PortsError, "ending in .conf"),
    ],
)
def test_plan_fix_bad_input(
    tmp_path: Path, kwargs: dict[str, Any], state_kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        plan_fix(make_state(tmp_path, **state_kwargs), sysctl_dirs=dirs_of(tmp_path), **kwargs)


def test_plan_fix_in_place_and_diff(tmp_path: Path) -> None:
    state = make_state(tmp_path, files={"etc/sysctl.conf": f"# local\n{KEY} = 1024\n"}, ports=[WEB])
    with pytest.raises(SysctlError, match="in_place"):
        plan_fix(state, sysctl_dirs=dirs_of(tmp_path), sysctl_conf=str(tmp_path / "etc/sysctl.conf"))
    plan = plan_fix(
        state, persist_mode="in_place", sysctl_dirs=dirs_of(tmp_path), sysctl_conf=str(tmp_path / "etc/sysctl.conf")
    )
    diff = fix_diff(plan, "/proc/x")
    assert diff[0] == {
        "before_header": "/proc/x (runtime)",
        "after_header": "/proc/x (runtime)",
        "before": "1024\n",
        "after": "80\n",
    }
    assert diff[1]["before"] == f"# local\n{KEY} = 1024\n" and diff[1]["after"] == f"# local\n{KEY} = 80\n"
    actions = fix_actions(plan, "/proc/x")
    assert actions[0] == "set /proc/x from 1024 to 80" and actions[1].startswith(f"updated {tmp_path}/etc/sysctl.conf")
