# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of named volumes: how a volume can be read, who should own it."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._engines.volumes import (
    Expectation,
    Observation,
    Volume,
    VolumeUser,
    access_method,
    expected_owner,
    parse_owner,
    root_matches,
    volume_from_inspect,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import (
    IDENTITY,
    IdMap,
    IdMapping,
)

ROOTLESS = IdMap([IdMapping(0, 1001, 1), IdMapping(1, 200000, 65536)])


def docker_inspect(**extra: Any) -> dict[str, Any]:
    data = {
        "Name": "pgdata",
        "Driver": "local",
        "Mountpoint": "/var/lib/docker/volumes/pgdata/_data",
        "Options": None,
        "Labels": None,
        "Scope": "local",
    }
    data.update(extra)
    return data


@pytest.mark.parametrize(
    ("data", "isdir", "method", "reason_part"),
    [
        (docker_inspect(), True, "host", None),
        (docker_inspect(), False, "container", "is not reachable from the host"),
        (docker_inspect(Mountpoint=""), True, "container", "(none)"),
        (docker_inspect(Options={"type": "tmpfs", "device": "tmpfs"}), True, "container", "backed by a mount"),
        (
            docker_inspect(Options={"type": "nfs", "o": "addr=10.0.0.1", "device": ":/export"}),
            True,
            "container",
            "type=nfs",
        ),
        (
            docker_inspect(Driver="rexray/ebs", Mountpoint="/var/lib/docker/plugins/x/rootfs"),
            True,
            "none",
            "'rexray/ebs'",
        ),
        (docker_inspect(Driver="vieux/sshfs:latest"), True, "none", "neither inspect nor fix"),
    ],
)
def test_access_method(data: dict[str, Any], isdir: bool, method: str, reason_part: str | None) -> None:
    volume = volume_from_inspect("docker", data)
    got, reason = access_method(volume, isdir=lambda _path: isdir)
    assert got == method
    if reason_part is None:
        assert reason is None
    else:
        assert reason is not None and reason_part in reason


def test_volume_from_podman_inspect_keeps_the_account() -> None:
    account = Account("app", 1001, 1001, "/home/app")
    volume = volume_from_inspect(
        "podman", {"Name": "v", "Driver": "local", "Mountpoint": "/home/app/x", "Options": {}}, account
    )
    assert volume.owner == "app"
    assert volume.describe() == "rootless podman volume v of user app"


def user(
    name: str, uid: int, host_uid: int | None = None, *, dac: bool = False, gid: int | None = None
) -> VolumeUser:
    gid = uid if gid is None else gid
    host = uid if host_uid is None else host_uid
    return VolumeUser(name, "docker", False, True, "/data", uid, gid, host, host - uid + gid, (), dac)


@pytest.mark.parametrize(
    ("users", "declared", "uid_map", "expected", "conflict_part"),
    [
        ([], None, IDENTITY, None, None),
        ([user("db", 999)], None, IDENTITY, (999, 999, 999, 999, "containers"), None),
        ([user("db", 999), user("backup", 999)], None, IDENTITY, (999, 999, 999, 999, "containers"), None),
        ([user("db", 999), user("admin", 0, dac=True)], None, IDENTITY, (999, 999, 999, 999, "containers"), None),
        ([user("admin", 0, dac=True)], None, IDENTITY, None, None),
        ([user("admin", 0, dac=False)], None, IDENTITY, (0, 0, 0, 0, "containers"), None),
        ([user("db", 999), user("app", 1000)], None, IDENTITY, None, "run as different users"),
        ([user("db", 999), user("app", 1000)], (999, 999), IDENTITY, (999, 999, 999, 999, "declared"), None),
        ([], (70, 70), IDENTITY, (70, 70, 70, 70, "declared"), None),
        # rootless: container 999 is host 200000 + 998; the fixer chowns to 999 in the namespace.
        ([user("db", 999, 200998)], None, ROOTLESS, (200998, 200998, 999, 999, "containers"), None),
        ([], (1000, 1000), ROOTLESS, (200999, 200999, 1000, 1000, "declared"), None),
        ([], (70000, 70000), ROOTLESS, None, "is not mapped"),
        # a container in another namespace (keep-id...) whose host id the default namespace lacks
        ([user("odd", 999, 5)], None, ROOTLESS, None, "does not map"),
    ],
)
def test_expected_owner(users, declared, uid_map, expected, conflict_part) -> None:
    volume = Volume("docker", "pgdata", "local", "/x", uid_map=uid_map, gid_map=uid_map)
    got, conflict = expected_owner(volume, users, declared)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert (got.host_uid, got.host_gid, got.uid, got.gid, got.source) == expected
    if conflict_part is None:
        assert conflict is None
    else:
        assert conflict is not None and conflict_part in conflict


def test_conflict_names_every_container() -> None:
    volume = Volume("docker", "shared", "local", "/x")
    _got, conflict = expected_owner(volume, [user("db", 999), user("app", 1000), user("web", 1000)])
    assert conflict is not None
    assert "db as host 999:999" in conflict and "app, web as host 1000:1000" in conflict


@pytest.mark.parametrize(
    ("text", "expected"),
    [("999:999", (999, 999)), ("999", (999, 999)), (" 70:71 ", (70, 71)), ("0:0", (0, 0))],
)
def test_parse_owner(text: str, expected: tuple[int, int]) -> None:
    assert parse_owner(text) == expected


@pytest.mark.parametrize("text", ["postgres", "999:pg", "-1:0", "", ":999", "1.5"])
def test_parse_owner_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="numeric ids"):
        parse_owner(text)


@pytest.mark.parametrize(
    ("in_namespace", "uid", "gid", "matches"),
    [(False, 200998, 200998, True), (False, 999, 999, False), (True, 999, 999, True), (True, 200998, 200998, False)],
)
def test_root_matches_compares_in_the_right_namespace(in_namespace: bool, uid: int, gid: int, matches: bool) -> None:
    expectation = Expectation(200998, 200998, 999, 999, "containers")
    observation = Observation(
        "container" if in_namespace else "host", uid, gid, "0755", 1, 0, in_namespace=in_namespace
    )
    assert root_matches(observation, expectation) is matches


def test_a_non_local_volume_is_reported_as_not_inspectable_and_not_planned() -> None:
    from ansible_collections.permfix.containers.plugins.module_utils._classes.named_volume import (
        InfoOutcome,
        VolumeInfoRequest,
        _examine,
    )
    from ansible_collections.permfix.containers.plugins.module_utils._core.findings import validate_finding
    from ansible_collections.permfix.containers.plugins.module_utils._engines.scopes import EngineScope

    def no_commands(argv, cwd):  # the examination must not run anything for a plugin volume
        raise AssertionError(f"unexpected command {argv}")

    volume = volume_from_inspect("docker", docker_inspect(Driver="rexray/ebs"))
    outcome = InfoOutcome()
    _examine(volume, EngineScope("docker"), [], VolumeInfoRequest(owners={"pgdata": (999, 999)}), no_commands, outcome)
    assert outcome.fix_plan == []
    [finding] = outcome.findings
    assert validate_finding(finding) == []
    assert finding["id"] == "named_volume:docker:not_inspectable:pgdata"
    assert finding["severity"] == "info" and finding["fixable"] is False and finding["fix"] is None
    assert "neither inspect nor fix" in finding["message"]
    assert outcome.volumes[0]["status"] == "not_inspectable"
