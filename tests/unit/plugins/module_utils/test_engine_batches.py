# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Engine calls in batches: a rootless namespace in one podman unshare, named podman volumes in
one inspect, Docker volumes from one listing, one audit's scopes and containers learnt once, and
bounded_map's order and errors. Podman through a plain Runner function, Docker through a fake client."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._engines import podman as _podman
from ansible_collections.permfix.containers.plugins.module_utils._engines import scopes as _scopes
from ansible_collections.permfix.containers.plugins.module_utils._engines.containers import bounded_map
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import DockerEngine
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import rootless_namespace
from ansible_collections.permfix.containers.plugins.module_utils._engines.scopes import (
    EngineCache,
    EngineScope,
    discover_scopes,
    list_volumes,
    scope_containers,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account

USER = Account("app", 1500, 1500, "/nonexistent-home")


class Calls:
    """A Runner that answers podman commands from a table and records every call."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], cwd: str | None) -> tuple[int, str, str]:
        args = tuple(argv[argv.index(next(a for a in argv if a.endswith("podman"))) + 1:])
        self.seen.append(args)
        return self.answers.get(args, (125, "", f"unexpected {args}"))


@pytest.fixture(autouse=True)
def _podman_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_podman, "podman_path", lambda: "/usr/bin/podman")


HEAD = ("unshare", "head", "-n", "340", "/proc/self/uid_map", "/proc/self/gid_map")


def test_rootless_namespace_in_one_unshare() -> None:
    out = ("==> /proc/self/uid_map <==\n         0       1500          1\n         1     100000      65536\n\n"
           "==> /proc/self/gid_map <==\n         0       1500          1\n         1     200000      65536\n")
    runner = Calls({HEAD: (0, out, "")})
    (uid_map, gid_map), source = rootless_namespace(runner, USER)
    assert source == "podman unshare" and len(runner.seen) == 1
    assert uid_map.to_host(1) == 100000 and gid_map.to_host(1) == 200000 and uid_map.to_host(0) == 1500


def test_rootless_namespace_without_a_usable_head_asks_per_file() -> None:
    runner = Calls({
        HEAD: (0, "0 1500 1\n", ""),  # no file headers: not trusted
        ("unshare", "cat", "/proc/self/uid_map"): (0, "0 1500 1\n1 100000 65536\n", ""),
        ("unshare", "cat", "/proc/self/gid_map"): (0, "0 1500 1\n1 300000 65536\n", ""),
    })
    (uid_map, gid_map), _source = rootless_namespace(runner, USER)
    assert gid_map.to_host(1) == 300000 and uid_map.to_host(1) == 100000
    assert len(runner.seen) == 3


VOLUME = {"Name": "data", "Driver": "local", "Mountpoint": "/v/data", "Options": {}, "Labels": {}}


def test_named_podman_volumes_in_one_inspect_and_one_by_one_when_one_is_missing() -> None:
    other = dict(VOLUME, Name="logs")
    runner = Calls({("volume", "inspect", "data", "logs"): (0, json.dumps([VOLUME, other]), "")})
    scope = EngineScope("podman")
    assert [volume.name for volume in list_volumes(scope, runner, ["data", "logs"])] == ["data", "logs"]
    assert len(runner.seen) == 1
    runner = Calls({
        ("volume", "inspect", "data", "gone"): (125, "", "Error: no such volume gone"),
        ("volume", "inspect", "data"): (0, json.dumps([VOLUME]), ""),
        ("volume", "inspect", "gone"): (125, "", "Error: no such volume gone"),
    })
    assert [volume.name for volume in list_volumes(scope, runner, ["data", "gone"])] == ["data"]


class FakeClient:
    def __init__(self, volumes: list[dict[str, Any]]) -> None:
        self.listed = volumes
        self.inspected: list[str] = []

    def volumes(self) -> dict[str, Any]:
        return {"Volumes": self.listed}

    def inspect_volume(self, name: str) -> dict[str, Any]:
        self.inspected.append(name)
        return dict(next(item for item in self.listed if item["Name"] == name), Mountpoint="/plugin/" + name)


def test_docker_volumes_from_one_listing_and_an_inspect_only_for_other_drivers() -> None:
    plugin = dict(VOLUME, Name="remote", Driver="sshfs", Mountpoint="")
    client = FakeClient([VOLUME, plugin])
    scope = EngineScope("docker", docker=DockerEngine(client, "unix:///x"))
    volumes = list_volumes(scope, lambda argv, cwd: (1, "", ""))
    found = [(volume.name, volume.mountpoint) for volume in volumes]
    assert found == [("data", "/v/data"), ("remote", "/plugin/remote")]
    assert client.inspected == ["remote"]
    named = list_volumes(scope, lambda argv, cwd: (1, "", ""), ["data", "absent"])
    assert [volume.name for volume in named] == ["data"]


def test_one_audit_learns_scopes_and_containers_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    listed: list[Any] = []

    def podman_scope(runner: Any, account: Any, namespace: bool = True, cache: Any = None) -> EngineScope:
        made.append(account)
        return EngineScope("podman", account=account)

    def podman_containers(runner: Any, account: Any, names: Any, rootless_ns: Any = None) -> tuple[list, list]:
        listed.append(account)
        return [], ["a note"]

    monkeypatch.setattr(_scopes, "podman_scope", podman_scope)
    monkeypatch.setattr(_scopes, "podman_containers", podman_containers)
    cache = EngineCache()
    for _run in range(2):
        notes: list[str] = []
        scopes = discover_scopes(lambda argv, cwd: (0, "", ""), notes, what="containers", engines=("podman",),
                                 podman_users=("root",), cache=cache)
        assert scope_containers(scopes[0], lambda argv, cwd: (0, "", ""), notes, cache=cache) == []
        assert notes == ["a note"]  # the notes come back with the cached answer
    assert made == [None] and listed == [None]
    discover_scopes(lambda argv, cwd: (0, "", ""), [], what="containers", engines=("podman",), podman_users=("root",))
    assert made == [None, None]  # without a cache: asked again


def test_one_audit_learns_a_rootless_namespace_once(monkeypatch: pytest.MonkeyPatch) -> None:
    out = "==> /proc/self/uid_map <==\n0 1500 1\n1 100000 65536\n==> /proc/self/gid_map <==\n0 1500 1\n1 100000 65536\n"
    runner = Calls({HEAD: (0, out, ""), ("ps", "-a", "--format", "json"): (0, "[]", "")})
    monkeypatch.setattr(_scopes.Account, "lookup", classmethod(lambda cls, name: USER))
    cache = EngineCache()
    for namespaces in (False, True):  # bind_mount_info leaves it to the containers, volume_owner_info asks
        scopes = discover_scopes(runner, [], what="x", engines=("podman",), podman_users=("app",),
                                 namespaces=namespaces, cache=cache)
        scope_containers(scopes[0], runner, [], cache=cache)
    assert runner.seen.count(HEAD) == 1 and runner.seen.count(("ps", "-a", "--format", "json")) == 1


def test_bounded_map_keeps_order_and_raises_the_first_error() -> None:
    assert bounded_map(lambda value: value * 2, range(20), workers=4) == [value * 2 for value in range(20)]

    def fail(value: int) -> int:
        if value == 3:
            raise ValueError("three")
        return value

    with pytest.raises(ValueError, match="three"):
        bounded_map(fail, range(8), workers=3)
