# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""subid_info against real files, real users, real getsubids and real newuidmap/newgidmap."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import permfix_testlib as lib


def files(tmp_path: Path, subuid: str, subgid: str, passwd: str, group: str = "") -> dict:
    """Write a set of account files under tmp_path and return the module's path options."""
    paths = {}
    for name, text in (("subuid", subuid), ("subgid", subgid), ("passwd", passwd), ("group", group)):
        (tmp_path / name).write_bytes(text.encode())
        paths[f"{name}_path"] = str(tmp_path / name)
    (tmp_path / "nsswitch.conf").write_text("passwd: files\ngroup: files\n")
    paths["nsswitch_path"] = str(tmp_path / "nsswitch.conf")
    return paths


def by_id(findings: list) -> dict:
    return {finding["id"]: finding for finding in findings}


PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "app:x:1001:1001::/nonexistent/app:/bin/sh\n"
    "bob:x:1002:1002::/nonexistent/bob:/bin/sh\n"
    "carol:x:1003:1003::/nonexistent/carol:/bin/sh\n"
    "inside:x:120000:120000::/nonexistent/inside:/bin/sh\n"
    "dave:x:1004:1004::/nonexistent/dave:/bin/sh\n"
    "selfish:x:700000:700000::/nonexistent/selfish:/bin/sh\n"
)
GROUP = "root:x:0:\napp:x:1001:\nbob:x:1002:\ncarol:x:1003:\ninside:x:120000:\ndave:x:1004:\nselfish:x:700000:\n"
SUBUID = (
    "# managed by hand\n"                 # 1
    "app:100000:1000\n"                   # 2 too few
    "bob:100500:65536\n"                  # 3 overlaps app, contains uid 120000
    "carol:300000:65536\r\n"              # 4 DOS line ending: ignored by shadow
    "ghost:400000:65536\n"                # 5 no such user
    "garbage\n"                           # 6 malformed
    "dave:500000:65536\n"                 # 7
    "dave:500000:65536\n"                 # 8 duplicate
    "1001:600000:010\n"                   # 9 app by uid; octal count (8)
    "selfish:699000:65536\n"             # 10 contains the user's own uid
)
SUBGID = "app:100000:1000\nbob:200000:65536\ndave:500000:70000\n"


def test_every_kind_of_finding_on_real_files(tmp_path: Path) -> None:
    paths = files(tmp_path, SUBUID, SUBGID, PASSWD, GROUP)
    before = {name: Path(path).read_bytes() for name, path in paths.items()}
    result = lib.run_module("subid_info", dict(paths, users=["carol"], discover=False, required_id=5000), check=True)
    assert not result.get("failed"), result
    assert result["changed"] is False
    found = by_id(result["findings"])
    subuid = paths["subuid_path"]

    assert found["subid:too_few:subuid:app"]["severity"] == "error"  # 1008 < 5000
    assert found["subid:too_few:subuid:app"]["observed"]["count"] == 1008
    assert found["subid:too_few:subuid:app"]["fixable"] is True
    assert found["subid:missing:subuid:carol"]["severity"] == "error"
    assert found["subid:missing:subgid:carol"]["severity"] == "error"
    assert "bob (line 3" in found["subid:overlap:subuid:2:app"]["message"]
    assert found["subid:overlap:subuid:3:bob"]["observed"]["examples"][0]["user"] == "app"
    assert found["subid:overlap:subuid:3:bob"]["fixable"] is False
    assert "120000 (inside)" in found["subid:contains_account:subuid:3:bob"]["message"]
    assert found[f"subid:malformed:subuid:4:{subuid}"]["observed"]["line"] == 4
    assert "carriage return" in found[f"subid:malformed:subuid:4:{subuid}"]["message"]
    assert found[f"subid:malformed:subuid:6:{subuid}"]["observed"]["text"] == "garbage"
    assert found["subid:unknown_user:subuid:ghost"]["observed"]["lines"] == [5]
    assert found[f"subid:duplicate:subuid:7:{subuid}"]["observed"]["lines"] == [7, 8]
    assert "read as 8" in found[f"subid:nonstandard:subuid:9:{subuid}"]["message"]
    assert "700000 (its own)" in found["subid:contains_account:subuid:10:selfish"]["message"]
    assert found["subid:disagree:dave"]["severity"] == "warning"
    assert found["subid:disagree:bob"]["severity"] == "info"  # same size, different start
    assert not any(fid.endswith(":dave") and "too_few" in fid for fid in found)

    users = result["users"]
    assert users["app"]["subuid"]["ranges"] == [
        {"start": 100000, "count": 1000, "line": 2},
        {"start": 600000, "count": 8, "line": 9},
    ]
    assert users["app"]["subuid"]["shortfall"] == 65536 - 1008
    assert users["app"]["subuid"]["shortfall_required_id"] == 5000 - 1008
    assert users["carol"]["named"] is True
    assert users["carol"]["subuid"]["count"] == 0
    assert "ghost" not in users
    assert result["podman_subuid_info"]["app"] == {"start": 100000, "range": 1000}
    assert result["podman_subgid_info"]["dave"] == {"start": 500000, "range": 70000}
    assert "carol" not in result["podman_subuid_info"]
    assert result["files"]["subuid"]["malformed"] == 2
    assert result["source"] == {
        "nss": "files",
        "authoritative": True,
        "getsubids": None,
        "nsswitch_path": paths["nsswitch_path"],
    }
    assert result["findings"][0]["severity"] == "error"
    # read-only
    assert {name: Path(path).read_bytes() for name, path in paths.items()} == before


def test_min_count_and_login_defs(tmp_path: Path) -> None:
    paths = files(tmp_path, "app:100000:1000\n", "app:100000:1000\n", PASSWD, GROUP)
    (tmp_path / "login.defs").write_text("SUB_UID_COUNT 1000\nSUB_GID_COUNT 2000\n")
    result = lib.run_module("subid_info", dict(paths, login_defs_path=str(tmp_path / "login.defs"), discover=False))
    ids = set(by_id(result["findings"]))
    assert "subid:too_few:subuid:app" not in ids
    assert "subid:too_few:subgid:app" in ids
    assert result["bounds"]["subgid"]["count"] == 2000
    result = lib.run_module(
        "subid_info", dict(paths, login_defs_path=str(tmp_path / "login.defs"), discover=False, min_count=500)
    )
    assert not [f for f in result["findings"] if f["id"].startswith("subid:too_few")]


def test_discovers_a_real_rootless_podman_user_without_ranges(make_user) -> None:
    user = make_user("pfsid")
    result = lib.run_module("subid_info", check=True)
    assert user.name not in result["users"]
    lib.run_as(user, ["mkdir", "-p", f"{user.home}/.local/share/containers"])
    result = lib.run_module("subid_info", check=True)
    assert not result.get("failed"), result
    assert result["users"][user.name]["rootless_podman"] is True
    assert result["users"][user.name]["subuid"]["count"] == 0
    assert by_id(result["findings"])[f"subid:missing:subuid:{user.name}"]["severity"] == "error"
    result = lib.run_module("subid_info", {"discover": False}, check=True)
    assert user.name not in result["users"]


def test_a_user_with_a_range_on_the_real_files_matches_getsubids(make_user) -> None:
    user = make_user("pfsid")
    # let shadow-utils pick a free block, as useradd would
    result = lib.run_module("subid", {"name": user.name, "count": 4096, "migrate": "never"})
    assert result["changed"] is True, result
    info = lib.run_module("subid_info", {"users": [user.name], "discover": False})
    start = int(lib.sh("getsubids", user.name).stdout.split()[2])
    assert info["podman_subuid_info"][user.name] == {"start": start, "range": 4096}
    assert info["users"][user.name]["subuid"]["count"] == 4096
    assert info["users"][user.name]["subgid"]["count"] == 4096


def test_a_non_files_nss_source_reads_ranges_with_getsubids(make_user, tmp_path: Path) -> None:
    user = make_user("pfnss")
    assert lib.run_module("subid", {"name": user.name, "count": 2048, "migrate": "never"})["changed"] is True
    real_start = int(lib.sh("getsubids", user.name).stdout.split()[2])
    nsswitch = tmp_path / "nsswitch.conf"
    nsswitch.write_text("passwd: files\nsubid: sss\n")
    empty = tmp_path / "subuid"
    empty.write_text(f"{user.name}:7:7\n")  # what the (non-authoritative) file says is not used
    result = lib.run_module(
        "subid_info",
        {"users": [user.name], "discover": False, "nsswitch_path": str(nsswitch), "subuid_path": str(empty)},
    )
    assert not result.get("failed"), result
    assert result["source"]["authoritative"] is False
    assert result["source"]["nss"] == "sss"
    assert result["source"]["getsubids"] == shutil.which("getsubids")
    assert result["files"]["subuid"]["authoritative"] is False
    assert result["users"][user.name]["subuid"]["ranges"] == [{"start": real_start, "count": 2048, "line": None}]
    found = by_id(result["findings"])
    assert found[f"subid:nss_source:{nsswitch}"]["severity"] == "info"
    assert found[f"subid:too_few:subuid:{user.name}"]["fixable"] is False


def test_helpers_without_setuid_or_capability_are_errors(tmp_path: Path) -> None:
    copy = tmp_path / "newuidmap"
    shutil.copy("/usr/bin/newuidmap", copy)  # copy drops the setuid bit
    os.chmod(copy, 0o755)
    paths = files(tmp_path, "app:100000:65536\n", "app:100000:65536\n", PASSWD, GROUP)
    result = lib.run_module(
        "subid_info", dict(paths, discover=False, newuidmap_path=str(copy), newgidmap_path=str(tmp_path / "absent"))
    )
    helpers = result["helpers"]
    assert helpers["newuidmap"] == {
        "path": str(copy), "exists": True, "setuid_root": False, "file_capability": False, "ok": False,
        "problem": helpers["newuidmap"]["problem"],
    }
    assert "chmod u+s" in helpers["newuidmap"]["problem"]
    found = by_id(result["findings"])
    assert found["subid:helper:newuidmap"]["severity"] == "error"
    assert found["subid:helper:newgidmap"]["severity"] == "error"
    lib.sh("setcap", "cap_setuid=ep", str(copy))
    result = lib.run_module("subid_info", dict(paths, discover=False, newuidmap_path=str(copy)))
    assert result["helpers"]["newuidmap"]["file_capability"] is True
    assert result["helpers"]["newuidmap"]["ok"] is True
    assert result["helpers"]["newgidmap"]["setuid_root"] is True  # the real one
    assert not [f for f in result["findings"] if f["id"].startswith("subid:helper")]


def test_a_missing_subuid_file_reads_as_empty(tmp_path: Path) -> None:
    paths = files(tmp_path, "", "app:100000:65536\n", PASSWD, GROUP)
    os.unlink(paths["subuid_path"])
    result = lib.run_module("subid_info", dict(paths, discover=False))
    assert not result.get("failed"), result
    assert result["files"]["subuid"]["exists"] is False
    assert by_id(result["findings"])["subid:missing:subuid:app"]["severity"] == "error"


def test_an_unreadable_subuid_file_is_a_clear_error(tmp_path: Path, make_user) -> None:
    user = make_user("pfread")
    paths = files(tmp_path, "app:100000:65536\n", "app:100000:65536\n", PASSWD, GROUP)
    os.chmod(tmp_path, 0o755)
    os.chmod(paths["subuid_path"], 0o600)
    for name in ("subgid_path", "passwd_path", "group_path", "nsswitch_path"):
        os.chmod(paths[name], 0o644)
    # as an ordinary user, with the system python (the test venv is not readable by others)
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "become": True,
        "become_user": user.name,
        "become_method": "ansible.builtin.su",
        "vars": {"ansible_python_interpreter": "/usr/bin/python3"},
        "tasks": [
            {"name": "read", "permfix.containers.subid_info": dict(paths, discover=False), "ignore_errors": True}
        ],
    }
    result = lib.run_playbook([play]).task("read")
    assert result.get("failed") is True, result
    assert result["msg"] == (
        f"cannot read {paths['subuid_path']}: Permission denied; run as root (become: true) or point "
        "subuid_path at a readable file"
    )


@pytest.mark.parametrize("name", ["nosuchuserxyz", "4000000000"])
def test_an_unknown_named_user_is_a_clear_error(name: str) -> None:
    result = lib.run_module("subid_info", {"users": [name], "discover": False})
    assert result.get("failed") is True
    assert (
        result["msg"]
        == f"user '{name}' does not exist (not in /etc/passwd nor the passwd database); check the name in users"
    )


def test_ten_thousand_users(tmp_path: Path) -> None:
    count = 10000
    passwd = "root:x:0:0:root:/root:/bin/bash\n" + "".join(
        f"u{i}:x:{10000 + i}:{10000 + i}::/nonexistent:/bin/sh\n" for i in range(count)
    )
    starts = [100000 + i * 65536 for i in range(count)]
    starts[8] = starts[7] + 100  # u8 overlaps u7
    sizes = [1000 if i == 5 else 65536 for i in range(count)]
    subuid = "".join(f"u{i}:{starts[i]}:{sizes[i]}\n" for i in range(count))
    paths = files(tmp_path, subuid, subuid, passwd)
    result = lib.run_module("subid_info", dict(paths, discover=False))
    assert not result.get("failed"), result.get("msg")
    assert len(result["users"]) == count
    assert result["users"]["u9999"]["subuid"]["ranges"] == [{"start": starts[9999], "count": 65536, "line": 10000}]
    assert sorted(f["id"] for f in result["findings"]) == [
        "subid:overlap:subgid:8:u7", "subid:overlap:subgid:9:u8",
        "subid:overlap:subuid:8:u7", "subid:overlap:subuid:9:u8",
        "subid:too_few:subgid:u5", "subid:too_few:subuid:u5",
    ]
