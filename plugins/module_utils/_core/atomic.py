# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Changing files safely: atomic replacement, backups, and the locks shadow-utils honours.

:func:`write_atomically` writes a temporary file in the same directory (same owner, mode and
SELinux label, flushed), renames it over the file and flushes the directory, so a reader sees
the old file or the new one, never a part. :class:`ShadowLock` takes shadow-utils' own locks
(lckpwdf's ``.pwd.lock`` and ``FILE.lock``) so that ``useradd``/``usermod`` never write at the
same time; :class:`SerialLock` serialises runs of this collection among themselves.
:func:`backup_copy` keeps a copy the way ``AnsibleModule.backup_local`` names it.
:func:`link_target` is the file to write when the path is a symbolic link (shadow-utils and
every reader follow the link, so the file it leads to is the one to replace, never the link).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import (
    LockError,
    PermfixError,
    root_advice,
)


def _fsync_directory(directory: str) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# ---------------------------------------------------------------------------------------------
# Locks and atomic writes


SERIAL_LOCK_DIR = "/run/permfix-containers"
SERIAL_LOCK_NAME = "subid.lock"
SERIAL_LOCK_TIMEOUT = 60.0
# For tests only: how long SerialLock waits (seconds) when its caller gives no timeout. Users
# never need it; the test suite sets it so that a held lock fails in a second, not a minute.
SERIAL_LOCK_TIMEOUT_ENV = "PERMFIX_TEST_SERIAL_LOCK_TIMEOUT"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or f"error {exc.errno}"


def private_directory(path: str) -> int:
    """A descriptor of the directory ``path`` (made 0700 when absent), refused with a
    :class:`LockError` unless it is a real directory (not a symbolic link) owned by root that
    neither its group nor others can write: nobody but root can then plant a lock in it."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        hint = root_advice("; run as root (become: true)") if exc.errno in (errno.EACCES, errno.EPERM) else (
            f"; its parent {os.path.dirname(path)} must be writable by root"
        )
        raise LockError(f"cannot create the lock directory {path}: {_reason(exc)}{hint}") from exc
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "a symbolic link" if os.path.islink(path) else "not a directory"
            raise LockError(
                f"the lock directory {path} is {what}; someone else made it, so it is not used: "
                f"remove it (as root) and run again"
            ) from exc
        raise LockError(f"cannot open the lock directory {path}: {_reason(exc)}") from exc
    info = os.fstat(fd)
    problem = None
    if info.st_uid != 0:
        problem = f"is owned by uid {info.st_uid}, not root"
    elif info.st_mode & 0o022:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}, writable by its group or others"
    if problem is not None:
        os.close(fd)
        raise LockError(
            f"the lock directory {path} {problem}, so another user could hold or replace the lock: "
            f"remove it (as root) and run again"
        )
    return fd


def serial_lock_timeout() -> float:
    """SerialLock's wait: SERIAL_LOCK_TIMEOUT, or the test suite's SERIAL_LOCK_TIMEOUT_ENV."""
    try:
        value = float(os.environ.get(SERIAL_LOCK_TIMEOUT_ENV, ""))
    except ValueError:
        return SERIAL_LOCK_TIMEOUT
    return value if value >= 0 else SERIAL_LOCK_TIMEOUT


class SerialLock:
    """An exclusive flock of our own, held across read, allocate and write, so that two runs
    (whatever writer they use) never pick the same free block.

    The lock file lives in a directory only root may write (SERIAL_LOCK_DIR, made 0700 and
    checked by :func:`private_directory`), so another local user can neither pre-create it nor
    hold it. It is opened with ``O_NOFOLLOW``; the holder writes its pid into it. Every failure
    is a :class:`LockError` with a sentence.
    """

    def __init__(self, timeout: float | None = None, directory: str = SERIAL_LOCK_DIR) -> None:
        self.timeout = serial_lock_timeout() if timeout is None else timeout
        self.directory = directory
        self.path = os.path.join(directory, SERIAL_LOCK_NAME)
        self._fd: int | None = None

    def __enter__(self) -> SerialLock:
        directory = private_directory(self.directory)
        try:
            fd = os.open(
                SERIAL_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=directory
            )
        except OSError as exc:
            raise LockError(f"cannot open the lock {self.path}: {_reason(exc)}") from exc
        finally:
            os.close(directory)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != 0:
                raise LockError(f"the lock {self.path} is not a regular file owned by root; remove it and run again")
            self._wait(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:
            os.close(fd)
            raise LockError(f"cannot take the lock {self.path}: {_reason(exc)}") from exc
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _wait(self, fd: int) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    holder = _pid_in(fd)
                    by = f" (process {holder})" if holder is not None else ""
                    raise LockError(
                        f"another run of permfix.containers.subid{by} held {self.path} for more than "
                        f"{self.timeout:g} seconds; try again when it has finished"
                    ) from exc
                time.sleep(0.05)

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class ShadowLock:
    """shadow-utils' locks on a set of files, taken the way its commonio code takes them.

    First lckpwdf(3)'s lock: an fcntl write lock on ``.pwd.lock`` in each file's directory
    (``/etc/.pwd.lock`` for the system files, which is glibc's). Then ``FILE.lock`` for each
    file: a file ``FILE.PID`` holding our pid is linked to ``FILE.lock``; a lock left by a
    process that no longer exists is replaced. Released in the reverse order.
    """

    def __init__(self, paths: Sequence[str], timeout: float = 15.0) -> None:
        self.paths = sorted(set(paths))
        self.timeout = timeout
        self._fds: list[int] = []
        self._locks: list[str] = []

    def __enter__(self) -> ShadowLock:
        try:
            for directory in sorted({os.path.dirname(os.path.abspath(path)) for path in self.paths}):
                self._fds.append(self._lckpwdf(os.path.join(directory, ".pwd.lock")))
            for path in self.paths:
                self._link_lock(path)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for lock in reversed(self._locks):
            try:
                os.unlink(lock)
            except OSError:
                pass
        self._locks = []
        for fd in reversed(self._fds):
            try:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._fds = []

    def _lckpwdf(self, path: str) -> int:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LockError(f"the password file lock {path} is a symbolic link; remove it and run again") from exc
            raise LockError(
                f"cannot open the password file lock {path}: {exc.strerror or exc}" + root_advice("; run as root")
            ) from exc
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    raise LockError(
                        f"{path} stayed locked for {self.timeout:.0f} seconds (another useradd, usermod or vipw is "
                        "running); try again when it has finished"
                    ) from exc
                time.sleep(0.05)

    def _link_lock(self, path: str) -> None:
        lock = f"{path}.lock"
        mine = f"{path}.{os.getpid()}"
        deadline = time.monotonic() + self.timeout
        try:
            _write_new(mine, str(os.getpid()))
        except OSError as exc:
            raise LockError(
                f"cannot create the lock file {mine}: {exc.strerror or exc}" + root_advice("; run as root")
            ) from exc
        try:
            while True:
                try:
                    os.link(mine, lock)
                    self._locks.append(lock)
                    return
                except FileExistsError:
                    holder = _lock_holder(lock)
                    if holder is not None and not _alive(holder):
                        try:
                            os.unlink(lock)
                        except FileNotFoundError:
                            pass
                        continue
                    if time.monotonic() > deadline:
                        raise LockError(
                            f"{lock} is held by process {holder if holder is not None else '(unknown)'}; "
                            "try again when it has finished"
                        ) from None
                    time.sleep(0.05)
                except OSError as exc:
                    raise LockError(f"cannot create the lock {lock}: {exc.strerror or exc}") from exc
        finally:
            try:
                os.unlink(mine)
            except OSError:
                pass


def _write_new(path: str, text: str) -> None:
    """Create ``path`` (never through a symbolic link, never into an existing file: a leftover of
    an earlier process with the same pid is removed first) holding ``text``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        os.unlink(path)
        fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)


def _lock_holder(lock: str) -> int | None:
    try:
        with open(lock, encoding="ascii", errors="replace") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LinkTargetError(PermfixError):
    """A symbolic link that a write must not go through (dangling, a loop, or leading somewhere odd)."""


def link_target(path: str) -> str:
    """The file a write of ``path`` must replace so that readers that follow links see it.

    ``path`` itself when it is not a symbolic link (or does not exist). For a link (or a chain
    of links): the file it finally leads to, which must exist, be a regular file, and sit in a
    directory that neither its group nor others can write (a file in /tmp could be swapped by
    anyone). Otherwise :class:`LinkTargetError` says why; the link is never replaced.
    """
    try:
        if not stat.S_ISLNK(os.lstat(path).st_mode):
            return path
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise LinkTargetError(f"cannot examine {path}: {exc.strerror or exc}") from exc
    try:
        os.stat(path)
    except FileNotFoundError:
        raise LinkTargetError(
            f"{path} is a symbolic link to {os.readlink(path)!r}, which does not exist; "
            "create the file it points to, or replace the link with a file"
        ) from None
    except OSError as exc:
        raise LinkTargetError(f"{path} is a symbolic link that cannot be followed: {exc.strerror or exc}") from exc
    target = os.path.realpath(path)
    info = os.lstat(target)
    if not stat.S_ISREG(info.st_mode):
        raise LinkTargetError(f"{path} is a symbolic link to {target}, which is not a regular file; not written")
    directory = os.path.dirname(target)
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    if mode & 0o022:
        raise LinkTargetError(
            f"{path} is a symbolic link to {target}, in {directory} (mode {mode:04o}) which others can write, "
            "so anyone there could swap the file; move the file to a directory only root can write"
        )
    return target


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``: a temporary file in the same directory with the same owner,
    mode (``mode`` for a new file) and SELinux label, flushed to disk, renamed over ``path``, and
    the directory flushed too.

    The temporary name starts with a dot and does not end like the file (``.NAME.XXXXXX``), so
    readers of ``*.conf`` or of the file itself never see a partial file. Text that came in with
    surrogate escapes is written back byte for byte.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        current: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        current = None
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8", "surrogateescape"))
            handle.flush()
            if current is not None:
                os.fchmod(handle.fileno(), stat.S_IMODE(current.st_mode))
                if (current.st_uid, current.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(handle.fileno(), current.st_uid, current.st_gid)
            else:
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        _copy_selinux_label(path, temporary)
        os.rename(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def backup_copy(path: str) -> str:
    """Copy ``path`` beside itself as ``PATH.PID.YYYY-MM-DD@HH:MM:SS~`` (the name and the kept owner,
    mode and times of ``AnsibleModule.backup_local``) and return the copy's path."""
    stamp = time.strftime("%Y-%m-%d@%H:%M:%S~", time.localtime(time.time()))
    destination = f"{path}.{os.getpid()}.{stamp}"
    shutil.copy2(path, destination)
    current = os.stat(path)
    os.chown(destination, current.st_uid, current.st_gid)
    return destination


def _copy_selinux_label(source: str, target: str) -> None:
    try:
        import selinux
    except ImportError:
        return
    try:
        if selinux.is_selinux_enabled() and os.path.exists(source):
            selinux.lsetfilecon(target, selinux.lgetfilecon(source)[1])
    except OSError:
        return
