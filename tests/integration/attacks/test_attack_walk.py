# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on the ownership walker (path_owner's engine): every trap aims at ``out/``, which must
keep its owners, modes and ACLs, checked with a fingerprint taken before and after.

The traps: hard links of every file type, file and directory bind mounts (in private mount
namespaces), mounts made and directories renamed while the walk runs, a directory swapped with a
symbolic link in a loop while the walk runs, names that are not UTF-8 or hold a newline, a
protected directory bind-mounted as (or below) the root. Real module runs where the trap can be
set up before the run; the walker's functions with its test hook where the race must be timed.
Protected system directories are only ever scanned (a scan changes nothing).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._engines.walk import (
    MAX_WORKERS,
    OwnershipError,
    Target,
    WalkOptions,
    fix,
    scan,
    usable_cpus,
)

from .conftest import Area, in_namespace, module_in_namespace, mount_bind

UID = 4242
GID = 4343
TARGET = Target(uid=UID, gid=GID)
ARGS = {"owner": str(UID), "group": str(GID)}


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def owners_below(top: Path) -> set[tuple[int, int]]:
    found = {owner(top)}
    for directory, dirs, files in os.walk(top):
        found.update(owner(Path(directory) / name) for name in dirs + files)
    return found


def small_tree(top: Path, dirs: int = 4, files: int = 3) -> None:
    for number in range(dirs):
        sub = top / f"d{number}"
        sub.mkdir()
        for index in range(files):
            (sub / f"f{index}").write_text("x")


# -- 1. file bind mounts -------------------------------------------------------------------------


@pytest.mark.parametrize("one_file_system", [True, False])
def test_a_file_bind_mounted_into_the_tree_is_never_changed(area: Area, one_file_system: bool) -> None:
    (area.out / "passwd").write_text("root:x:0:0")
    (area.tree / "passwd").touch()
    (area.tree / "plain").touch()
    area.seal()
    setup = [["mount", "--bind", str(area.out / "passwd"), str(area.tree / "passwd")]]
    args = dict(ARGS, path=str(area.tree), one_file_system=one_file_system)

    checked = module_in_namespace(setup, args, check=True)
    done = module_in_namespace(setup, args)

    for result in (checked, done):
        assert not result.get("failed"), result
        assert result["counts"]["skipped_mounts"] == 1 and result["counts"]["to_change"] == 2
        assert [item["path"] for item in result["skipped_entries"]["mounts"]] == [str(area.tree / "passwd")]
    assert done["counts"]["changed"] == 2 and owner(area.tree / "plain") == (UID, GID)
    area.assert_outside_untouched()


# -- 2. hard links of every file type --------------------------------------------------------------


def plant_hard_links(area: Area) -> list[str]:
    """A name in the tree for a regular file, a FIFO, a socket, a symbolic link and (when mknod is
    allowed) a device node of ``out``; returns the kinds planted."""
    kinds = ["regular file", "FIFO", "socket", "symbolic link"]
    os.link(area.out / "secret", area.tree / "secret")
    os.mkfifo(area.out / "ctl")
    os.link(area.out / "ctl", area.tree / "ctl")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(area.out / "sock"))
    server.close()  # the socket file stays
    os.link(area.out / "sock", area.tree / "sock")
    (area.out / "lnk").symlink_to("secret")
    os.link(area.out / "lnk", area.tree / "lnk", follow_symlinks=False)  # ln -P
    try:
        os.mknod(area.out / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.link(area.out / "null", area.tree / "null")
        kinds.append("character device")
    except PermissionError:
        pass  # no mknod here (a container without CAP_MKNOD)
    (area.tree / "own").write_text("x")
    return kinds


def test_hard_links_of_every_file_type_are_left_alone(area: Area) -> None:
    kinds = plant_hard_links(area)
    area.seal()
    args = dict(ARGS, path=str(area.tree))

    checked = module_in_namespace([], args, check=True)
    done = module_in_namespace([], args)

    for result in (checked, done):
        assert not result.get("failed"), result
        assert result["counts"]["skipped_hardlinks"] == 4  # the device node counts as a device
        assert sorted(item["type"] for item in result["skipped_entries"]["hardlinks"]) == sorted(kinds[:4])
        assert result["counts"]["to_change"] == 2  # the tree and "own"
    assert owner(area.tree / "own") == (UID, GID) and owner(area.tree) == (UID, GID)
    area.assert_outside_untouched()


def test_hard_links_get_no_acl_either(area: Area) -> None:
    plant_hard_links(area)
    area.seal()
    done = module_in_namespace([], dict(ARGS, path=str(area.tree), strategy="acl"))
    assert not done.get("failed"), done
    assert done["counts"]["skipped_hardlinks"] == 3  # ACLs do not apply to symbolic links at all
    area.assert_outside_untouched()


# -- 3. mounts made while the walk runs ----------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_mounts_made_while_the_walk_runs_are_not_crossed_nor_changed(area: Area, workers: int) -> None:
    small_tree(area.tree, dirs=6)
    for number in range(6):
        (area.tree / f"d{number}" / "conf").touch()
    area.seal()
    tree, out = area.tree, area.out

    def walk() -> dict:
        done: list[str] = []

        def hook(event: str, path: str) -> None:
            if event == "descend" and not done:  # before the first subdirectory is examined
                done.append(path)
                mount_bind(out / "sub", tree / "d3")
                for number in (0, 1, 2, 4, 5):
                    mount_bind(out / "secret", tree / f"d{number}" / "conf")

        report = fix(str(tree), TARGET, WalkOptions(workers=workers, parallel_after=0, hook=hook))
        return {"counts": report.counts, "mounts": sorted(item["path"] for item in report.mounts.items)}

    result = in_namespace(walk)

    assert result["mounts"] == sorted([str(tree / "d3")] + [str(tree / f"d{n}" / "conf") for n in (0, 1, 2, 4, 5)])
    assert result["counts"]["skipped_mounts"] == 6 and result["counts"]["failed"] == 0
    area.assert_outside_untouched()


# -- 4. a paused listing with helpers ---------------------------------------------------------


def test_a_paused_listing_is_read_once_by_a_parallel_walk(area: Area) -> None:
    """A directory with more subdirectories than fit in memory is read in chunks; a helper forked
    while the listing is paused must not rewind it (counts would be inflated)."""
    for number in range(60):
        sub = area.tree / f"s{number:02}"
        sub.mkdir()
        (sub / "f").touch()
    for number in range(200):
        (area.tree / f"f{number}").touch()
    expected = 1 + 60 * 2 + 200

    one = scan(str(area.tree), TARGET, WalkOptions(workers=1, chunk=8))
    many = scan(str(area.tree), TARGET, WalkOptions(workers=2, parallel_after=0, chunk=8))
    done = fix(str(area.tree), TARGET, WalkOptions(workers=2, parallel_after=0, chunk=8))

    assert one.counts["entries"] == expected and one.counts["to_change"] == expected
    assert many.counts == one.counts
    assert done.counts["changed"] == expected and done.counts["entries"] == expected
    assert owners_below(area.tree) == {(UID, GID)}


# -- 5. names that are not UTF-8 ---------------------------------------------------------------


def test_names_that_are_not_utf8_or_hold_a_newline_are_reported_readably(area: Area) -> None:
    raw = os.fsencode(area.tree)
    with open(raw + b"/caf\xe9", "w", encoding="utf-8") as handle:
        handle.write("x")
    os.mkdir(raw + b"/dir\xff")
    with open(raw + b"/dir\xff/new\nline", "w", encoding="utf-8") as handle:
        handle.write("x")
    args = dict(ARGS, path=str(area.tree), sample_size=10)

    report = scan(str(area.tree), TARGET, WalkOptions(sample_size=10))
    for item in report.changes.items:
        item["path"].encode("utf-8")  # no surrogate escapes left
    shown = sorted(item["path"] for item in report.changes.items)
    assert f"{area.tree}/caf\\xe9" in shown and f"{area.tree}/dir\\xff/new\nline" in shown

    for check in (True, False, False):
        result = module_in_namespace([], args, check=check)
        assert not result.get("failed"), result
    assert result["counts"]["to_change"] == 0 and owners_below(area.tree) == {(UID, GID)}


# -- 6. renames while the walk runs -----------------------------------------------------------


def test_a_subtree_moved_into_a_walked_directory_defers_the_root(area: Area) -> None:
    tree = area.tree
    for name in ("a", "b", "c"):
        (tree / name / "inner").mkdir(parents=True)
        (tree / name / "inner" / "f").write_text("x")
    seen: list[str] = []
    moved: list[Path] = []

    def hook(event: str, path: str) -> None:
        if event != "descend" or os.path.dirname(path) != str(tree):
            return
        seen.append(path)
        if len(seen) == 2:  # the first one is done: move the one not reached yet into it
            rest = next(name for name in ("a", "b", "c") if str(tree / name) not in seen)
            os.rename(tree / rest, Path(seen[0]) / rest)
            moved.append(Path(seen[0]) / rest)

    options = WalkOptions(workers=1, policy="on_root_mismatch")
    report = fix(str(tree), TARGET, WalkOptions(workers=1, policy="on_root_mismatch", hook=hook))

    assert moved and owner(moved[0]) == (0, 0)  # never reached in this run
    assert not report.complete and report.counts["changed_while_walked"] >= 1
    assert owner(tree) == (0, 0) and report.root_deferred
    assert any("incomplete" in text for text in report.problems())
    again = fix(str(tree), TARGET, options)  # the root still differs: on_root_mismatch walks again
    assert again.complete and owners_below(tree) == {(UID, GID)}


# -- 7. a directory swapped with a symbolic link in a loop ----------------------------------------


def _flip(tree: str, stop: Any) -> None:
    """Swap tree/sw between a directory and a symbolic link to ``out`` until told to stop."""
    while not stop.is_set():
        for first, second in (("sw", ".park"), (".lnk", "sw"), ("sw", ".lnk"), (".park", "sw")):
            try:
                os.rename(os.path.join(tree, first), os.path.join(tree, second))
            except OSError:
                pass


@pytest.mark.parametrize("workers", [1, 2])
def test_a_directory_swapped_with_a_symlink_during_the_walk_never_leads_outside(area: Area, workers: int) -> None:
    tree = area.tree
    small_tree(tree, dirs=6, files=5)
    (tree / "sw").mkdir()
    small_tree(tree / "sw", dirs=4, files=5)
    (tree / ".lnk").symlink_to(area.out)
    area.seal()
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    flipper = context.Process(target=_flip, args=(str(tree), stop))
    flipper.start()
    try:
        for _run in range(20):
            for step in (scan, fix):
                step(str(tree), TARGET, WalkOptions(workers=workers, parallel_after=0))
    finally:
        stop.set()
        flipper.join(10)
    assert flipper.exitcode == 0
    area.assert_outside_untouched()


# -- protected directories seen through mounts ---------------------------------------------------


def test_a_protected_directory_bind_mounted_as_the_root_is_refused(area: Area) -> None:
    point = area.tree / "x"
    point.mkdir()

    def attempt() -> str:
        mount_bind(Path("/etc"), point)
        try:
            scan(str(point), TARGET)  # a scan: even a regression changes nothing in /etc
        except OwnershipError as exc:
            return str(exc)
        return "scanned"

    assert "it is a mount of /etc" in in_namespace(attempt)
    checked = module_in_namespace([["mount", "--bind", "/etc", str(point)]], dict(ARGS, path=str(point)), check=True)
    assert checked.get("failed") and "it is a mount of /etc" in checked["msg"]


def test_a_protected_directory_mounted_below_is_not_crossed_even_when_asked(area: Area) -> None:
    (area.tree / "x").mkdir()
    (area.tree / "mine").touch()

    def attempt() -> dict:
        mount_bind(Path("/etc"), area.tree / "x")
        report = scan(str(area.tree), TARGET, WalkOptions(one_file_system=False))
        return {"counts": report.counts, "mounts": report.mounts.items}

    result = in_namespace(attempt)
    assert result["counts"]["skipped_mounts"] == 1, result
    assert "a mount of /etc" in result["mounts"][0]["reason"]
    assert result["counts"]["entries"] == 3  # the tree, mine, x: nothing of /etc


# -- limits --------------------------------------------------------------------------------------


def test_running_out_of_descriptors_gives_the_limits_and_ulimit_advice(area: Area) -> None:
    here = area.tree
    for level in range(40):
        here = here / f"l{level}"
    here.mkdir(parents=True)

    def attempt() -> str:
        resource.setrlimit(resource.RLIMIT_NOFILE, (24, 24))
        try:
            fix(str(area.tree), TARGET, WalkOptions(workers=1, max_open_fds=1000))
        except OwnershipError as exc:
            return str(exc)
        return "walked"

    message = in_namespace(attempt)
    assert "ulimit -n" in message and "soft 24, hard 24" in message, message
    assert owner(area.tree) == (0, 0)


def test_explicit_workers_are_capped_and_the_cap_is_noted(area: Area) -> None:
    small_tree(area.tree, dirs=8, files=1)
    for number in range(8):
        small_tree(area.tree / f"d{number}", dirs=3, files=1)  # helpers open these
    pids = area.base / "pids"

    def hook(event: str, path: str) -> None:
        if event == "open":
            with open(pids, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")
            time.sleep(0.05)  # keep each helper busy, so that an uncapped walk starts another one

    report = fix(str(area.tree), TARGET, WalkOptions(workers=64, parallel_after=0, hook=hook))

    assert len(set(pids.read_text().split())) <= min(MAX_WORKERS, usable_cpus())
    assert report.complete and owners_below(area.tree) == {(UID, GID)}
    assert any("workers=64 was lowered" in note for note in report.notes), report.notes
