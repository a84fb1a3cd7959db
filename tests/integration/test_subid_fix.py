# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The subid module on real files: temporary copies through the path options, and the real
/etc/subuid and /etc/subgid for users made by the test (userdel removes their lines)."""

from __future__ import annotations

import concurrent.futures
import fcntl
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import permfix_testlib as lib

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "app:x:1001:1001::/nonexistent/app:/bin/sh\n"
    "bob:x:1002:1002::/nonexistent/bob:/bin/sh\n"
    "high:x:170000:170000::/nonexistent/high:/bin/sh\n"
)
GROUP = "root:x:0:\napp:x:1001:\nbob:x:1002:\nhigh:x:170000:\nstaff:x:50:\n"


def setup_files(tmp_path: Path, subuid: str, subgid: str, passwd: str = PASSWD, group: str = GROUP) -> dict:
    paths = {}
    for name, text in (("subuid", subuid), ("subgid", subgid), ("passwd", passwd), ("group", group)):
        (tmp_path / name).write_bytes(text.encode())
        paths[f"{name}_path"] = str(tmp_path / name)
    (tmp_path / "nsswitch.conf").write_text("passwd: files\n")
    paths["nsswitch_path"] = str(tmp_path / "nsswitch.conf")
    return paths


def rhythm(args: dict, shared: bool = False) -> dict:
    """check (predicts a change), apply (changes exactly that), check and apply again (no change).

    ``shared``: the files are the machine's own, which other tests change at the same time, so
    only the shape of the change can be compared (the first free block may be taken meanwhile).
    """
    predicted = lib.run_module("subid", args, check=True, diff=True)
    assert not predicted.get("failed"), predicted
    assert predicted["changed"] is True, predicted
    applied = lib.run_module("subid", args, diff=True)
    assert not applied.get("failed"), applied
    assert applied["changed"] is True
    if shared:
        for kind in ("subuid", "subgid"):
            assert [(c["action"], c["count"]) for c in applied[kind]["changes"]] == [
                (c["action"], c["count"]) for c in predicted[kind]["changes"]
            ]
        assert [d["before_header"] for d in applied["diff"]] == [d["before_header"] for d in predicted["diff"]]
    else:
        for kind in ("subuid", "subgid"):
            assert applied[kind] == predicted[kind], kind
        assert applied["diff"] == predicted["diff"]
    again = lib.run_module("subid", args, check=True)
    assert again["changed"] is False, again
    assert again["method"] is None
    last = lib.run_module("subid", args)
    assert last["changed"] is False, last
    assert last["subuid"]["changes"] == last["subgid"]["changes"] == []
    return applied


def test_a_short_range_is_widened_in_place_and_nothing_else_moves(tmp_path: Path) -> None:
    subuid = "# managed by hand\r\n\napp:100000:1000\nbob:200000:65536\ngarbage here\nlast:900000:5"
    paths = setup_files(tmp_path, subuid, "app:100000:1000\n")
    result = rhythm(dict(paths, name="app", migrate="never"))
    assert result["method"] == "file"
    assert (tmp_path / "subuid").read_bytes() == (
        b"# managed by hand\r\n\napp:100000:65536\nbob:200000:65536\ngarbage here\nlast:900000:5"
    )
    assert (tmp_path / "subgid").read_bytes() == b"app:100000:65536\n"
    assert result["subuid"]["changes"] == [
        {"action": "widen", "start": 101000, "count": 64536, "line": 3,
         "range_before": {"start": 100000, "count": 1000}, "range_after": {"start": 100000, "count": 65536}}
    ]
    assert result["subuid"]["ranges"] == [{"start": 100000, "count": 65536}]
    assert result["diff"][0] == {
        "before_header": paths["subuid_path"], "after_header": paths["subuid_path"],
        "before": subuid, "after": (tmp_path / "subuid").read_bytes().decode(),
    }
    assert result["migrate"]["ran"] is False
    assert result["migrate"]["reason"] == "migrate is set to never"


def test_a_range_with_no_room_after_it_gets_a_second_range_clear_of_accounts(tmp_path: Path) -> None:
    paths = setup_files(tmp_path, "app:100000:1000\nbob:101000:65536\n", "app:100000:1000\nbob:101000:65536\n")
    result = rhythm(dict(paths, name="app", count=65536, migrate="never"))
    # 166536..231071 would contain uid/gid 170000 (user high): the block starts after it
    assert (tmp_path / "subuid").read_text() == "app:100000:1000\nbob:101000:65536\napp:170001:64536\n"
    assert (tmp_path / "subgid").read_text() == "app:100000:1000\nbob:101000:65536\napp:170001:64536\n"
    assert result["subuid"]["count"] == 65536


def test_a_user_whose_uid_lies_inside_another_users_range(tmp_path: Path) -> None:
    inside = "inside:x:120000:120000::/nonexistent/inside:/bin/sh\n"
    paths = setup_files(tmp_path, "bob:100000:65536\n", "bob:100000:65536\n", PASSWD + inside)
    info = lib.run_module("subid_info", dict(paths, discover=False))
    assert "120000 (inside)" in {f["id"]: f for f in info["findings"]}["subid:contains_account:subuid:1:bob"]["message"]
    rhythm(dict(paths, name="inside", migrate="never"))
    assert (tmp_path / "subuid").read_text() == "bob:100000:65536\ninside:170001:65536\n"
    info = lib.run_module("subid_info", dict(paths, discover=False))
    ids = {f["id"] for f in info["findings"]}
    assert "subid:contains_account:subuid:1:bob" in ids  # reported, not "fixed"
    assert not [fid for fid in ids if fid.startswith("subid:overlap")]


def test_overlapping_ranges_are_reported_and_left_alone(tmp_path: Path) -> None:
    text = "app:100000:65536\nbob:150000:65536\n"
    paths = setup_files(tmp_path, text, text)
    result = lib.run_module("subid", dict(paths, name="app", migrate="never"))
    assert result["changed"] is False
    assert any("overlap bob's 150000-215535" in warning for warning in result["warnings"])
    assert (tmp_path / "subuid").read_text() == text


def test_garbage_lines_are_preserved_and_reported(tmp_path: Path) -> None:
    garbage = "\x00binary\xff junk\n:::\napp:lots:of\n#app:1:1\n   \napp:100000:65536\r\n"
    (tmp_path / "subuid").write_bytes(garbage.encode("latin-1"))
    paths = setup_files(tmp_path, "", "")
    (tmp_path / "subuid").write_bytes(garbage.encode("latin-1"))
    info = lib.run_module("subid_info", dict(paths, users=["app"], discover=False))
    malformed = sorted(f["observed"]["line"] for f in info["findings"] if f["id"].startswith("subid:malformed:subuid"))
    assert malformed == [1, 2, 3, 6]
    rhythm(dict(paths, name="app", migrate="never"))
    after = (tmp_path / "subuid").read_bytes()
    assert after.startswith(garbage.encode("latin-1"))
    # the DOS line's IDs stay reserved, and so does uid 170000 (user high)
    assert after[len(garbage.encode("latin-1")):] == b"app:170001:65536\n"


def test_owner_mode_and_backups(tmp_path: Path) -> None:
    paths = setup_files(tmp_path, "app:100000:1000\n", "app:100000:65536\n")
    os.chown(paths["subuid_path"], 0, 50)
    os.chmod(paths["subuid_path"], 0o640)
    result = rhythm(dict(paths, name="app", backup=True, migrate="never"))
    info = os.stat(paths["subuid_path"])
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 50, 0o640)
    assert list(result["backup_files"]) == ["subuid"]
    assert Path(result["backup_files"]["subuid"]).read_text() == "app:100000:1000\n"
    # shadow's lock files are gone (lckpwdf's .pwd.lock stays, as glibc leaves it), and so are
    # the temporary files
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("subuid.")) == [
        ".pwd.lock", "group", "nsswitch.conf", "passwd", "subgid", "subuid"
    ]


def test_a_missing_file_is_created(tmp_path: Path) -> None:
    paths = setup_files(tmp_path, "", "")
    os.unlink(paths["subuid_path"])
    rhythm(dict(paths, name="app", migrate="never"))
    assert (tmp_path / "subuid").read_text() == "app:100000:65536\n"
    assert os.stat(paths["subuid_path"]).st_mode & 0o777 == 0o644


def test_refuses_when_subordinate_ids_come_from_another_nss_source(tmp_path: Path) -> None:
    paths = setup_files(tmp_path, "", "")
    (tmp_path / "nsswitch.conf").write_text("passwd: files sss\nsubid: sss\n")
    result = lib.run_module("subid", dict(paths, name="app"))
    assert result["failed"] is True
    assert result["msg"] == (
        f"subordinate IDs on this host come from the NSS source 'sss' ('subid:' in {paths['nsswitch_path']}), "
        f"not from {paths['subuid_path']} and {paths['subgid_path']}; change the ranges in that source "
        "(for example the directory server) instead"
    )
    assert (tmp_path / "subuid").read_text() == ""


def test_an_unknown_user_is_a_clear_error(tmp_path: Path) -> None:
    result = lib.run_module("subid", {"name": "nosuchuserxyz"})
    assert result["failed"] is True
    assert (
        result["msg"]
        == "user 'nosuchuserxyz' does not exist (not in /etc/passwd nor the passwd database); create the user first"
    )
    paths = setup_files(tmp_path, "", "")
    result = lib.run_module("subid", dict(paths, name="nosuchuserxyz"))
    assert (
        result["msg"] == f"user 'nosuchuserxyz' does not exist (not in {paths['passwd_path']}); create the user first"
    )


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    paths = setup_files(tmp_path, "", "")
    os.unlink(paths["subuid_path"])
    os.mkdir(paths["subuid_path"])
    result = lib.run_module("subid", dict(paths, name="app"))
    assert result["failed"] is True
    assert result["msg"].startswith(f"cannot read {paths['subuid_path']}: Is a directory")


def test_a_live_shadow_lock_is_honoured_and_a_stale_one_replaced(tmp_path: Path) -> None:
    paths = setup_files(tmp_path, "app:100000:1000\n", "app:100000:65536\n")
    holder = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "subuid.lock").write_text(str(holder.pid))
        result = lib.run_module("subid", dict(paths, name="app", migrate="never"))
        assert result["failed"] is True
        assert (
            result["msg"]
            == f"{paths['subuid_path']}.lock is held by process {holder.pid}; try again when it has finished"
        )
        assert (tmp_path / "subuid").read_text() == "app:100000:1000\n"
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and is replaced
    result = lib.run_module("subid", dict(paths, name="app", migrate="never"))
    assert result["changed"] is True, result
    assert (tmp_path / "subuid").read_text() == "app:100000:65536\n"
    assert not (tmp_path / "subuid.lock").exists()


def test_lckpwdf_is_honoured(tmp_path: Path) -> None:
    paths = setup_files(tmp_path, "app:100000:1000\n", "app:100000:65536\n")
    with open(tmp_path / ".pwd.lock", "w") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        result = lib.run_module("subid", dict(paths, name="app", migrate="never"))
    assert result["failed"] is True
    assert "stayed locked for 15 seconds" in result["msg"]
    assert (tmp_path / "subuid").read_text() == "app:100000:1000\n"


def test_parallel_runs_for_different_users_on_one_file_lose_nothing(tmp_path: Path) -> None:
    names = [f"user{i}" for i in range(4)]
    passwd = PASSWD + "".join(f"{name}:x:{2000 + i}:{2000 + i}::/nonexistent:/bin/sh\n" for i, name in enumerate(names))
    paths = setup_files(tmp_path, "# shared\nbob:100000:65536\n", "", passwd)
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(lambda name: lib.run_module("subid", dict(paths, name=name, migrate="never")), names))
    assert all(result["changed"] is True for result in results), results
    lines = (tmp_path / "subuid").read_text().splitlines()
    assert lines[:2] == ["# shared", "bob:100000:65536"]
    owners = sorted(line.split(":")[0] for line in lines[2:])
    assert owners == names
    info = lib.run_module("subid_info", dict(paths, discover=False))
    assert not [f for f in info["findings"] if f["id"].startswith("subid:overlap")], info["findings"]


# --- the real /etc/subuid and /etc/subgid -------------------------------------------------------


def real_lines(user: lib.User, path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in handle if line.split(":")[0] in (user.name, str(user.uid))]


def test_usermod_adds_ranges_to_the_real_files(make_user) -> None:
    user = make_user("pfsub")
    result = rhythm({"name": user.name, "migrate": "never"}, shared=True)
    assert result["method"] == "usermod"
    for change, kind in zip(result["diff"], ("subuid", "subgid")):
        assert change["before_header"] == f"/etc/{kind}"
        added = [line for line in change["after"].splitlines() if line not in change["before"].splitlines()]
        mine = [line for line in added if line.startswith(f"{user.name}:")]
        assert mine == [f"{user.name}:{result[kind]['changes'][0]['start']}:65536"]
    start = result["subuid"]["changes"][0]["start"]
    assert real_lines(user, "/etc/subuid") == [f"{user.name}:{start}:65536"]
    assert len(real_lines(user, "/etc/subgid")) == 1
    assert lib.sh("getsubids", user.name).stdout.split()[2:] == [str(start), "65536"]


def test_two_ansible_runs_at_once_on_the_real_files(make_user) -> None:
    users = [make_user("pfpar"), make_user("pfpar")]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda u: lib.run_module("subid", {"name": u.name, "migrate": "never"}), users))
    assert all(result["changed"] is True for result in results), results
    ranges = []
    for user in users:
        lines = real_lines(user, "/etc/subuid")
        assert len(lines) == 1, lines
        start, count = lines[0].split(":")[1:]
        ranges.append((int(start), int(start) + int(count)))
    (a_start, a_end), (b_start, b_end) = ranges
    assert a_end <= b_start or b_end <= a_start
    info = lib.run_module("subid_info", {"users": [u.name for u in users], "discover": False})
    for user in users:
        assert not [f for f in info["findings"] if f["user"] == user.name], info["findings"]


def podman_id(user: lib.User, uid: int) -> subprocess.CompletedProcess:
    return lib.run_as(
        user,
        ["podman", "run", "--rm", "--network", "none", "--user", str(uid), lib.IMAGE_BUSYBOX, "id", "-u"],
        check=False,
    )


def test_podman_uses_the_new_ranges_after_the_module_migrates(make_user) -> None:
    user = make_user("pfmig")
    assert lib.run_module("subid", {"name": user.name, "count": 1000, "migrate": "never"})["changed"] is True
    lib.podman_import_busybox(user)
    failing = podman_id(user, 5000)
    assert failing.returncode != 0
    # crun says "cannot setresuid to 5000", runc (used on this machine) "unable to setup user"
    assert "setresuid" in failing.stderr or "unable to setup user" in failing.stderr, failing.stderr

    predicted = lib.run_module("subid", {"name": user.name}, check=True)
    assert predicted["changed"] is True
    assert predicted["migrate"]["would_run"] is True and predicted["migrate"]["ran"] is False
    assert predicted["migrate"]["warning"] == "podman system migrate stops every running container of the user"
    result = lib.run_module("subid", {"name": user.name})
    assert not result.get("failed"), result
    assert result["migrate"]["ran"] is True and result["migrate"]["rc"] == 0, result["migrate"]
    working = podman_id(user, 5000)
    assert working.returncode == 0, working.stderr
    assert working.stdout.strip() == "5000"

    again = lib.run_module("subid", {"name": user.name})
    assert again["changed"] is False
    assert again["migrate"]["ran"] is False
    assert again["migrate"]["reason"] == "the user's ranges did not change"
    forced = lib.run_module("subid", {"name": user.name, "migrate": "always"})
    assert forced["changed"] is True and forced["migrate"]["ran"] is True and forced["migrate"]["rc"] == 0


def test_no_migrate_for_a_user_without_podman_state(make_user) -> None:
    user = make_user("pfnomig")
    # a pause process left by an earlier user with the same (reused) uid would count as state
    lib.sh("pkill", "-KILL", "-U", str(user.uid), check=False)
    while lib.sh("pgrep", "-U", str(user.uid), check=False).returncode == 0:
        lib.sh("sleep", "0.1")
    result = lib.run_module("subid", {"name": user.name})
    assert result["changed"] is True
    assert result["migrate"]["ran"] is False
    assert result["migrate"]["reason"] == "the user has no rootless podman state, so there is nothing to migrate"
    assert not os.path.exists(f"{user.home}/.local/share/containers")


@pytest.mark.parametrize("count", [0, -1, 4294967295])
def test_a_count_out_of_range_is_refused(count: int) -> None:
    result: dict[str, Any] = lib.run_module("subid", {"name": "root", "count": count})
    assert result["failed"] is True
    assert result["msg"] == f"count must be between 1 and 4294967294, not {count}"
