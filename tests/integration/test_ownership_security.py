# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ownership engine against real trees, as root: it must never leave the tree.

Every case builds a tree under /var/tmp owned by root, with something outside it that an
unsafe walker would reach, runs the engine and checks the outside thing is untouched.

Containment: a regression must not damage the machine running the tests. Every trap points
inside the test area, the area sits below PAD_DEPTH directories owned by the test (an
escape through ".." lands there, and every test checks they are untouched), and the
refusal of real system paths is tested with ``scan``, which never changes anything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

import permfix_testlib as lib
from ansible_collections.permfix.containers.plugins.module_utils._engines.walk import (
    OwnershipError,
    Target,
    WalkOptions,
    fix,
    scan,
)

UID = 4242
GID = 4343
TARGET = Target(uid=UID, gid=GID)
PAD_DEPTH = 64


@pytest.fixture
def area() -> Iterator[Path]:
    """A fresh directory under /var/tmp (ext4 here) with ``tree/`` and ``outside/`` in it.

    It lies PAD_DEPTH directories below the fixture's own top directory; after the test,
    none of those may have changed owner.
    """
    base = Path(tempfile.mkdtemp(prefix="permfix-sec-", dir="/var/tmp"))
    here = base
    pads = [base]
    for level in range(PAD_DEPTH):
        here = here / f"pad{level}"
        pads.append(here)
    here.mkdir(parents=True)
    (here / "tree").mkdir()
    (here / "outside").mkdir()
    try:
        yield here
        escaped = [str(pad) for pad in pads if owner(pad) != (0, 0)]
        assert not escaped, f"the walk changed directories above the test area: {escaped}"
    finally:
        subprocess.run(["chattr", "-R", "-i", str(base)], capture_output=True, check=False)
        for mount in sorted(_mounts_below(base), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def _mounts_below(base: Path) -> list:
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split(" ")[4].replace("\\040", " ")
            if point.startswith(str(base) + "/"):
                found.append(point)
    return found


def owner(path: Path) -> tuple:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def make_tree(root: Path, dirs: int = 3, files: int = 4) -> list:
    """A small tree of directories and files owned by root; returns every path in it."""
    made = []
    for number in range(dirs):
        sub = root / f"d{number}" / "inner"
        sub.mkdir(parents=True)
        made += [sub.parent, sub]
        for index in range(files):
            for where in (sub.parent, sub):
                item = where / f"f{index}"
                item.write_text("x")
                made.append(item)
    return made


def all_entries(root: Path) -> list:
    out = [root]
    for directory, dirs, files in os.walk(root):
        out += [Path(directory) / name for name in dirs + files]
    return out


# -- symbolic links ------------------------------------------------------------------------------


def test_symlinks_are_changed_themselves_never_followed(area: Path) -> None:
    tree = area / "tree"
    make_tree(tree)
    secret = area / "outside" / "secret"
    secret.write_text("root only")
    secret_dir = area / "outside" / "dir"
    secret_dir.mkdir()
    (secret_dir / "inside").write_text("x")
    (tree / "d0" / "to-file").symlink_to(secret)
    (tree / "d1" / "inner" / "to-dir").symlink_to(secret_dir)
    (tree / "d2" / "to-top").symlink_to(area.parent)

    report = fix(str(tree), TARGET)

    assert report.counts["failed"] == 0 and report.complete
    for path in (secret, secret_dir, secret_dir / "inside", area / "outside"):
        assert owner(path) == (0, 0), path
    # The links themselves were changed (lchown), like chown -R does.
    for link in (tree / "d0" / "to-file", tree / "d1" / "inner" / "to-dir", tree / "d2" / "to-top"):
        assert owner(link) == (UID, GID)
    assert all(owner(path) == (UID, GID) for path in all_entries(tree))
    assert owner(area.parent) == (0, 0)


def test_root_that_is_a_symlink_is_refused(area: Path) -> None:
    link = area / "tree" / "link"
    link.symlink_to(area / "outside")
    with pytest.raises(OwnershipError, match="is a symbolic link"):
        fix(str(link), TARGET)
    assert owner(area / "outside") == (0, 0)


def test_symlink_in_the_parent_path_leading_to_a_system_directory_is_refused(area: Path) -> None:
    # scan: even if the refusal regressed, nothing would change under /usr.
    (area / "tree" / "usr").symlink_to("/usr")
    with pytest.raises(OwnershipError, match="/usr/share is inside /usr"):
        scan(str(area / "tree" / "usr" / "share"), TARGET)


# -- a directory swapped during the walk ---------------------------------------------------------


class Marker:
    """What a hook did, kept in a file: the hook may run in a helper process of a parallel walk."""

    def __init__(self, area: Path) -> None:
        self.file = area / f"hook-{len(list(area.glob('hook-*')))}"

    def add(self, text: str) -> None:
        with open(self.file, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")

    @property
    def done(self) -> list:
        return self.file.read_text(encoding="utf-8").splitlines() if self.file.exists() else []


# Every test with a hook runs twice: in one process, and with helper processes from the first
# entry on (parallel_after=0), so the directories below the first level are walked by helpers.
WALKS = {
    "one-process": {"workers": 1},
    "helpers": {"workers": 3, "parallel_after": 0},
}


@pytest.fixture(params=sorted(WALKS))
def walk(request: pytest.FixtureRequest) -> dict:
    return WALKS[request.param]


def swap_hook(event: str, victim: Path, replacement: Callable[[Path], None]) -> Callable[[str, str], None]:
    """A hook that, the first time ``event`` fires for ``victim``, replaces it."""
    area = next(parent for parent in victim.parents if parent.name == "tree").parent
    marker = Marker(area)

    def hook(seen: str, path: str) -> None:
        if seen == event and path == str(victim) and not marker.done:
            marker.add(path)
            victim.rename(victim.with_name(victim.name + ".moved"))
            replacement(victim)

    hook.marker = marker  # type: ignore[attr-defined]
    return hook


def test_directory_swapped_for_a_symlink_between_lstat_and_open_is_not_followed(area: Path, walk: dict) -> None:
    tree = area / "tree"
    make_tree(tree)
    outside = area / "outside"
    (outside / "precious").write_text("x")
    victim = tree / "d1"
    hook = swap_hook("open", victim, lambda path: path.symlink_to(outside))

    report = fix(str(tree), TARGET, WalkOptions(hook=hook, **walk))

    assert hook.marker.done == [str(victim)]  # the swap really happened between lstat and open
    assert owner(outside) == (0, 0) and owner(outside / "precious") == (0, 0)
    assert report.counts["failed"] == 1 and not report.complete
    failure = report.failures.items[0]
    assert failure["path"] == str(victim) and "replaced during the walk" in failure["error"]
    # The rest of the tree was changed, the root last and only when all went well: not now.
    assert all(owner(path) == (UID, GID) for path in all_entries(tree / "d0"))
    assert owner(tree) == (0, 0) and report.root_deferred
    # The next run sees the symlink as what it is now: it changes the link, not its target.
    again = fix(str(tree), TARGET)
    assert again.counts["failed"] == 0 and owner(tree) == (UID, GID)
    assert owner(victim) == (UID, GID) and owner(outside) == (0, 0)


def test_directory_swapped_for_a_symlink_before_lstat_is_handled_as_a_link(area: Path, walk: dict) -> None:
    tree = area / "tree"
    make_tree(tree)
    outside = area / "outside"
    victim = tree / "d2" / "inner"
    hook = swap_hook("descend", victim, lambda path: path.symlink_to(outside))

    report = fix(str(tree), TARGET, WalkOptions(hook=hook, **walk))

    assert hook.marker.done
    assert owner(outside) == (0, 0)
    assert owner(victim) == (UID, GID)  # the link itself
    # d2 changed while it was walked: the root waits for a run that finds the tree quiet
    assert report.counts["failed"] == 0 and report.counts["changed_while_walked"] == 1
    assert owner(tree) == (0, 0) and report.root_deferred and not report.complete
    again = fix(str(tree), TARGET, WalkOptions(**walk))
    assert again.complete and owner(tree) == (UID, GID) and owner(outside) == (0, 0)


def test_directory_swapped_for_another_directory_is_not_entered(area: Path, walk: dict) -> None:
    tree = area / "tree"
    make_tree(tree)
    other = area / "outside" / "other"
    other.mkdir()
    (other / "precious").write_text("x")
    victim = tree / "d0"
    hook = swap_hook("open", victim, other.rename)

    report = fix(str(tree), TARGET, WalkOptions(hook=hook, **walk))

    assert hook.marker.done
    assert owner(victim / "precious") == (0, 0)  # the directory moved in was not walked
    assert owner(victim) == (0, 0)
    assert any("replaced by another directory" in item["error"] for item in report.failures.items)
    assert owner(tree) == (0, 0) and not report.complete


# -- hard links ---------------------------------------------------------------------------------


def test_hard_link_to_a_file_outside_is_skipped_and_reported(area: Path) -> None:
    tree = area / "tree"
    make_tree(tree)
    outside_file = area / "outside" / "shadow-like"
    outside_file.write_text("secret")
    os.link(outside_file, tree / "d0" / "inner" / "innocent")

    check = scan(str(tree), TARGET)
    report = fix(str(tree), TARGET)

    for result in (check, report):
        assert result.counts["skipped_hardlinks"] == 1
        assert result.hardlinks.items == [
            {"path": str(tree / "d0" / "inner" / "innocent"), "type": "regular file", "links": 2, "owner": "0:0"}
        ]
        assert any("hard link" in text for text in result.problems())
    assert owner(outside_file) == (0, 0)
    assert report.counts["failed"] == 0 and owner(tree) == (UID, GID)
    assert check.counts["to_change"] == report.counts["changed"]
    # allowed on request: then the shared inode is changed (once, and predicted once)
    allow = WalkOptions(allow_hardlinks=True)
    os.link(outside_file, tree / "d1" / "second-name")
    assert scan(str(tree), TARGET, allow).counts["to_change"] == 1
    assert fix(str(tree), TARGET, allow).counts["changed"] == 1
    assert owner(outside_file) == (UID, GID)


# -- dangerous roots -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/", "refusing to change /"),
        ("/etc", "/etc holds the system's configuration"),
        ("/usr/lib", "inside /usr"),
        ("/lib64", "libraries"),
        ("/var/lib/docker", "container storage"),
        ("/var/lib/containers/storage", "container storage"),
        ("/proc/self", "process filesystem"),
        ("/run", "running system"),
        ("/var/run", "running system"),
        ("/root", "system directory"),
    ],
)
def test_dangerous_roots_are_refused(path: str, message: str) -> None:
    # scan and fix refuse through the same check; scan keeps a regression harmless here.
    with pytest.raises(OwnershipError, match=message) as caught:
        scan(path, TARGET)
    assert "Give the directory the container actually mounts" in str(caught.value)


def test_a_home_directory_itself_is_refused_but_not_below_it(make_user) -> None:
    # fix() on the test user's own directories: a regression would only touch them.
    user = make_user()
    with pytest.raises(OwnershipError, match="home directory itself"):
        fix(user.home, TARGET)
    assert owner(Path(user.home)) == (user.uid, user.gid)
    storage = Path(user.home) / ".local" / "share" / "containers"
    storage.mkdir(parents=True)
    with pytest.raises(OwnershipError, match="container storage"):
        fix(str(storage), TARGET)
    assert owner(storage) == (0, 0)
    data = Path(user.home) / "data"
    data.mkdir()
    assert fix(str(data), TARGET).counts["changed"] == 1


# -- other filesystems -----------------------------------------------------------------------------


def test_a_tmpfs_mounted_below_is_not_crossed(area: Path) -> None:
    tree = area / "tree"
    make_tree(tree)
    mnt = tree / "d1" / "inner" / "mnt"
    mnt.mkdir()
    lib.sh("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "permfix-test", str(mnt))
    (mnt / "on-tmpfs").write_text("x")

    check = scan(str(tree), TARGET)
    report = fix(str(tree), TARGET)

    for result in (check, report):
        assert result.counts["skipped_mounts"] == 1
        assert result.mounts.items == [{"path": str(mnt), "reason": "another filesystem (one_file_system)"}]
    assert owner(mnt) == (0, 0) and owner(mnt / "on-tmpfs") == (0, 0)
    assert report.counts["failed"] == 0 and owner(tree) == (UID, GID)
    # Asked to cross: it does.
    crossed = fix(str(tree), TARGET, WalkOptions(one_file_system=False))
    assert crossed.counts["changed"] == 2 and owner(mnt / "on-tmpfs") == (UID, GID)


def test_a_bind_mount_of_the_same_filesystem_is_not_crossed(area: Path) -> None:
    tree = area / "tree"
    make_tree(tree)
    outside = area / "outside"
    (outside / "precious").write_text("x")
    point = tree / "d0" / "bound"
    point.mkdir()
    lib.sh("mount", "--bind", str(outside), str(point))
    assert os.stat(point).st_dev == os.stat(tree).st_dev  # same filesystem: st_dev cannot tell

    report = fix(str(tree), TARGET)

    assert report.counts["skipped_mounts"] == 1
    assert report.mounts.items == [{"path": str(point), "reason": "another mount (one_file_system)"}]
    assert owner(outside) == (0, 0) and owner(outside / "precious") == (0, 0)
    assert owner(tree) == (UID, GID)


# -- special files -------------------------------------------------------------------------------


def _walk_blocked(signum: int, frame: object) -> None:
    raise TimeoutError(f"the walk blocked (signal {signum})")


def test_fifos_sockets_and_device_nodes_are_never_opened(area: Path) -> None:
    tree = area / "tree"
    make_tree(tree, dirs=1)
    fifo = tree / "d0" / "fifo"
    os.mkfifo(fifo)
    sock_path = tree / "d0" / "sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    short_dir = tempfile.mkdtemp(prefix="pfs-", dir="/var/tmp")  # socket paths are limited to 108 bytes
    listener.bind(os.path.join(short_dir, "s"))
    os.rename(os.path.join(short_dir, "s"), sock_path)
    os.rmdir(short_dir)
    listener.listen(1)
    device = tree / "d0" / "null-device"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    block = tree / "d0" / "loop-device"
    os.mknod(block, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    # A writer that blocks until somebody opens the FIFO for reading.
    writer = subprocess.Popen(["sh", "-c", f"echo opened > '{fifo}'"])
    previous = signal.signal(signal.SIGALRM, _walk_blocked)
    signal.alarm(60)
    try:
        report = fix(str(tree), TARGET)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    try:
        assert writer.poll() is None, "the FIFO was opened by the walk"
        # A socket and a FIFO are changed themselves (never opened); device nodes are left alone.
        assert owner(fifo) == (UID, GID) and owner(sock_path) == (UID, GID)
        assert owner(device) == (0, 0) and owner(block) == (0, 0)
        assert report.counts["skipped_devices"] == 2
        assert sorted(item["path"] for item in report.devices.items) == sorted([str(device), str(block)])
        assert listener.fileno() >= 0 and report.counts["failed"] == 0
    finally:
        writer.kill()
        writer.wait()
        listener.close()


def test_a_device_node_as_the_root_is_refused(area: Path) -> None:
    device = area / "tree" / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(OwnershipError, match="device node"):
        fix(str(device), TARGET, WalkOptions(recurse=False))
    assert owner(device) == (0, 0)


# -- bad input and entries that cannot be changed --------------------------------------------------


def test_missing_path_and_file_instead_of_directory(area: Path) -> None:
    with pytest.raises(OwnershipError, match="does not exist$"):
        fix(str(area / "tree" / "missing"), TARGET)
    with pytest.raises(OwnershipError, match="parent directory .* is missing"):
        fix(str(area / "nothing" / "here"), TARGET)
    (area / "tree" / "file").write_text("x")
    with pytest.raises(OwnershipError, match="is a regular file, not a directory: set recurse to false"):
        fix(str(area / "tree" / "file"), TARGET)
    with pytest.raises(OwnershipError, match="a component of .* is not a directory"):
        fix(str(area / "tree" / "file" / "below"), TARGET)
    assert owner(area / "tree" / "file") == (0, 0)
    # With recurse false a single file is fine.
    assert fix(str(area / "tree" / "file"), TARGET, WalkOptions(recurse=False)).counts["changed"] == 1
    assert owner(area / "tree" / "file") == (UID, GID)


def test_an_immutable_file_is_reported_and_the_rest_is_fixed(area: Path, walk: dict) -> None:
    tree = area / "tree"
    made = make_tree(tree)
    locked = tree / "d1" / "inner" / "f2"
    probe = subprocess.run(["chattr", "+i", str(locked)], capture_output=True, text=True, check=False)
    assert probe.returncode == 0, f"this filesystem does not support chattr +i: {probe.stderr}"

    report = fix(str(tree), TARGET, WalkOptions(**walk))

    assert report.counts["failed"] == 1
    assert report.failures.items[0]["path"] == str(locked)
    assert "immutable" in report.failures.items[0]["error"]
    assert owner(locked) == (0, 0)
    assert all(owner(path) == (UID, GID) for path in made if path != locked)
    # The root stays as it was so that the next run finds the tree again.
    assert owner(tree) == (0, 0) and "left unchanged" in (report.root_deferred or "")
    lib.sh("chattr", "-i", str(locked))
    again = fix(str(tree), TARGET, WalkOptions(policy="on_root_mismatch"))
    assert again.walked and again.counts["changed"] == 2 and owner(tree) == (UID, GID)


def test_unlistable_directory_is_reported_for_an_unprivileged_caller(area: Path, make_user) -> None:
    """Run the engine as an ordinary user: what it may not read is reported, not a traceback."""
    user = make_user()
    tree = area / "tree"
    make_tree(tree, dirs=2)
    for parent in [tree, area] + [p for p in area.parents if str(p).startswith("/var/tmp/permfix-sec-")]:
        os.chmod(parent, 0o755)
    for path in all_entries(tree):
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
    closed = tree / "d1"
    os.chown(closed, 0, 0)
    os.chmod(closed, 0o700)
    program = (
        "import sys, json; sys.path.insert(0, sys.argv[1]);"
        "from ansible_collections.permfix.containers.plugins.module_utils._engines.walk import scan, Target;"
        f"r = scan(sys.argv[2], Target(uid={user.uid}, gid={user.gid}));"
        "print(json.dumps(r.as_dict()))"
    )
    proc = lib.run_as(user, ["/usr/bin/python3", "-c", program, str(lib.collections_dir()), str(tree)])
    data = json.loads(proc.stdout)
    assert data["complete"] is False
    # not root: the advice to run as root is given (root never gets it)
    assert data["failures"] == [
        {"path": str(closed), "error": "cannot open the directory: permission denied (run as root: become: true)"}
    ]


# -- bounded descriptors on a deep tree ------------------------------------------------------------


def deep_chain(root: Path, depth: int) -> list:
    chain = []
    current = root
    for level in range(1, depth + 1):
        current = current / f"d{level}"
        current.mkdir()
        (current / "file").write_text("x")
        chain.append(current)
    return chain


def test_deep_tree_with_few_descriptors_is_fully_fixed(area: Path) -> None:
    tree = area / "tree"
    chain = deep_chain(tree, 60)
    options = WalkOptions(max_open_fds=6)
    check = scan(str(tree), TARGET, options)
    report = fix(str(tree), TARGET, options)
    assert check.counts["to_change"] == report.counts["changed"] == 121
    assert all(owner(path) == (UID, GID) for path in all_entries(tree))
    assert report.complete and not chain[-1].is_symlink()


def test_ancestor_moved_while_its_descriptor_was_closed_is_found_again_by_name(area: Path, walk: dict) -> None:
    tree = area / "tree"
    chain = deep_chain(tree, 50)
    elsewhere = area / "outside" / "elsewhere"
    elsewhere.mkdir()
    moved = Marker(area)

    def hook(event: str, path: str) -> None:
        if event == "descend" and path == str(chain[39]) and not moved.done:
            chain[19].rename(elsewhere / "d20")  # its descriptor is closed at this point
            moved.add(path)

    report = fix(str(tree), TARGET, WalkOptions(max_open_fds=6, hook=hook, **walk))

    assert moved.done
    # d21..d50 were in the tree when listed: they are done, inside the moved directory;
    # going back up, ".." of d20 is now "elsewhere", which is detected: d19 is re-opened by name.
    assert owner(elsewhere) == (0, 0) and owner(area / "outside") == (0, 0) and owner(area) == (0, 0)
    assert all(owner(path) == (UID, GID) for path in chain[:19])
    # d19 lost d20 while it was walked: the root waits for the next run
    assert report.counts["failed"] == 0 and report.counts["changed_while_walked"] >= 1
    assert owner(tree) == (0, 0) and report.root_deferred
    again = fix(str(tree), TARGET, WalkOptions(**walk))
    assert again.complete and owner(tree) == (UID, GID) and owner(elsewhere) == (0, 0)


def test_ancestors_moved_away_are_reported_and_the_root_is_left_alone(area: Path, walk: dict) -> None:
    tree = area / "tree"
    chain = deep_chain(tree, 50)
    elsewhere = area / "outside"
    moved = Marker(area)

    def hook(event: str, path: str) -> None:
        if event == "descend" and path == str(chain[39]) and not moved.done:
            chain[4].rename(elsewhere / "d5")
            chain[2].rename(elsewhere / "d3")
            moved.add(path)

    report = fix(str(tree), TARGET, WalkOptions(max_open_fds=6, hook=hook, **walk))

    assert moved.done
    lost = sorted(item["path"] for item in report.failures.items)
    assert lost == sorted([str(chain[2]), str(chain[3])])
    assert all("moved or replaced during the walk" in item["error"] for item in report.failures.items)
    assert not report.complete
    assert owner(elsewhere) == (0, 0) and owner(area) == (0, 0)
    assert owner(elsewhere / "d3") == (0, 0) and owner(elsewhere / "d3" / "d4") == (0, 0)
    assert owner(chain[1]) == (UID, GID) and owner(chain[0]) == (UID, GID)
    assert owner(tree) == (0, 0) and report.root_deferred


def test_many_subdirectories_are_read_in_chunks(area: Path) -> None:
    tree = area / "tree"
    for number in range(50):
        sub = tree / f"s{number:02d}"
        sub.mkdir()
        (sub / "f").write_text("x")
    options = WalkOptions(chunk=7, max_open_fds=5)
    check = scan(str(tree), TARGET, options)
    report = fix(str(tree), TARGET, options)
    assert check.counts["entries"] == report.counts["entries"] == 101
    assert check.counts["to_change"] == report.counts["changed"] == 101
    assert all(owner(path) == (UID, GID) for path in all_entries(tree))


# -- the parallel walk --------------------------------------------------------------------------


def owners_below(root: Path) -> dict:
    return {str(path.relative_to(root)): owner(path) for path in all_entries(root)}


def varied_tree(root: Path) -> None:
    """Directories at several depths, 1 in 7 entries of another owner, links, a FIFO, a hard link."""
    number = 0
    for top in range(12):
        for sub in range(top % 4 + 1):
            here = root / f"t{top}" / f"s{sub}" / ("deep/er" if sub == 2 else "")
            here.mkdir(parents=True, exist_ok=True)
            for index in range(9):
                item = here / f"f{index}"
                item.write_text("x")
                number += 1
                if number % 7 == 0:
                    os.chown(item, UID, GID)
    (root / "t1" / "link-out").symlink_to(root.parent.parent / "outside")
    (root / "t2" / "s1" / "link-in").symlink_to("../s0")
    os.mkfifo(root / "t3" / "fifo")
    os.link(root / "t4" / "s0" / "f1", root.parent.parent / "outside" / "other-name")


@pytest.mark.parametrize("workers", [2, 3])
def test_a_walk_with_helpers_counts_and_changes_exactly_what_one_process_does(area: Path, workers: int) -> None:
    one, many = area / "tree" / "one", area / "tree" / "many"
    varied_tree(one)
    subprocess.run(["cp", "-a", str(one), str(many)], check=True)
    os.link(many / "t4" / "s0" / "f1", area / "outside" / "other-name-2")
    parallel = WalkOptions(workers=workers, parallel_after=0, sample_size=5)
    single = WalkOptions(workers=1, sample_size=5)

    for step in (scan, fix, fix):
        expected = step(str(one), TARGET, single)
        got = step(str(many), TARGET, parallel)
        assert got.counts == expected.counts, step.__name__
        for name in ("changes", "hardlinks", "failures"):
            kept, wanted = getattr(got, name), getattr(expected, name)
            assert (len(kept.items), kept.total) == (len(wanted.items), wanted.total), name
        assert got.complete and got.root_deferred is None
    assert expected.counts["to_change"] == 0 and expected.counts["skipped_hardlinks"] == 1
    assert owners_below(many) == owners_below(one)
    assert owner(area / "outside") == (0, 0) and owner(many) == (UID, GID)


def test_helpers_do_not_start_for_a_small_tree(area: Path) -> None:
    """Below parallel_after entries the walk stays in one process (no fork for small trees)."""
    tree = area / "tree"
    make_tree(tree, dirs=6)
    forks = Marker(area)

    def hook(event: str, path: str) -> None:
        if event == "open":
            forks.add(str(os.getpid()))

    report = fix(str(tree), TARGET, WalkOptions(workers=4, parallel_after=10_000, hook=hook))
    assert report.counts["changed"] == len(all_entries(tree)) and set(forks.done) == {str(os.getpid())}
    many = Marker(area)

    def hook_many(event: str, path: str) -> None:
        if event == "open":
            many.add(str(os.getpid()))

    subprocess.run(["chown", "-R", "0:0", str(tree)], check=True)
    report = fix(str(tree), TARGET, WalkOptions(workers=4, parallel_after=0, hook=hook_many))
    assert report.counts["changed"] == len(all_entries(tree)) and len(set(many.done)) > 1


def test_a_helper_that_dies_is_reported_and_the_root_is_left_alone(area: Path) -> None:
    tree = area / "tree"
    made = make_tree(tree, dirs=4)
    lead = os.getpid()

    def hook(event: str, path: str) -> None:
        if event == "open" and path.endswith("/inner") and os.getpid() != lead:
            os._exit(9)  # the helper is killed in the middle of the first directory it was given

    report = fix(str(tree), TARGET, WalkOptions(workers=2, parallel_after=0, hook=hook))

    assert not report.complete and owner(tree) == (0, 0) and report.root_deferred
    # the directory it walked and the one queued behind it, if any, are reported
    assert 1 <= len(report.failures.items) <= 2, report.failures.items
    assert all("ended unexpectedly" in item["error"] for item in report.failures.items)
    lost = [Path(item["path"]) for item in report.failures.items]
    assert all(path.parent == tree and owner(path / "inner") == (0, 0) for path in lost)
    # the helper is not used again: every other directory was walked by the walker itself
    assert all(owner(path) == (UID, GID) for path in made if not set(lost) & {path, *path.parents})
    again = fix(str(tree), TARGET, WalkOptions(workers=1))
    assert again.complete and again.counts["failed"] == 0 and owner(tree) == (UID, GID)


def test_no_process_to_fork_means_one_process(area: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fork failing (a pids cgroup or ulimit -u at its limit) is not an error: the walk goes on alone."""
    tree = area / "tree"
    made = make_tree(tree, dirs=4)

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    report = fix(str(tree), TARGET, WalkOptions(workers=3, parallel_after=0))
    assert report.complete and report.counts["changed"] == len(made) + 1 and owner(tree) == (UID, GID)


def test_workers_must_not_be_negative(area: Path) -> None:
    with pytest.raises(OwnershipError, match="workers must be 0"):
        scan(str(area / "tree"), TARGET, WalkOptions(workers=-1))


def test_path_owner_walks_with_helpers_inside_the_module(area: Path) -> None:
    """The module forks helpers inside AnsiballZ: its JSON answer stays whole and exact."""
    tree = area / "tree"
    for group in range(50):
        sub = tree / f"g{group}"
        sub.mkdir(parents=True)
        for index in range(100):
            (sub / f"f{index}").touch()
    args = {"path": str(tree), "owner": str(UID), "group": str(GID), "workers": 2}
    checked = lib.run_module("permfix.containers.path_owner", args, check=True)
    assert checked["changed"] and checked["counts"]["to_change"] == 5051
    done = lib.run_module("permfix.containers.path_owner", args)
    assert done["changed"] and done["counts"]["changed"] == 5051 and done["complete"]
    assert all(owner(path) == (UID, GID) for path in all_entries(tree))
    again = lib.run_module("permfix.containers.path_owner", args)
    assert not again["changed"] and again["counts"]["entries"] == 5051
    bad = lib.run_module("permfix.containers.path_owner", dict(args, workers=-2))
    assert bad["failed"] and "workers must be 0" in bad["msg"]
