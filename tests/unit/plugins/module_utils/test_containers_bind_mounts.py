# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bind mount evaluation: where fixes are allowed, the fix plan, findings for declared specs."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

import permfix_testlib as lib
from ansible_collections.permfix.containers.plugins.module_utils._classes.bind_mount import (
    BindMountInfoRequest,
    Spec,
    _merge_plan,
    bind_mount_report,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import validate_finding
from ansible_collections.permfix.containers.plugins.module_utils._host.paths import (
    human_homes,
    placement_problem,
)


def no_runner(argv: Any, cwd: Any) -> tuple[int, str, str]:
    raise AssertionError(f"no command should run, got {argv}")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/srv/app/data", None),
        ("/srv", None),  # allowed by the roots; the ownership engine refuses /srv itself
        ("/data/x", None),
        ("/home/app/pgdata", None),
        ("/home/app/a/b", None),
        ("/home/app", "outside the allowed roots"),
        ("/home/other/x", "outside the allowed roots"),
        ("/srvx/data", "outside the allowed roots"),
        ("/var/lib/app", "outside the allowed roots"),
    ],
)
def test_placement(path: str, problem: str | None) -> None:
    found = placement_problem(path, ["/srv", "/opt", "/data", "/mnt"], ["/home/app", "/root"], True)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_placement_without_home_subdirs() -> None:
    found = placement_problem("/home/app/pgdata", ["/srv"], ["/home/app"], False)
    assert found is not None and "below a user's home" not in found


def test_human_homes_are_root_and_regular_users() -> None:
    entries = [
        pwd.struct_passwd(("root", "x", 0, 0, "", "/root", "/bin/sh")),
        pwd.struct_passwd(("daemon", "x", 1, 1, "", "/usr/sbin", "/bin/false")),
        pwd.struct_passwd(("app", "x", 1000, 1000, "", "/home/app/", "/bin/sh")),
        pwd.struct_passwd(("nobody", "x", 65534, 65534, "", "/nonexistent", "/bin/false")),
        pwd.struct_passwd(("svc", "x", 500, 500, "", "/", "/bin/false")),
    ]
    assert human_homes(entries, "UID_MIN 1000\nUID_MAX 60000\n") == ["/home/app", "/root"]
    assert human_homes(entries, "UID_MIN 500\n") == ["/home/app", "/root"]


def item(
    path: str, uid: int, gid: int, container: str, strategies: list[str] | None = None, access: str = "rw"
) -> dict[str, Any]:
    return {
        "path": path,
        "uid": uid,
        "gid": gid,
        "access": access,
        "containers": [container],
        "findings": [f"bind_mount:{container}:{path}"],
        "strategies": strategies or ["chown", "acl"],
        "reason": None if strategies is None else "owner bits",
    }


def test_merge_plan_joins_containers_that_need_the_same_owner() -> None:
    plan = _merge_plan([item("/srv/a", 1000, 1000, "web", access="ro"), item("/srv/a", 1000, 1000, "worker")])
    assert plan == [
        {
            "path": "/srv/a",
            "uid": 1000,
            "gid": 1000,
            "access": "rw",
            "containers": ["web", "worker"],
            "findings": ["bind_mount:web:/srv/a", "bind_mount:worker:/srv/a"],
            "strategies": ["chown", "acl"],
            "reason": None,
        }
    ]


def test_merge_plan_different_owners_of_one_path_can_only_get_acls() -> None:
    plan = _merge_plan([item("/srv/a", 1000, 1000, "web"), item("/srv/a", 999, 999, "db"), item("/srv/b", 5, 5, "x")])
    by_path = {(entry["path"], entry["uid"]): entry for entry in plan}
    assert by_path[("/srv/a", 999)]["strategies"] == ["acl"]
    assert by_path[("/srv/a", 1000)]["strategies"] == ["acl"]
    assert "different owners (999:999, 1000:1000)" in by_path[("/srv/a", 1000)]["reason"]
    assert by_path[("/srv/b", 5)]["strategies"] == ["chown", "acl"]


def test_merge_plan_keeps_acl_only_when_any_need_rules_chown_out() -> None:
    plan = _merge_plan([item("/srv/a", 1000, 1000, "web"), item("/srv/a", 1000, 1000, "ro", strategies=["acl"])])
    assert plan[0]["strategies"] == ["acl"]


# --------------------------------------------------------------------------------------------
# Declared specs on real directories (no engine asked)


@pytest.fixture
def area() -> Iterator[str]:
    with lib.scratch_dir("pf-bm-") as path:
        yield path


def report(area: str, *specs: Spec, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("allowed_roots", (area,))
    request = BindMountInfoRequest(engines=(), specs=specs, **kwargs)
    return bind_mount_report(request, no_runner).as_dict()


def test_spec_on_a_root_owned_directory_is_a_warning_with_counts(area: str) -> None:
    data = os.path.join(area, "data")
    os.makedirs(os.path.join(data, "sub"))
    open(os.path.join(data, "sub", "f"), "w").close()
    result = report(area, Spec(data, 1000, 1000, "rw", "app"))
    [finding] = result["findings"]
    assert validate_finding(finding) == []
    assert (finding["severity"], finding["subject"], finding["container"]) == ("warning", data, "app")
    assert finding["observed"]["mismatched"] == 3 and finding["observed"]["entries"] == 3
    assert finding["fix"] == "chown 1000:1000 on 3 of 3 entries"
    assert finding["fixable"] is True
    assert result["fix_plan"][0]["path"] == data
    assert result["mounts"][0]["status"] == "denied"


def test_spec_that_already_has_access_is_ok(area: str) -> None:
    data = os.path.join(area, "data")
    os.mkdir(data)
    os.chown(data, 1000, 1000)
    result = report(area, Spec(data, 1000, 1000), Spec(data, 2000, 2000, "ro"))
    assert result["findings"] == []
    assert [mount["status"] for mount in result["mounts"]] == ["ok", "ok"]


def test_read_only_spec_needs_read_and_enter_only(area: str) -> None:
    data = os.path.join(area, "data")
    os.mkdir(data, 0o700)
    result = report(area, Spec(data, 2000, 2000, "ro"), scan=False)
    [finding] = result["findings"]
    assert finding["expected"]["needs"] == "r-x"
    assert finding["fix"] == "chown 2000:2000"


def test_owner_bits_that_lack_write_need_an_acl(area: str) -> None:
    data = os.path.join(area, "data")
    os.mkdir(data)
    os.chmod(data, 0o555)
    result = report(area, Spec(data, 1000, 1000))
    assert result["fix_plan"][0]["strategies"] == ["acl"]
    assert "a chown alone would not help" in result["findings"][0]["fix"]


def test_sockets_files_and_paths_outside_the_roots_are_skipped_with_reasons(area: str) -> None:
    server, sock_path, single = lib.socket_and_file(area, "app.sock", "localtime")
    outside = tempfile.mkdtemp(prefix="pf-bm-out-", dir="/var/tmp")
    try:
        result = report(area, Spec(sock_path, 1000, 1000), Spec(single, 1000, 1000, "ro"), Spec(outside, 1000, 1000))
    finally:
        server.close()
        shutil.rmtree(outside)
    reasons = {entry["path"]: entry["reason"] for entry in result["skipped_mounts"]}
    assert "is a socket, not a directory" in reasons[sock_path]
    assert "is a regular file, not a directory" in reasons[single]
    assert "outside the allowed roots" in reasons[outside]
    assert result["fix_plan"] == []
    assert all(finding["fixable"] is False for finding in result["findings"])
    assert len(result["findings"]) == 3


def test_system_paths_are_refused(area: str) -> None:
    result = report(area, Spec("/etc", 1000, 1000), allowed_roots=("/",))
    [skipped] = result["skipped_mounts"]
    assert "refusing to change /etc" in skipped["reason"]


def test_missing_spec_path_is_a_note_not_an_error(area: str) -> None:
    missing = os.path.join(area, "absent")
    result = report(area, Spec(missing, 1000, 1000))
    assert result["findings"] == []
    assert result["mounts"][0]["status"] == "missing"
    assert any(f"{missing} does not exist" in note for note in result["notes"])


def test_symlinked_spec_is_checked_and_planned_at_its_real_path(area: str) -> None:
    real = os.path.join(area, "real")
    os.mkdir(real)
    link = os.path.join(area, "link")
    os.symlink(real, link)
    result = report(area, Spec(link, 1000, 1000))
    assert result["findings"][0]["subject"] == real
    assert result["fix_plan"][0]["path"] == real
