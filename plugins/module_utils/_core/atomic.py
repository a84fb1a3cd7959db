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

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import LockError, root_advice


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


SERIAL_LOCK_DIRS = ("/run/lock", "/var/lock")
SERIAL_LOCK_NAME = "permfix-subid.lock"


class SerialLock:
    """An exclusive flock of our own, held across read, allocate and write, so that two runs
    (whatever writer they use) never pick the same free block."""

    def __init__(self, timeout: float = 60.0, directory: str | None = None) -> None:
        self.timeout = timeout
        if directory is None:
            directory = next(
                (d for d in SERIAL_LOCK_DIRS if os.path.isdir(d) and os.access(d, os.W_OK)), tempfile.gettempdir()
            )
        self.path = os.path.join(directory, SERIAL_LOCK_NAME)
        self._fd: int | None = None

    def __enter__(self) -> SerialLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    raise LockError(
                        f"another run holds {self.path} for more than {self.timeout:.0f} seconds; try again"
                    ) from exc
                time.sleep(0.05)
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


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
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
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
            with open(mine, "w", encoding="ascii") as handle:
                handle.write(str(os.getpid()))
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
