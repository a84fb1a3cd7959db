# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The ownership engine: find and change the owners (or POSIX ACLs) of a directory tree, safely.

How the walk stays safe:

- Every directory is opened relative to its parent's descriptor with ``O_NOFOLLOW |
  O_DIRECTORY`` after an ``lstat`` of the name, and the opened descriptor's
  ``(st_dev, st_ino)`` must be the ones the ``lstat`` saw: a directory swapped for a
  symbolic link (or for another directory) between the listing and the descent is reported,
  never followed.
- Entries are examined with ``fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`` and changed with
  ``fchownat(dirfd, name, ..., AT_SYMLINK_NOFOLLOW)``; directories are changed through their
  own descriptor (``fchown``) after their content (post-order), so the root is changed last
  and an interrupted run leaves the root mismatched for the next run to find. The root is
  also left alone when anything below it could not be changed or walked.
- Symbolic links are changed themselves (like ``chown -R``), never followed; device nodes are
  skipped and reported (owning a device node grants access to the device); sockets and FIFOs
  are never opened.
- A regular file with more than one hard link is skipped and reported unless allowed: its
  other names can be outside the tree.
- The walk stays on the root's filesystem (``st_dev``; bind mounts of the same filesystem
  below the root are found through the mount id) unless asked to cross.
- System paths, home directories themselves and container storage are refused.

Large trees are walked by several processes (``workers``; by default one per usable CPU,
at most four): once the walk has seen ``parallel_after`` entries, a subdirectory the walk is
about to enter, opened and checked as above, is handed as its open descriptor (over a unix
socket) to an idle helper process forked from the walker, which walks it with the same rules
and sends back its counts and samples; the walker goes on with the next one. The root is still
changed last, after every helper has answered, and only when nothing below failed. Hard-link
handling with ``allow_hardlinks`` needs one set of seen inodes, so it walks in one process.

Memory stays bounded: the walk is iterative and holds, per directory on the current path,
one descriptor and at most ``CHUNK`` names of subdirectories still to visit; a directory
with more subdirectories keeps its listing open and is read in chunks. When the number of
open descriptors reaches the budget, descriptors of directories higher up are closed and
re-opened later through ``..`` of their child (or by name from the nearest open ancestor)
with their ``(st_dev, st_ino)`` checked.

Residual race (documented for users): a process that can write a directory of the tree
could replace a file by a hard link between its ``lstat`` and its ``fchownat``; with
``fs.protected_hardlinks=1`` (the default on every current distribution) it can only link
files it owns or can already read and write.
"""

from __future__ import annotations

import array  # pylint: disable=unused-import  # noqa: F401
import errno
import json
import os
import re
import select
import socket
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError, root_advice
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import json_safe
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import sample_size as check_sample_size
from ansible_collections.permfix.containers.plugins.module_utils._host.acl import (
    ACL_GROUP,
    ACL_USER,
    XATTR_ACCESS,
    XATTR_DEFAULT,
    AclError,
    AclPlan,
    plan_acl,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.paths import (
    MountLine,
    host_protected_paths,
    mount_sources,
    normalize_path,
    parse_mountinfo,
    refusal_reason,
    unescape_mount_point,
)

try:
    import resource
except ImportError:  # pragma: no cover - every Linux Python has it
    resource = None  # type: ignore[assignment]

STRATEGIES: tuple[str, ...] = ("chown", "acl")
POLICIES: tuple[str, ...] = ("always", "on_root_mismatch")

# Names of subdirectories kept in memory per directory before its listing is paused.
CHUNK = 2048
DEFAULT_SAMPLE_SIZE = 20
MAX_WORKERS = 4
PARALLEL_AFTER = 4096  # entries the walk sees before it starts helper processes
HELPER_QUEUE = 2  # directories a helper may hold: the one it walks and the next

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_PARENT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOCTTY

_S_IFMT = 0o170000
_S_IFDIR = stat.S_IFDIR
_S_IFREG = stat.S_IFREG
_S_IFLNK = stat.S_IFLNK
_S_IFCHR = stat.S_IFCHR
_S_IFBLK = stat.S_IFBLK

_KIND_NAMES = {
    stat.S_IFDIR: "directory",
    stat.S_IFREG: "regular file",
    stat.S_IFLNK: "symbolic link",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
}

Hook = Callable[[str, str], None]


class OwnershipError(PermfixError):
    """The walk cannot start or go on; the message says what to do about it."""


# --------------------------------------------------------------------------------------------
# Bounded samples


class Sample:
    """Keep the first ``limit`` items added and count all of them."""

    __slots__ = ("limit", "total", "items")

    def __init__(self, limit: int = DEFAULT_SAMPLE_SIZE) -> None:
        if limit < 0:
            raise ValueError("a sample limit cannot be negative")
        self.limit = limit
        self.total = 0
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(item)

    def merge(self, items: Sequence[Any], total: int) -> None:
        """Add another sample's kept ``items`` and its ``total`` count."""
        self.total += total
        room = self.limit - len(self.items)
        if room > 0:
            self.items.extend(items[:room])

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    @property
    def truncated(self) -> int:
        """How many items were counted but not kept."""
        return self.total - len(self.items)


# --------------------------------------------------------------------------------------------
# What to do and what happened


@dataclass(frozen=True)
class Target:
    """The wanted state: owner ``uid``/``gid`` (None: leave as is) with ``strategy``.

    ``from_uid``/``from_gid`` restrict the change to entries currently owned by them
    (chown's ``--from``). With ``strategy="acl"`` the owners are left alone and ``uid``
    (named user entry) and ``gid`` (named group entry) are granted rwX instead.
    """

    uid: int | None = None
    gid: int | None = None
    from_uid: int | None = None
    from_gid: int | None = None
    strategy: str = "chown"

    def check(self) -> None:
        if self.strategy not in STRATEGIES:
            raise OwnershipError(f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.uid is None and self.gid is None:
            raise OwnershipError("give an owner, a group or both")

    def owner_text(self) -> str:
        """``1000:1000``, ``1000`` (owner only) or ``:1000`` (group only), like chown's syntax."""
        if self.gid is None:
            return str(self.uid)
        if self.uid is None:
            return f":{self.gid}"
        return f"{self.uid}:{self.gid}"

    def describe(self) -> str:
        if self.strategy == "acl":
            granted = []
            if self.uid is not None:
                granted.append(f"user:{self.uid}")
            if self.gid is not None:
                granted.append(f"group:{self.gid}")
            return "ACL rwX for " + " and ".join(granted)
        return f"chown {self.owner_text()}"


@dataclass
class WalkOptions:
    """How to walk: see the module documentation of path_owner for the user-facing words."""

    recurse: bool = True
    policy: str = "always"
    one_file_system: bool = True
    allow_hardlinks: bool = False
    sample_size: int = DEFAULT_SAMPLE_SIZE
    refuse_protected: bool = True
    max_open_fds: int | None = None
    chunk: int = CHUNK
    workers: int = 0  # processes that walk the tree; 0: one per usable CPU, at most MAX_WORKERS
    parallel_after: int = PARALLEL_AFTER
    hook: Hook | None = None  # tests: called as hook(event, path) at "descend" and "open"
    mounts: MountinfoCache | None = None  # one caller's parsed mountinfo, shared by its walks (bind_mount_info)


COUNT_KEYS: tuple[str, ...] = (
    "entries",
    "mismatched",
    "to_change",
    "changed",
    "not_from_owner",
    "skipped_hardlinks",
    "skipped_devices",
    "skipped_mounts",
    "vanished",
    "failed",
    "changed_while_walked",
)


SAMPLE_NAMES: tuple[str, ...] = ("changes", "hardlinks", "devices", "mounts", "failures", "unsettled")


@dataclass
class OwnershipReport:
    """The result of a scan or a fix; :meth:`as_dict` is what modules return."""

    path: str
    real_path: str
    target: Target
    check_mode: bool
    sample_size: int
    walked: bool = False
    complete: bool = True
    root: dict[str, Any] = field(default_factory=dict)
    root_mismatched: bool = False
    root_deferred: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: {key: 0 for key in COUNT_KEYS})
    changes: Sample = field(default_factory=Sample)
    hardlinks: Sample = field(default_factory=Sample)
    devices: Sample = field(default_factory=Sample)
    mounts: Sample = field(default_factory=Sample)
    failures: Sample = field(default_factory=Sample)
    unsettled: Sample = field(default_factory=Sample)  # directories that changed while they were walked
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in SAMPLE_NAMES:
            setattr(self, name, Sample(self.sample_size))

    @property
    def would_change(self) -> bool:
        return self.counts["to_change"] > 0

    @property
    def changed(self) -> bool:
        return self.counts["changed"] > 0

    def summary(self) -> str:
        """One sentence: ``chown 1000:1000 on 1,204 of 1,310 entries``."""
        counts = self.counts
        if not counts["to_change"]:
            return f"nothing to change among {counts['entries']:,} entries"
        return f"{self.target.describe()} on {counts['to_change']:,} of {counts['entries']:,} entries"

    def problems(self) -> list[str]:
        """Sentences about what was skipped or failed (empty when there is nothing to say)."""
        out = []
        counts = self.counts
        if counts["failed"]:
            shown = "; ".join(f"{item['path']}: {item['error']}" for item in self.failures.items)
            more = f" (and {self.failures.truncated} more)" if self.failures.truncated else ""
            out.append(f"{counts['failed']:,} entries could not be changed or walked: {shown}{more}")
        if counts["skipped_hardlinks"]:
            out.append(
                f"{counts['skipped_hardlinks']:,} files with more than one hard link were left alone "
                f"(their other names can be outside the tree; allow_hardlinks changes them), for example "
                + ", ".join(item["path"] for item in self.hardlinks.items)
            )
        if counts["skipped_devices"]:
            out.append(
                f"{counts['skipped_devices']:,} device nodes were left alone (owning one grants access to the device), "
                f"for example " + ", ".join(item["path"] for item in self.devices.items)
            )
        if counts["skipped_mounts"]:
            out.append(
                f"{counts['skipped_mounts']:,} mount points below the tree (other filesystems, bind mounts of "
                "directories or files) were not entered or changed: "
                + ", ".join(f"{item['path']} ({item['reason']})" if item.get("reason") else item["path"]
                            for item in self.mounts.items)
            )
        if counts["changed_while_walked"]:
            out.append(
                f"the walk is incomplete: {counts['changed_while_walked']:,} directories changed while they were "
                "walked (entries created, removed or renamed), so some entries may not have been examined; run "
                "again when the tree is quiet: " + ", ".join(item["path"] for item in self.unsettled.items)
            )
        if self.root_deferred:
            out.append(self.root_deferred)
        return [json_safe(line) for line in out]

    def as_dict(self) -> dict[str, Any]:
        """The report for a module's result: every name valid UTF-8 (other bytes shown as ``\\xNN``)."""
        return json_safe({
            "path": self.path,
            "real_path": self.real_path,
            "strategy": self.target.strategy,
            "walked": self.walked,
            "complete": self.complete,
            "root": dict(self.root),
            "root_mismatched": self.root_mismatched,
            "root_deferred": self.root_deferred,
            "counts": dict(self.counts),
            "sample": list(self.changes.items),
            "skipped_entries": {
                "hardlinks": list(self.hardlinks.items),
                "devices": list(self.devices.items),
                "mounts": list(self.mounts.items),
            },
            "failures": list(self.failures.items),
            "changed_while_walked": list(self.unsettled.items),
            "notes": list(self.notes),
            "summary": self.summary(),
        })


# --------------------------------------------------------------------------------------------
# The walker


class _Frame:
    """One directory on the current path of the walk."""

    __slots__ = ("name", "rel", "fd", "dev", "ino", "it", "pending", "mnt", "stamp")

    def __init__(self, name: str, rel: str, fd: int, dev: int, ino: int,
                 mnt: int | None = None, stamp: tuple[int, int] | None = None) -> None:
        self.name = name
        self.rel = rel
        self.fd = fd
        self.dev = dev
        self.ino = ino
        self.it: Any = None
        self.pending: list[str] = []
        self.mnt = mnt  # mount id, when it was read
        self.stamp = stamp  # (st_mtime_ns, st_nlink) before the listing: a change means entries moved


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return st.st_mtime_ns, st.st_nlink


def _error_text(exc: OSError) -> str:
    code = exc.errno
    if code == errno.EPERM:
        return ("operation not permitted (an immutable or append-only entry, or a filesystem that refuses it"
                + root_advice("; changing owners needs root: become: true") + ")")
    if code == errno.EROFS:
        return "read-only filesystem"
    if code == errno.EINVAL:
        return "invalid argument (the id is not mapped in this user namespace?)"
    if code == errno.EACCES:
        return "permission denied" + root_advice(" (run as root: become: true)")
    return exc.strerror or str(exc)


def _read_mnt_id(fd: int) -> int | None:
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    match = re.search(rb"^mnt_id:\s*([0-9]+)", data, re.M)
    return int(match.group(1)) if match else None


_unescape_mount_point = unescape_mount_point


def _read_mnt_id_at(dir_fd: int, name: str) -> int | None:
    """The mount id of entry ``name`` of ``dir_fd`` itself (an O_PATH descriptor: nothing is opened)."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return _read_mnt_id(fd)
    finally:
        os.close(fd)


class MountinfoCache:
    """The last parsed /proc/self/mountinfo, keyed by its bytes: the walks of one detection run share
    one parse (a busy host's table has thousands of lines) and still see every change."""

    def __init__(self) -> None:
        self.raw: bytes | None = None
        self.mounts: list[MountLine] = []

    def parse(self, raw: bytes) -> list[MountLine]:
        if raw != self.raw:
            self.mounts = parse_mountinfo(raw.decode("utf-8", "surrogateescape"))
            self.raw = raw
        return self.mounts


class _MountTable:
    """The mount points below the root, read again whenever the kernel says the table changed.

    /proc/self/mountinfo is pollable: a mount or unmount in this mount namespace marks it with
    POLLPRI, so that a mount made while the walk runs is seen at the next directory (a poll is
    a fraction of a microsecond; the table is read again only after a change).
    """

    def __init__(self, real_root: str, cache: MountinfoCache | None = None) -> None:
        self.cache = cache or MountinfoCache()
        self.prefix = real_root.rstrip("/") + "/"
        self.fd = -1
        self.poller: Any = None
        self.digest: int | None = None
        self.mounts: list[MountLine] = []
        self.below: set[str] = set()  # mount points below the root, relative to it
        self.changed = False  # the table changed since the walk started: check every directory
        self.open()

    def open(self) -> None:
        try:
            self.fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.fd = -1
            self.changed = True  # cannot watch: check every directory's mount id instead
            return
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLPRI | select.POLLERR)
        self._read()

    def _read(self) -> None:
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            data = os.read(self.fd, 65536)
            if not data:
                break
            chunks.append(data)
        raw = b"".join(chunks)
        self.digest = hash(raw)
        self.mounts = self.cache.parse(raw)
        prefix = self.prefix
        self.below = {mount.point[len(prefix):] for mount in self.mounts if mount.point.startswith(prefix)}

    def poll(self) -> bool:
        """Whether the table changed since the last look (then it is read again)."""
        if self.poller is None or not self.poller.poll(0):
            return False
        self.changed = True
        self._read()
        return True

    def reopen(self) -> None:
        """In a forked helper: a descriptor of its own (a poll event is seen by one reader only)."""
        before = self.digest
        self.close()
        self.open()
        if self.digest != before:
            self.changed = True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.poller = None


def _fd_budget(requested: int | None) -> int:
    if requested is not None:
        return max(4, requested)
    soft = 1024
    if resource is not None:
        try:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (OSError, ValueError):
            soft = 1024
        if soft < 0:  # RLIM_INFINITY
            soft = 65536
    return max(16, min(1024, soft // 2 - 16))


def too_many_files(path: str, code: int) -> str:
    """What to do when the walk runs out of descriptors (EMFILE: this process, ENFILE: the system)."""
    if code == errno.ENFILE:
        return (f"too many open files in the whole system while walking {path}: raise fs.file-max "
                "(sysctl) or run when fewer files are open")
    limits = ""
    if resource is not None:
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            shown = ["unlimited" if value == resource.RLIM_INFINITY else str(value) for value in (soft, hard)]
            limits = f" (now soft {shown[0]}, hard {shown[1]})"
        except (OSError, ValueError):
            limits = ""
    return (f"too many open files while walking {path}: raise the open files limit{limits} with ulimit -n "
            "before running (or LimitNOFILE= for a service, or the fixer's --ulimit nofile=)")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and cgroups narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_count(requested: int) -> int:
    """How many processes walk: one per usable CPU for 0, else ``requested``; never more than
    MAX_WORKERS nor than the usable CPUs (more processes than CPUs only compete for them)."""
    if requested < 0:
        raise OwnershipError(f"workers must be 0 (one per usable CPU) or more, not {requested}")
    most = min(MAX_WORKERS, usable_cpus())
    if requested == 0:
        return most
    return min(requested, most)


_LENGTH = struct.Struct("!I")


def _send(sock: socket.socket, message: dict[str, Any], fd: int | None = None) -> None:
    """Send one length-prefixed JSON message, with ``fd`` attached to its first bytes."""
    data = json.dumps(message).encode()
    header = _LENGTH.pack(len(data))
    if fd is None:
        sock.sendall(header + data)
        return
    sent = socket.send_fds(sock, [header], [fd])
    sock.sendall(header[sent:] + data)


def _recv_exact(sock: socket.socket, size: int, data: bytes = b"") -> bytes:
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise EOFError
        data += more
    return data


def _recv(sock: socket.socket, with_fd: bool = False) -> tuple[dict[str, Any], int | None]:
    """Receive one message of :func:`_send` (and its descriptor); EOFError when the peer is gone."""
    fd: int | None = None
    if with_fd:
        head, fds, _flags, _addr = socket.recv_fds(sock, _LENGTH.size, 1)
        if not head:
            raise EOFError
        fd = fds[0] if fds else None
    else:
        head = b""
    head = _recv_exact(sock, _LENGTH.size, head)
    return json.loads(_recv_exact(sock, _LENGTH.unpack(head)[0]).decode()), fd


class _Helper:
    """One helper process of a parallel walk and the directories it was given, in order."""

    __slots__ = ("pid", "sock", "tasks")

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.tasks: list[str] = []  # relative paths, the one being walked first


class _Pool:
    """The helper processes of one walk, forked when the walk first has work for them."""

    def __init__(self, walker: _Walker, size: int) -> None:
        self.walker = walker
        self.size = size
        self.helpers: list[_Helper] = []
        self.poller = select.poll()
        self.by_fd: dict[int, _Helper] = {}
        self.broken = False

    def busy(self) -> int:
        return sum(1 for helper in self.helpers if helper.tasks)

    def idle(self) -> _Helper | None:
        """A helper that can take a directory (collecting finished work first), or None.

        A helper may hold a second directory behind the one it walks, so that it goes on at
        once when it finishes instead of waiting for the walker to look again.
        """
        if self.busy():
            self.collect(0)
        least = min(self.helpers, key=lambda helper: len(helper.tasks), default=None)
        if least is not None and not least.tasks:
            return least
        if len(self.helpers) < self.size and not self.broken:
            return self._start()
        if least is not None and len(least.tasks) < HELPER_QUEUE:
            return least
        return None

    def _start(self) -> _Helper | None:
        try:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError:
            self.broken = True
            return None
        try:
            pid = os.fork()
        except OSError:
            mine.close()
            theirs.close()
            self.broken = True  # no more processes (ulimit -u, cgroup pids): walk alone
            return None
        if pid == 0:  # pragma: no cover - the helper's side is measured through its answers
            code = 1
            try:
                mine.close()
                for helper in self.helpers:
                    helper.sock.close()
                code = self.walker.serve(theirs)
            finally:
                os._exit(code)
        theirs.close()
        helper = _Helper(pid, mine)
        self.helpers.append(helper)
        self.by_fd[mine.fileno()] = helper
        self.poller.register(mine.fileno(), select.POLLIN)
        return helper

    def give(self, helper: _Helper, frame: _Frame) -> bool:
        """Hand ``frame`` (its descriptor) to ``helper``; False if the helper cannot take it."""
        task = {"name": frame.name, "rel": frame.rel, "dev": frame.dev, "ino": frame.ino, "mnt": frame.mnt,
                "stamp": frame.stamp}
        try:
            _send(helper.sock, task, frame.fd)
        except OSError:
            self._lost(helper)
            return False
        helper.tasks.append(frame.rel)
        return True

    def collect(self, timeout: int | None) -> None:
        """Merge the answers of helpers that finished (waiting up to ``timeout`` ms; None: forever)."""
        for fd, _event in self.poller.poll(timeout):
            helper = self.by_fd.get(fd)
            if helper is None or not helper.tasks:
                continue
            try:
                answer, _none = _recv(helper.sock)
            except (EOFError, OSError, ValueError):
                self._lost(helper)
                continue
            self.walker.merge(answer)
            helper.tasks.pop(0)

    def finish(self) -> None:
        """Wait for every helper's answer."""
        while self.busy():
            self.collect(None)

    def _lost(self, helper: _Helper) -> None:
        """A helper died or its socket broke: what it was walking was not (all) examined."""
        for rel in helper.tasks:
            self.walker._fail(rel, "the helper process walking this directory ended unexpectedly; its "
                              "entries were not all examined", walk_incomplete=True)
        helper.tasks = []
        self._forget(helper)
        self.broken = True

    def _forget(self, helper: _Helper) -> None:
        self.poller.unregister(helper.sock.fileno())
        del self.by_fd[helper.sock.fileno()]
        helper.sock.close()
        self.helpers.remove(helper)
        try:
            os.waitpid(helper.pid, 0)
        except ChildProcessError:
            pass

    def close(self) -> None:
        """End every helper (closing its socket tells it to exit) and reap it."""
        for helper in list(self.helpers):
            if helper.tasks:  # an error stopped the walk: do not wait for this one
                try:
                    os.kill(helper.pid, 9)
                except ProcessLookupError:
                    pass
            self._forget(helper)


class _Walker:
    """One scan (``apply=False``) or fix (``apply=True``) of one path."""

    def __init__(self, path: str, target: Target, options: WalkOptions, apply: bool) -> None:
        target.check()
        if options.policy not in POLICIES:
            raise OwnershipError(f"policy must be one of {', '.join(POLICIES)}, not {options.policy!r}")
        check_sample_size(options.sample_size)
        self.target = target
        self.options = options
        self.apply = apply
        self.path = normalize_path(path) if path.startswith("/") else path
        self.report = OwnershipReport(
            path=self.path, real_path=self.path, target=target, check_mode=not apply, sample_size=options.sample_size
        )
        self.counts = self.report.counts
        self.acl = target.strategy == "acl"
        self.wu = -1 if target.uid is None else target.uid
        self.wg = -1 if target.gid is None else target.gid
        self.fu = -1 if target.from_uid is None else target.from_uid
        self.fg = -1 if target.from_gid is None else target.from_gid
        self.has_from = target.from_uid is not None or target.from_gid is not None
        self.fast = not self.acl and not self.has_from
        self.grants: list[tuple[int, int]] = []
        if target.uid is not None:
            self.grants.append((ACL_USER, target.uid))
        if target.gid is not None:
            self.grants.append((ACL_GROUP, target.gid))
        self.linked: set = set()
        self.hook = options.hook
        self.budget = _fd_budget(options.max_open_fds)
        self.chunk = max(1, options.chunk)
        self.nfds = 0
        self.low = 1
        self.root_dev = 0
        self.table: _MountTable | None = None
        self.inherited: list[Any] = []  # a helper's copies of the walker's listings: never closed
        self.incomplete = False
        self.protected: tuple[list[str], list[str]] | None = None
        # a parallel walk: hard links allowed need one set of seen inodes, so one process
        self.workers = 1 if options.allow_hardlinks else worker_count(options.workers)
        if options.workers > 0 and self.workers < options.workers and not options.allow_hardlinks:
            self.report.notes.append(
                f"workers={options.workers} was lowered to {self.workers} (at most {MAX_WORKERS}, and at most "
                f"one per usable CPU: {usable_cpus()})"
            )
        if options.parallel_after < 0:
            raise OwnershipError("parallel_after cannot be negative")
        self.pool: _Pool | None = None
        self.stack: list[_Frame] = []

    # -- small helpers ------------------------------------------------------------------------

    def _display(self, rel: str) -> str:
        """The path shown for ``rel``: names that are not UTF-8 show their bytes as ``\\xNN``."""
        if not rel:
            return self.path
        return json_safe(f"{self.path.rstrip('/')}/{rel}")

    def _child_rel(self, frame: _Frame, name: str) -> str:
        return f"{frame.rel}/{name}" if frame.rel else name

    def _fail(self, rel: str, message: str, walk_incomplete: bool = False) -> None:
        self.counts["failed"] += 1
        self.report.failures.add({"path": self._display(rel), "error": message})
        if walk_incomplete:
            self.incomplete = True

    def _owner_differs(self, st: os.stat_result) -> bool:
        return (self.wu >= 0 and st.st_uid != self.wu) or (self.wg >= 0 and st.st_gid != self.wg)

    def _from_matches(self, st: os.stat_result) -> bool:
        return (self.fu < 0 or st.st_uid == self.fu) and (self.fg < 0 or st.st_gid == self.fg)

    def _owner_text(self, uid: int, gid: int) -> str:
        return f"{uid}:{gid}"

    def _after_text(self, st: os.stat_result) -> str:
        return self._owner_text(st.st_uid if self.wu < 0 else self.wu, st.st_gid if self.wg < 0 else self.wg)

    # -- per-entry decisions --------------------------------------------------------------------

    def _acl_plan(self, where: Any, st: os.stat_result, rel: str) -> AclPlan | None:
        """Read the ACLs of one entry (``where``: an fd or a /proc/self/fd path) and plan."""
        is_dir = (st.st_mode & _S_IFMT) == _S_IFDIR
        try:
            access = self._getxattr(where, XATTR_ACCESS)
            default = self._getxattr(where, XATTR_DEFAULT) if is_dir else None
            return plan_acl(access, default, st.st_mode, self.grants)
        except FileNotFoundError:
            self.counts["vanished"] += 1
        except AclError as exc:
            self._fail(rel, f"unreadable POSIX ACL ({exc})")
        except OSError as exc:
            self._acl_oserror(exc, rel)
            self._fail(rel, f"cannot read the POSIX ACL: {_error_text(exc)}")
        return None

    def _getxattr(self, where: Any, name: str) -> bytes | None:
        try:
            if isinstance(where, int):
                return os.getxattr(where, name)
            return os.getxattr(where, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                return None
            raise

    def _acl_oserror(self, exc: OSError, rel: str) -> None:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            raise OwnershipError(
                f"the filesystem holding {self._display(rel)} does not support POSIX ACLs: mount it with ACL "
                "support or use strategy chown"
            ) from None

    def _set_acl(self, where: Any, plan: AclPlan, rel: str) -> bool:
        try:
            follow = isinstance(where, int)  # an fd is the entry itself; a path must not be followed
            if plan.access is not None:
                os.setxattr(where, XATTR_ACCESS, plan.access, 0, follow_symlinks=follow)
            if plan.default is not None:
                os.setxattr(where, XATTR_DEFAULT, plan.default, 0, follow_symlinks=follow)
            return True
        except FileNotFoundError:
            self.counts["vanished"] += 1
        except OSError as exc:
            self._acl_oserror(exc, rel)
            self._fail(rel, f"cannot set the POSIX ACL: {_error_text(exc)}")
        return False

    def _entry(self, frame: _Frame, name: str, st: os.stat_result, rel: str | None = None) -> None:
        """Decide about (and in a fix, change) one non-directory entry ``name`` of ``frame``.

        ``rel`` is the entry's path relative to the root (computed from the frame if None).
        """
        kind = st.st_mode & _S_IFMT
        plan: AclPlan | None = None
        if self.acl:
            if kind == _S_IFLNK:
                return  # ACLs do not apply to symbolic links
            if rel is None:
                rel = self._child_rel(frame, name)
            plan = self._acl_plan(f"/proc/self/fd/{frame.fd}/{name}", st, rel)
            if plan is None or not plan.needed:
                return
        elif not self._owner_differs(st):
            return
        counts = self.counts
        if rel is None:
            rel = self._child_rel(frame, name)
        if self.table is not None and rel in self.table.below:
            # A file bind-mounted here (its source can be anywhere, /etc/passwd...): never changed,
            # whatever one_file_system says.
            counts["skipped_mounts"] += 1
            self.report.mounts.add({"path": self._display(rel), "reason": "a file mounted over this name"})
            return
        # Any non-directory can have other names (FIFOs, sockets, device nodes and symbolic links too).
        linked = st.st_nlink > 1
        if linked and self.options.allow_hardlinks:
            key = (st.st_dev, st.st_ino)
            if key in self.linked:
                return
            self.linked.add(key)
        counts["mismatched"] += 1
        if self.has_from and not self._from_matches(st):
            counts["not_from_owner"] += 1
            return
        if kind == _S_IFCHR or kind == _S_IFBLK:
            counts["skipped_devices"] += 1
            self.report.devices.add({"path": self._display(rel), "owner": self._owner_text(st.st_uid, st.st_gid)})
            return
        if linked and not self.options.allow_hardlinks:
            counts["skipped_hardlinks"] += 1
            self.report.hardlinks.add(
                {"path": self._display(rel), "type": _KIND_NAMES.get(kind, "special file"), "links": st.st_nlink,
                 "owner": self._owner_text(st.st_uid, st.st_gid)}
            )
            return
        counts["to_change"] += 1
        if plan is not None:
            self.report.changes.add({"path": self._display(rel), "before": plan.before, "after": plan.after})
            if self.apply and self._set_acl(f"/proc/self/fd/{frame.fd}/{name}", plan, rel):
                counts["changed"] += 1
            return
        if not self.report.changes.full:
            self.report.changes.add(
                {
                    "path": self._display(rel),
                    "before": self._owner_text(st.st_uid, st.st_gid),
                    "after": self._after_text(st),
                }
            )
        else:
            self.report.changes.total += 1
        if self.apply:
            try:
                os.chown(name, self.target.uid if self.target.uid is not None else -1,
                         self.target.gid if self.target.gid is not None else -1,
                         dir_fd=frame.fd, follow_symlinks=False)
                counts["changed"] += 1
            except FileNotFoundError:
                counts["vanished"] += 1
            except OSError as exc:
                self._fail(rel, _error_text(exc))

    def _directory(self, frame: _Frame, is_root: bool) -> None:
        """Decide about (and in a fix, change) a directory through its own descriptor."""
        try:
            st = os.fstat(frame.fd)
        except OSError as exc:
            self._fail(frame.rel, f"cannot stat the directory: {_error_text(exc)}", walk_incomplete=True)
            return
        if frame.stamp is not None and frame.stamp != _stamp(st):
            # Entries were added, removed or renamed while it was listed: a subdirectory moved
            # from the part not yet read to the part already read was never seen.
            self.counts["changed_while_walked"] += 1
            self.report.unsettled.add({"path": self._display(frame.rel)})
            self.incomplete = True
        plan: AclPlan | None = None
        if self.acl:
            plan = self._acl_plan(frame.fd, st, frame.rel)
            if plan is None or not plan.needed:
                return
        elif not self._owner_differs(st):
            return
        counts = self.counts
        counts["mismatched"] += 1
        if self.has_from and not self._from_matches(st):
            counts["not_from_owner"] += 1
            return
        counts["to_change"] += 1
        before = plan.before if plan is not None else self._owner_text(st.st_uid, st.st_gid)
        after = plan.after if plan is not None else self._after_text(st)
        self.report.changes.add({"path": self._display(frame.rel), "before": before, "after": after})
        if is_root and (counts["failed"] or self.incomplete):
            if counts["failed"]:
                why = "entries below it were not all changed"
            else:
                why = "directories below it changed while they were walked (entries may have been missed)"
            self.report.root_deferred = (
                f"{self.path} itself was left unchanged because {why}; the next run finds the tree again"
            )
            return
        if not self.apply:
            return
        if plan is not None:
            if self._set_acl(frame.fd, plan, frame.rel):
                counts["changed"] += 1
            return
        try:
            os.chown(frame.fd, self.target.uid if self.target.uid is not None else -1,
                     self.target.gid if self.target.gid is not None else -1)
            counts["changed"] += 1
        except OSError as exc:
            self._fail(frame.rel, _error_text(exc))

    def _root_state(self, where: Any, st: os.stat_result) -> bool:
        """Whether the root differs from the target (for on_root_mismatch and the report)."""
        if self.acl:
            if (st.st_mode & _S_IFMT) == _S_IFLNK:
                return False
            try:
                access = self._getxattr(where, XATTR_ACCESS)
                default = self._getxattr(where, XATTR_DEFAULT) if (st.st_mode & _S_IFMT) == _S_IFDIR else None
            except OSError as exc:
                self._acl_oserror(exc, "")
                raise OwnershipError(f"cannot read the POSIX ACL of {self.path}: {_error_text(exc)}") from None
            return plan_acl(access, default, st.st_mode, self.grants).needed
        return self._owner_differs(st)

    # -- the hot loop -------------------------------------------------------------------------

    def _read(self, frame: _Frame) -> None:
        """Read the listing of ``frame`` until it ends or CHUNK subdirectories are pending."""
        it = frame.it
        fd = frame.fd
        pending = frame.pending
        chunk = self.chunk
        fast = self.fast
        wu = self.wu
        wg = self.wg
        nu = self.target.uid if self.target.uid is not None else -1
        ng = self.target.gid if self.target.gid is not None else -1
        apply = self.apply
        changes = self.report.changes
        # room left in the sample of changes: while there is some, entries take the slow path
        room = changes.limit - len(changes.items)
        chown = os.chown
        entry_slow = self._entry
        seen = 0
        mismatched = 0
        to_change = 0
        changed = 0
        exhausted = True
        table = self.table
        if table is not None:
            table.poll()  # a mount made since the last directory: its mount point is known now
            if table.below:
                fast = False  # every entry to change is looked up among the mount points

        try:
            for entry in it:
                seen += 1
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.name)
                    if len(pending) >= chunk:
                        exhausted = False
                        break
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    self.counts["vanished"] += 1
                    continue
                except OSError as exc:
                    self._fail(self._child_rel(frame, entry.name), f"cannot stat: {_error_text(exc)}")
                    continue
                if fast:
                    if (st.st_uid == wu or wu < 0) and (st.st_gid == wg or wg < 0):
                        continue
                    kind = st.st_mode & 0o170000
                    if room > 0 or st.st_nlink > 1 or kind == 0o020000 or kind == 0o060000:
                        entry_slow(frame, entry.name, st)
                        room = changes.limit - len(changes.items)
                        continue
                    mismatched += 1
                    to_change += 1
                    changes.total += 1
                    if apply:
                        try:
                            chown(entry.name, nu, ng, dir_fd=fd, follow_symlinks=False)
                            changed += 1
                        except FileNotFoundError:
                            self.counts["vanished"] += 1
                        except OSError as exc:
                            self._fail(self._child_rel(frame, entry.name), _error_text(exc))
                    continue
                entry_slow(frame, entry.name, st)
        except OSError as exc:
            self._fail(frame.rel, f"cannot read the directory: {_error_text(exc)}", walk_incomplete=True)
        finally:
            counts = self.counts
            counts["entries"] += seen
            counts["mismatched"] += mismatched
            counts["to_change"] += to_change
            counts["changed"] += changed
        if exhausted:
            it.close()
            frame.it = None
            self.nfds -= 1

    # -- descriptors ------------------------------------------------------------------------

    def _close_frame(self, frame: _Frame) -> None:
        if frame.it is not None:
            frame.it.close()
            frame.it = None
            self.nfds -= 1
        if frame.fd >= 0:
            os.close(frame.fd)
            frame.fd = -1
            self.nfds -= 1

    def _trim(self, stack: list[_Frame]) -> None:
        """Close descriptors of directories high up until the budget is respected."""
        index = self.low
        top = len(stack) - 2  # keep the new directory and its parent open
        while self.nfds > self.budget and index < top:
            frame = stack[index]
            if frame.fd >= 0 and frame.it is None:
                os.close(frame.fd)
                frame.fd = -1
                self.nfds -= 1
            index += 1
        self.low = max(self.low, index)

    def _verify_open(self, name: str, dir_fd: int, dev: int, ino: int) -> int | None:
        """Open directory ``name`` of ``dir_fd`` if it is still ``(dev, ino)``; else None."""
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise OwnershipError(too_many_files(self.path, exc.errno)) from None
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            return None
        if st.st_dev != dev or st.st_ino != ino:
            os.close(fd)
            return None
        return fd

    def _reopen(self, stack: list[_Frame], child: _Frame | None) -> None:
        """Re-open the top frame, whose descriptor was closed to respect the budget."""
        top = stack[-1]
        fd = None
        if child is not None and child.fd >= 0:
            fd = self._verify_open("..", child.fd, top.dev, top.ino)
        if fd is not None:
            top.fd = fd
            self.nfds += 1
            self.low = min(self.low, len(stack) - 1)
            return
        # Fall back to names from the nearest open ancestor, checking every step; only the
        # top keeps its descriptor (the ones in between are re-opened when they are the top).
        base = len(stack) - 1
        while stack[base].fd < 0:
            base -= 1
        parent_fd = stack[base].fd
        for index in range(base + 1, len(stack)):
            frame = stack[index]
            fd = self._verify_open(frame.name, parent_fd, frame.dev, frame.ino)
            if parent_fd != stack[base].fd:
                os.close(parent_fd)
            if fd is None:
                for lost in stack[index:]:
                    self._fail(lost.rel, "the directory was moved or replaced during the walk; its remaining "
                               "entries were not examined", walk_incomplete=True)
                while len(stack) > index:
                    self._close_frame(stack.pop())
                break
            parent_fd = fd
        else:
            top.fd = parent_fd
            self.nfds += 1
        self.low = min(self.low, len(stack) - 1)

    # -- mounts ---------------------------------------------------------------------------------

    def _mount_of(self, parent: _Frame, fd: int) -> int | None:
        """The mount id of the directory just opened as ``fd``, when it must be compared; None
        when the mount table says no mount can be below (nothing changed, none below the root).

        Called after the directory was opened: a mount made after the open does not change what
        the descriptor is, and one made before it has marked the table by now.
        """
        table = self.table
        if table is None:
            return None
        table.poll()
        if not (table.changed or table.below):
            return None
        if parent.mnt is None:
            parent.mnt = _read_mnt_id(parent.fd)
        return _read_mnt_id(fd)

    def _crossing(self, mnt: int, fst: os.stat_result, rel: str) -> str | None:
        """Why the mount ``mnt`` at ``rel`` is not entered, or None to cross it."""
        if self.options.one_file_system:
            return "another mount (one_file_system)"
        if self.options.refuse_protected and self.table is not None:
            if self.protected is None:
                self.protected = host_protected_paths()
            homes, storage = self.protected
            for source in mount_sources(self.table.mounts, mnt):
                reason = refusal_reason(source, homes, storage)
                if reason:
                    return f"a mount of {source}: {reason}"
        return None

    # -- descending -------------------------------------------------------------------------

    def _push(self, stack: list[_Frame], frame: _Frame) -> bool:
        try:
            frame.it = os.scandir(frame.fd)
        except OSError as exc:
            os.close(frame.fd)
            frame.fd = -1
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise OwnershipError(too_many_files(self.path, exc.errno)) from None
            self._fail(frame.rel, f"cannot list the directory: {_error_text(exc)}", walk_incomplete=True)
            return False
        self.nfds += 2
        stack.append(frame)
        if self.nfds > self.budget:
            self._trim(stack)
        return True

    def _descend(self, stack: list[_Frame], parent: _Frame, name: str) -> None:
        rel = self._child_rel(parent, name)
        if self.hook is not None:
            self.hook("descend", self._display(rel))
        try:
            st = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            self.counts["vanished"] += 1
            return
        except OSError as exc:
            self._fail(rel, f"cannot stat: {_error_text(exc)}", walk_incomplete=True)
            return
        if (st.st_mode & _S_IFMT) != _S_IFDIR:
            # Replaced since it was listed (by a symlink, a file...): treat it as what it is now.
            self._entry(parent, name, st)
            return
        if st.st_dev != self.root_dev and self.options.one_file_system:
            self.counts["skipped_mounts"] += 1
            self.report.mounts.add({"path": self._display(rel), "reason": "another filesystem (one_file_system)"})
            return
        if self.hook is not None:
            self.hook("open", self._display(rel))
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
        except FileNotFoundError:
            self.counts["vanished"] += 1
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise OwnershipError(too_many_files(self.path, exc.errno)) from None
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                message = "it was replaced during the walk (by a symbolic link or a non-directory); not followed"
            else:
                message = f"cannot open the directory: {_error_text(exc)}"
            self._fail(rel, message, walk_incomplete=True)
            return
        try:
            fst = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            self._fail(rel, f"cannot stat the directory: {_error_text(exc)}", walk_incomplete=True)
            return
        if fst.st_dev != st.st_dev or fst.st_ino != st.st_ino:
            os.close(fd)
            self._fail(rel, "it was replaced by another directory during the walk; not followed", walk_incomplete=True)
            return
        mnt = self._mount_of(parent, fd)
        if mnt is not None and mnt != parent.mnt:
            reason = self._crossing(mnt, fst, rel)
            if reason is not None:
                os.close(fd)
                self.counts["skipped_mounts"] += 1
                self.report.mounts.add({"path": self._display(rel), "reason": reason})
                return
        frame = _Frame(name, rel, fd, fst.st_dev, fst.st_ino, mnt, _stamp(fst))
        pool = self.pool
        if pool is not None and self.counts["entries"] >= self.options.parallel_after:
            helper = pool.idle()
            if helper is not None and pool.give(helper, frame):
                os.close(fd)  # the helper has its own copy
                return
        self._push(stack, frame)

    def _walk(self, root: _Frame) -> None:
        stack: list[_Frame] = []
        self.stack = stack
        self.nfds = 0
        if not self._push(stack, root):
            return
        try:
            self._loop(stack)
        finally:
            # Normally empty; after a fatal error, close what is still open (the root's
            # descriptor belongs to run()).
            for frame in stack[1:]:
                self._close_frame(frame)
            if root.it is not None:
                root.it.close()
                root.it = None

    def _loop(self, stack: list[_Frame]) -> None:
        while stack:
            frame = stack[-1]
            if frame.fd < 0:
                self._reopen(stack, None)
                continue
            if frame.pending:
                self._descend(stack, frame, frame.pending.pop())
                continue
            if frame.it is not None:
                self._read(frame)
                continue
            # Every entry below is done: the directory itself, then back to the parent.
            is_root = len(stack) == 1
            if not is_root:
                self._directory(frame, is_root=False)
            stack.pop()
            if is_root:
                break
            if stack[-1].fd < 0:
                self._reopen(stack, frame)
            self._close_frame(frame)

    # -- entry point --------------------------------------------------------------------------

    def _open_root(self) -> tuple[int, str, os.stat_result, int | None, str]:
        """Open the parent of the path, lstat the last component; return what was found.

        Returns ``(parent_fd, name, lstat, dir_fd or None, real_path)``.
        """
        path = self.path
        if not path.startswith("/"):
            raise OwnershipError(f"path must be absolute, not {path!r}")
        parent, name = os.path.split(path)
        if not name:
            raise OwnershipError(f"refusing to change {path}: it is the root of the filesystem")
        try:
            parent_fd = os.open(parent or "/", _PARENT_FLAGS)
        except FileNotFoundError:
            raise OwnershipError(f"{path} does not exist (its parent directory {parent} is missing)") from None
        except NotADirectoryError:
            raise OwnershipError(f"{path} does not exist: a component of {parent} is not a directory") from None
        except OSError as exc:
            raise OwnershipError(f"cannot open {parent}: {_error_text(exc)}") from None
        try:
            try:
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise OwnershipError(f"{path} does not exist") from None
            except OSError as exc:
                raise OwnershipError(f"cannot examine {path}: {_error_text(exc)}") from None
            kind = st.st_mode & _S_IFMT
            if kind == _S_IFLNK:
                try:
                    dest = os.readlink(name, dir_fd=parent_fd)
                except OSError:
                    dest = "?"
                raise OwnershipError(
                    f"{path} is a symbolic link (to {dest}): give the real path so that what changes is explicit"
                )
            dir_fd = None
            if kind == _S_IFDIR:
                try:
                    dir_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
                except OSError as exc:
                    raise OwnershipError(f"cannot open {path}: {_error_text(exc)}") from None
                fst = os.fstat(dir_fd)
                if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                    os.close(dir_fd)
                    raise OwnershipError(f"{path} changed while it was being opened; run again")
                st = fst
                real = self._real_path(dir_fd, None)
            else:
                real = self._real_path(parent_fd, name)
        except BaseException:
            os.close(parent_fd)
            raise
        return parent_fd, name, st, dir_fd, real

    def _real_path(self, fd: int, name: str | None) -> str:
        try:
            base = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            base = os.path.realpath(self.path if name is None else os.path.dirname(self.path))
        if name is None:
            return base
        return os.path.join(base, name)

    def _refuse(self, candidates: Sequence[str], through: str = "") -> None:
        if not self.options.refuse_protected:
            return
        if self.protected is None:
            self.protected = host_protected_paths()
        homes, storage = self.protected
        for candidate in candidates:
            reason = refusal_reason(candidate, homes, storage)
            if reason:
                raise OwnershipError(
                    f"refusing to change {self.path}: {through}{reason}. Give the directory the container actually "
                    "mounts"
                )

    def _refuse_source(self, fd: int, name: str | None, real: str) -> None:
        """Refuse a root that shows a protected directory through a mount (``mount --bind /etc /srv/x``)."""
        if not self.options.refuse_protected:
            return
        mnt = _read_mnt_id(fd) if name is None else _read_mnt_id_at(fd, name)
        if mnt is None:
            return
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
                mounts = parse_mountinfo(handle.read())
        except OSError:
            return
        mount = next((item for item in mounts if item.mnt_id == mnt), None)
        if mount is None:
            return
        point = mount.point.rstrip("/")
        inside = real[len(point):].lstrip("/") if real == mount.point or real.startswith(point + "/") else ""
        for source in mount_sources(mounts, mnt, inside):
            if source != real:
                self._refuse([source], through=f"it is a mount of {source}, and ")

    def run(self) -> OwnershipReport:
        if self.path.startswith("/"):
            self._refuse([self.path])
        parent_fd, name, st, dir_fd, real = self._open_root()
        report = self.report
        report.real_path = real
        try:
            self._refuse([real])
            self._refuse_source(parent_fd if dir_fd is None else dir_fd, name if dir_fd is None else None, real)
            kind = st.st_mode & _S_IFMT
            report.root = {
                "uid": st.st_uid,
                "gid": st.st_gid,
                "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                "type": _KIND_NAMES.get(kind, "unknown"),
            }
            if dir_fd is None:
                return self._run_file(parent_fd, name, st)
            where: Any = dir_fd
            report.root_mismatched = self._root_state(where, st)
            self.root_dev = st.st_dev
            root = _Frame(name, "", dir_fd, st.st_dev, st.st_ino)
            if self.options.policy == "on_root_mismatch" and not report.root_mismatched:
                self.counts["entries"] = 1
                return report
            if self.options.recurse:
                self.table = _MountTable(real, self.options.mounts)
                root.mnt = _read_mnt_id(dir_fd)
                root.stamp = _stamp(st)
                report.walked = True
                self.counts["entries"] = 1
                dir_fd = None  # the walk owns it now
                if self.workers > 1:
                    self.pool = _Pool(self, self.workers - 1)
                try:
                    self._walk(root)
                    if self.pool is not None:
                        self.pool.finish()  # every helper's counts before the root is decided
                    self._directory(root, is_root=True)
                finally:
                    if self.pool is not None:
                        self.pool.close()
                        self.pool = None
                    if self.table is not None:
                        self.table.close()
                    if root.it is not None:
                        root.it.close()
                    if root.fd >= 0:
                        os.close(root.fd)
            else:
                self.counts["entries"] = 1
                self._directory(root, is_root=True)
            report.complete = not self.incomplete
            return report
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
            os.close(parent_fd)

    # -- a helper process of a parallel walk ----------------------------------------------------

    def serve(self, sock: socket.socket) -> int:
        """Walk the directories the parent sends (in the forked helper) until it closes the socket."""
        for frame in self.stack:  # the parent's open directories: not ours to use
            if frame.it is not None:
                # Never closed here: closing a listing rewinds the directory offset, which this
                # copy shares with the walker's, and the walker would read it again. Kept
                # referenced until the helper's os._exit, so that it is never finalized either.
                self.inherited.append(frame.it)
                frame.it = None
            if frame.fd >= 0:
                os.close(frame.fd)
        if self.table is not None:
            self.table.reopen()
        self.stack = []
        self.pool = None
        while True:
            try:
                task, fd = _recv(sock, with_fd=True)
            except EOFError:
                return 0
            if fd is None:
                return 1
            self.report = OwnershipReport(
                path=self.path, real_path=self.report.real_path, target=self.target,
                check_mode=not self.apply, sample_size=self.options.sample_size,
            )
            self.counts = self.report.counts
            self.incomplete = False
            self.low = 1
            error = None
            stamp = task["stamp"]
            frame = _Frame(task["name"], task["rel"], fd, task["dev"], task["ino"], task["mnt"],
                           None if stamp is None else (stamp[0], stamp[1]))
            try:
                self._walk(frame)
                if frame.fd >= 0:  # listed (else the failure is recorded): the directory after its entries
                    self._directory(frame, is_root=False)
            except OwnershipError as exc:
                error = str(exc)
            finally:
                if frame.fd >= 0:
                    os.close(frame.fd)
            report = self.report
            _send(sock, {
                "rel": task["rel"],
                "error": error,
                "incomplete": self.incomplete,
                "counts": report.counts,
                "samples": {name: [getattr(report, name).items, getattr(report, name).total] for name in SAMPLE_NAMES},
            })

    def merge(self, answer: dict[str, Any]) -> None:
        """Add a helper's answer (see :meth:`serve`) to this walk's report."""
        for key, value in answer["counts"].items():
            self.counts[key] += value
        for name in SAMPLE_NAMES:
            items, total = answer["samples"][name]
            getattr(self.report, name).merge(items, total)
        if answer["incomplete"]:
            self.incomplete = True
        if answer["error"]:
            self._fail(answer["rel"], answer["error"], walk_incomplete=True)

    def _run_file(self, parent_fd: int, name: str, st: os.stat_result) -> OwnershipReport:
        kind = st.st_mode & _S_IFMT
        kind_name = _KIND_NAMES.get(kind, "special file")
        if self.options.recurse:
            raise OwnershipError(
                f"{self.path} is a {kind_name}, not a directory: set recurse to false to change only this {kind_name}"
            )
        if kind in (_S_IFCHR, _S_IFBLK):
            raise OwnershipError(
                f"refusing to change {self.path}: it is a device node (owning it grants access to the device)"
            )
        self.counts["entries"] = 1
        frame = _Frame(os.path.basename(self.path), "", parent_fd, 0, 0)
        if self.acl:
            self.report.root_mismatched = self._root_state(f"/proc/self/fd/{parent_fd}/{name}", st)
        else:
            self.report.root_mismatched = self._owner_differs(st)
        if self.options.policy == "on_root_mismatch" and not self.report.root_mismatched:
            return self.report
        # The root is named relative to its parent: its path relative to the root is "".
        self._entry(frame, name, st, rel="")
        self.report.complete = not self.incomplete
        return self.report


def scan(path: str, target: Target, options: WalkOptions | None = None) -> OwnershipReport:
    """Examine ``path`` and count what :func:`fix` would change; change nothing."""
    return _Walker(path, target, options or WalkOptions(), apply=False).run()


def fix(path: str, target: Target, options: WalkOptions | None = None) -> OwnershipReport:
    """Change what differs below ``path`` (the root last); return what was done."""
    return _Walker(path, target, options or WalkOptions(), apply=True).run()
