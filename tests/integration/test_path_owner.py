# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""permfix.containers.path_owner through real ansible-playbook, on real trees and users.

Each case follows the rhythm: check mode (predicts the change), apply (changes), check mode
again (nothing to change), apply again (nothing changed). Trees live under /var/tmp (ext4,
with ACL and chattr support) and are removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import permfix_testlib as lib


@pytest.fixture
def tree() -> Iterator[Path]:
    """A root-owned tree: 2 directories with 3 files each, plus the root (9 entries)."""
    base = Path(tempfile.mkdtemp(prefix="permfix-po-", dir="/var/tmp"))
    root = base / lib.random_name("data")
    root.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    os.chmod(root, 0o755)
    for sub in ("a", "b"):
        (root / sub).mkdir(mode=0o755)
        for name in ("f1", "f2", "f3"):
            (root / sub / name).write_text("x")
    try:
        yield root
    finally:
        subprocess.run(["chattr", "-R", "-i", str(base)], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def entries(root: Path) -> list[Path]:
    found = [root]
    for directory, dirs, files in os.walk(root):
        found += [Path(directory) / name for name in sorted(dirs + files)]
    return found


def owners(root: Path) -> dict[str, tuple]:
    return {str(path): (os.lstat(path).st_uid, os.lstat(path).st_gid) for path in entries(root)}


def rhythm(args: dict[str, Any], *, diff: bool = False, before_check: Any | None = None) -> list[dict[str, Any]]:
    """check, apply, check, apply: return the four results after checking changed flags."""
    results = []
    for number, check in enumerate((True, False, True, False)):
        result = lib.run_module("path_owner", args, check=check, diff=diff)
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is (number < 2), (number, result)
        if number == 0 and before_check is not None:
            before_check()
        results.append(result)
    return results


def test_chown_rhythm_with_names_counts_and_diff(tree: Path, make_user) -> None:
    user = make_user()
    (tree / "a" / "f1").chmod(0o4755)  # a set-uid file: the kernel clears the bit on chown
    before = owners(tree)
    results = rhythm(
        {"path": str(tree), "owner": user.name, "group": user.name},
        diff=True,
        before_check=lambda: owners(tree) == before or pytest.fail("check mode changed something"),
    )
    check, apply, check_again, apply_again = results
    assert check["counts"]["to_change"] == 9 and check["counts"]["changed"] == 0
    assert apply["counts"]["to_change"] == 9 and apply["counts"]["changed"] == 9
    assert check["counts"]["entries"] == apply["counts"]["entries"] == 9
    assert check_again["counts"]["to_change"] == 0 and apply_again["counts"]["changed"] == 0
    assert apply["owner_id"] == user.uid and apply["group_id"] == user.gid
    assert apply["summary"] == f"chown {user.uid}:{user.gid} on 9 of 9 entries"
    assert set(owners(tree).values()) == {(user.uid, user.gid)}
    # diff: the same sample in check and apply mode, the root last.
    assert check["diff"] == apply["diff"]
    after_lines = apply["diff"]["after"].splitlines()
    assert len(after_lines) == 9 and after_lines[-1] == f"{tree} {user.uid}:{user.gid}"
    assert apply["diff"]["before"].splitlines()[-1] == f"{tree} 0:0"
    assert "diff" not in check_again
    assert not (tree / "a" / "f1").stat().st_mode & 0o4000


def test_diff_and_sample_are_bounded(tree: Path) -> None:
    for number in range(30):
        (tree / "b" / f"extra{number}").write_text("x")
    result = lib.run_module("path_owner", {"path": str(tree), "owner": "4242", "sample_size": 5}, check=True, diff=True)
    assert result["changed"] and result["counts"]["to_change"] == 39
    assert len(result["sample"]) == 5
    lines = result["diff"]["before"].splitlines()
    assert len(lines) == 6 and lines[-1] == "... and 34 more entries"
    assert all(os.lstat(path).st_uid == 0 for path in entries(tree))


def test_from_owner_changes_only_the_old_owner(tree: Path) -> None:
    for path in (tree / "a", tree / "a" / "f1", tree / "a" / "f2"):
        os.chown(path, 999, 999)
    os.chown(tree / "b" / "f3", 999, 0)  # owner matches, group does not: left alone
    results = rhythm({"path": str(tree), "owner": "4242", "group": "4343", "from_owner": "999:999"})
    check, apply = results[0], results[1]
    assert check["counts"]["to_change"] == 3 and apply["counts"]["changed"] == 3
    assert apply["counts"]["not_from_owner"] == 6
    assert results[3]["counts"]["not_from_owner"] == 6
    now = owners(tree)
    assert {now[str(p)] for p in (tree / "a", tree / "a" / "f1", tree / "a" / "f2")} == {(4242, 4343)}
    assert now[str(tree / "b" / "f3")] == (999, 0)
    assert now[str(tree)] == (0, 0) and now[str(tree / "a" / "f3")] == (0, 0)


def test_recurse_false_changes_only_the_path(tree: Path) -> None:
    results = rhythm({"path": str(tree), "owner": "4242", "recurse": False})
    assert results[0]["counts"]["to_change"] == 1 and results[1]["counts"]["changed"] == 1
    assert results[1]["walked"] is False
    now = owners(tree)
    assert now.pop(str(tree)) == (4242, 0)  # owner only: the group stays
    assert set(now.values()) == {(0, 0)}
    # A single file is fine with recurse false.
    single = tree / "b" / "f2"
    rhythm({"path": str(single), "group": "4343", "recurse": False})
    assert os.lstat(single).st_gid == 4343 and os.lstat(single).st_uid == 0


def test_on_root_mismatch_walks_only_when_the_root_differs(tree: Path) -> None:
    args = {"path": str(tree), "owner": "4242", "group": "4242", "change_policy": "on_root_mismatch"}
    results = rhythm(args)
    assert results[1]["walked"] is True and results[1]["counts"]["changed"] == 9
    assert results[2]["walked"] is False and results[2]["counts"]["entries"] == 1
    # Something below changes behind our back: on_root_mismatch does not look, always does.
    os.chown(tree / "b" / "f1", 0, 0)
    skipped = lib.run_module("path_owner", args)
    assert skipped["changed"] is False and skipped["walked"] is False
    found = lib.run_module("path_owner", dict(args, change_policy="always"))
    assert found["changed"] is True and found["counts"]["changed"] == 1


def getfacl(path: Path) -> list[str]:
    out = lib.sh("getfacl", "--numeric", "--absolute-names", "--omit-header", str(path)).stdout
    return [line.split("#")[0].strip() for line in out.splitlines() if line.strip()]


def test_acl_strategy_grants_access_and_keeps_owners(tree: Path, make_user) -> None:
    user = make_user()
    (tree / "a" / "f3").chmod(0o755)  # executable: rwX gives x too
    os.chmod(tree.parent, 0o755)
    denied = lib.run_as(user, ["touch", str(tree / "a" / "new")], check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    before = owners(tree)

    results = rhythm({"path": str(tree), "owner": user.name, "group": user.name, "strategy": "acl"}, diff=True)

    check, apply = results[0], results[1]
    assert check["counts"]["to_change"] == apply["counts"]["changed"] == 9
    assert owners(tree) == before  # owners untouched
    uid, gid = user.uid, user.gid
    for directory in (tree, tree / "a", tree / "b"):
        acl = getfacl(directory)
        for line in (f"user:{uid}:rwx", f"group:{gid}:rwx", "mask::rwx", f"default:user:{uid}:rwx",
                     f"default:group:{gid}:rwx", "default:mask::rwx", "user::rwx", "other::r-x"):
            assert line in acl, (directory, line, acl)
    plain = getfacl(tree / "a" / "f1")
    assert f"user:{uid}:rw-" in plain and f"group:{gid}:rw-" in plain and "mask::rw-" in plain
    assert f"user:{uid}:rwx" in getfacl(tree / "a" / "f3")
    assert apply["diff"]["after"].splitlines()[-1].startswith(f"{tree} user:{uid}:rwx,group:{gid}:rwx,mask::rwx")
    # The user can now write, and what it creates inherits the default ACL.
    lib.run_as(user, ["touch", str(tree / "a" / "new")])
    created = getfacl(tree / "a" / "new")
    assert f"user:{uid}:rwx" in created and "mask::rw-" in created  # inherited, masked by the create mode
    assert os.lstat(tree / "a" / "new").st_uid == uid
    # A second check run after the user's file appeared still has nothing to do.
    again = lib.run_module(
        "path_owner", {"path": str(tree), "owner": user.name, "group": user.name, "strategy": "acl"}, check=True
    )
    assert again["changed"] is False and again["counts"]["entries"] == 10


def test_immutable_file_is_reported_the_rest_fixed_and_the_root_kept(tree: Path) -> None:
    locked = tree / "b" / "f2"
    probe = subprocess.run(["chattr", "+i", str(locked)], capture_output=True, text=True, check=False)
    assert probe.returncode == 0, f"chattr +i is not supported here: {probe.stderr}"
    args = {"path": str(tree), "owner": "4242", "group": "4242"}
    check = lib.run_module("path_owner", args, check=True)
    assert check["changed"] is True and not check.get("failed")  # check mode cannot know about +i
    result = lib.run_module("path_owner", args)
    assert result["failed"] and result["changed"] is True
    assert str(locked) in result["msg"] and "immutable" in result["msg"]
    assert "7 of 9 entries to change were changed" in result["msg"]
    assert "left unchanged" in result["msg"]
    now = owners(tree)
    assert now.pop(str(locked)) == (0, 0) and now.pop(str(tree)) == (0, 0)
    assert set(now.values()) == {(4242, 4242)}
    lib.sh("chattr", "-i", str(locked))
    final = lib.run_module("path_owner", args)
    assert final["changed"] and final["counts"]["changed"] == 2 and not final.get("failed")


def test_unprivileged_caller_gets_a_clear_failure(tree: Path, make_user) -> None:
    user = make_user()
    os.chmod(tree.parent, 0o755)
    # as an ordinary user, with the system python (the test venv is not readable by others)
    play = {
        "hosts": "localhost", "gather_facts": False, "become": True, "become_user": user.name,
        "become_method": "ansible.builtin.su", "vars": {"ansible_python_interpreter": "/usr/bin/python3"},
        "tasks": [{"name": "fix", "permfix.containers.path_owner": {"path": str(tree), "owner": user.name},
                   "ignore_errors": True}],
    }
    result = lib.run_playbook([play]).task("fix")
    assert result["failed"]
    assert "operation not permitted" in result["msg"] and "could not be changed" in result["msg"]
    assert set(owners(tree).values()) == {(0, 0)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"owner": "4242", "path": "{tree}/missing"}, "{tree}/missing does not exist"),
        ({"owner": "4242", "path": "{tree}/a/f1"}, "is a regular file, not a directory: set recurse to false"),
        ({"owner": "no-such-user-pf", "path": "{tree}"}, "user 'no-such-user-pf' does not exist on this host"),
        ({"group": "no-such-group-pf", "path": "{tree}"}, "group 'no-such-group-pf' does not exist on this host"),
        ({"owner": "4294967296", "path": "{tree}"}, "user id 4294967296 is out of range"),
        ({"owner": "-1", "path": "{tree}"}, "user id -1 is out of range"),
        ({"owner": "1", "from_owner": "1:2:3", "path": "{tree}"}, "more than one ':'"),
        ({"owner": "1", "path": "relative/dir"}, "path must be an absolute path"),
        ({"path": "{tree}"}, "one of the following is required: owner, group"),
        ({"owner": "1", "path": "{tree}", "sample_size": -2}, "sample_size must be 0 or more"),
    ],
)
def test_bad_input_fails_with_a_clear_message(tree: Path, args: dict[str, Any], message: str) -> None:
    args = {key: value.format(tree=tree) if isinstance(value, str) else value for key, value in args.items()}
    result = lib.run_module("path_owner", args)
    assert result["failed"] and message.format(tree=tree) in result["msg"], result.get("msg")
    assert "Traceback" not in str(result)
    assert set(owners(tree).values()) == {(0, 0)}


def test_protected_paths_are_refused(make_user, tree: Path) -> None:
    # Real system paths in check mode only (it changes nothing even if refusal regressed).
    for path, fragment in (
        ("/etc", "/etc holds the system's configuration"),
        ("/var/lib/docker/volumes", "container storage"),
    ):
        result = lib.run_module("path_owner", {"path": path, "owner": "4242"}, check=True)
        assert result["failed"] and f"refusing to change {path}" in result["msg"] and fragment in result["msg"]
    # Apply mode on a test user's home directory itself.
    user = make_user()
    result = lib.run_module("path_owner", {"path": user.home, "owner": "4242"})
    assert result["failed"] and "home directory itself" in result["msg"]
    assert os.lstat(user.home).st_uid == user.uid
    link = tree / "link"
    link.symlink_to(tree / "a")
    result = lib.run_module("path_owner", {"path": str(link), "owner": "4242"})
    assert result["failed"] and "is a symbolic link" in result["msg"]
