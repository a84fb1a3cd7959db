# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""A container's file read straight from its overlay layer directories on the host.

Asking the engine for a container's /etc/passwd costs a round trip through dockerd's archive
endpoint (about 50 ms) or a ``podman cp`` process (about 190 ms); the same bytes sit in the
storage driver's layer directories, which the engine's inspect names (``GraphDriver.Data``:
``UpperDir``, the container's own layer, then ``LowerDir``, the image's layers, topmost first).
:func:`read_layered_file` looks a path up through those directories the way overlayfs merges
them, or raises :class:`LayerUnsafe` when it cannot be sure to see what the container sees;
the caller then asks the engine.

What is honoured, layer by layer from the top:

- a whiteout hides the name in every lower layer: a character device 0/0 (kernel overlayfs,
  Docker's overlay2, podman's overlay), a ``.wh.NAME`` file (fuse-overlayfs, the OCI layer
  format) or a zero-size file with an ``overlay.whiteout`` extended attribute;
- an opaque directory hides the lower layers' entries below it: the ``overlay.opaque``
  extended attribute (``trusted.``, ``user.``), ``user.fuseoverlayfs.opaque``, or a
  ``.wh..wh..opq`` file inside it;
- a non-directory in an upper layer hides a directory of the same name below.

Never followed: every component of every layer directory's own path and of the path inside is
opened with ``O_NOFOLLOW`` from ``/``, so a symbolic link anywhere (also /etc/passwd itself
being one in the image) raises LayerUnsafe instead of resolving on the host. So do a
directory redirected by ``overlay.redirect``, a file whose data lives in a lower layer
(``overlay.metacopy``), a missing layer directory and anything but a regular file at the end.
Files are opened with ``O_NONBLOCK`` and checked with ``fstat`` before a byte is read (a FIFO
or a device is never opened for reading), and read up to a size limit.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import MAX_FILE_BYTES

# What overlayfs implementations write into layer directories (xattr names without the namespace).
OPAQUE_XATTRS: tuple[str, ...] = ("trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque")
WHITEOUT_XATTRS: tuple[str, ...] = ("trusted.overlay.whiteout", "user.overlay.whiteout")
UNSAFE_XATTRS: tuple[str, ...] = (
    "trusted.overlay.redirect", "user.overlay.redirect", "trusted.overlay.metacopy", "user.overlay.metacopy",
)
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class LayerUnsafe(PermfixError):
    """The layer directories cannot be read safely or surely; the message says why (ask the engine)."""


def layer_dirs(graph_driver: object) -> list[str] | None:
    """The layer directories of an inspect's ``GraphDriver`` (the container's own first, then the
    image's, topmost first); None when the driver is not overlay or a directory is not named."""
    if not isinstance(graph_driver, dict) or graph_driver.get("Name") not in ("overlay2", "overlay"):
        return None
    data = graph_driver.get("Data")
    if not isinstance(data, dict):
        return None
    upper = data.get("UpperDir")
    lower = data.get("LowerDir") or ""
    if not isinstance(upper, str) or not upper.startswith("/") or not isinstance(lower, str):
        return None
    lowers = [item for item in lower.split(":") if item] if lower else []
    if not all(item.startswith("/") for item in lowers):
        return None
    return [upper, *lowers]


def _components(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part and part != "."]
    if ".." in parts:
        raise LayerUnsafe(f"{path!r} has a '..' component")
    return parts


def open_dir_nofollow(path: str) -> int:
    """A directory descriptor for the absolute ``path``, opened one component at a time with
    O_NOFOLLOW from ``/``. Raises LayerUnsafe (a symbolic link, not a directory, missing)."""
    if not path.startswith("/"):
        raise LayerUnsafe(f"the layer directory {path!r} is not an absolute path")
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in _components(path):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise LayerUnsafe(f"the layer directory {path} cannot be opened without following links: "
                                  f"{os.strerror(exc.errno or errno.EIO)} at {part!r}") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _has_xattr(fd: int, names: Sequence[str]) -> bool:
    for name in names:
        try:
            value = os.getxattr(fd, name)
        except OSError:
            continue
        if name in OPAQUE_XATTRS:
            if value.strip(b"\0") in (b"y", b"x"):
                return True
            continue
        return True
    return False


def _lstat(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _is_whiteout(fd: int, name: str, st: os.stat_result | None) -> bool:
    if st is not None and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return True
    return _lstat(fd, WHITEOUT_PREFIX + name) is not None


def _is_opaque(fd: int) -> bool:
    return _has_xattr(fd, OPAQUE_XATTRS) or _lstat(fd, OPAQUE_MARKER) is not None


def _read_regular(fd: int, name: str, where: str) -> bytes | None:
    """The bytes of the regular file ``name`` in ``fd``; None when it is a whiteout file."""
    try:
        handle = os.open(name, _FILE_FLAGS, dir_fd=fd)
    except OSError as exc:
        raise LayerUnsafe(f"{where} cannot be opened without following links: {os.strerror(exc.errno or 5)}") from None
    try:
        st = os.fstat(handle)
        if not stat.S_ISREG(st.st_mode):
            raise LayerUnsafe(f"{where} changed while it was opened")
        if _has_xattr(handle, UNSAFE_XATTRS):
            raise LayerUnsafe(f"{where} keeps its data in a lower layer (overlay metacopy)")
        if st.st_size == 0 and _has_xattr(handle, WHITEOUT_XATTRS):
            return None
        if st.st_size > MAX_FILE_BYTES:
            raise LayerUnsafe(f"{where} is larger than {MAX_FILE_BYTES} bytes")
        chunks = []
        total = 0
        while True:
            chunk = os.read(handle, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise LayerUnsafe(f"{where} is larger than {MAX_FILE_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(handle)


def read_layered_file(layers: Sequence[str], path: str) -> bytes | None:
    """The bytes of ``path`` as the merged overlay of ``layers`` (topmost first) shows it, None
    when it is absent there or not a regular file. Raises LayerUnsafe when that cannot be known
    without following a symbolic link (or the layers are not all there)."""
    parts = _components(path)
    if not parts or not layers:
        raise LayerUnsafe(f"nothing to look up ({path!r} in {len(layers)} layers)")
    opened: list[int] = []
    try:
        for layer in layers:
            opened.append(open_dir_nofollow(layer))
        candidates = list(opened)
        for depth, name in enumerate(parts):
            last = depth == len(parts) - 1
            below: list[int] = []
            for fd in candidates:
                st = _lstat(fd, name)
                if _is_whiteout(fd, name, st):
                    break
                if st is None:
                    continue
                where = f"{path} in the layer directories"
                if stat.S_ISLNK(st.st_mode):
                    raise LayerUnsafe(f"{'/' + '/'.join(parts[:depth + 1])} is a symbolic link in a layer")
                if last:
                    if not stat.S_ISREG(st.st_mode):
                        return None
                    data = _read_regular(fd, name, where)
                    if data is None:  # a whiteout file (overlay.whiteout xattr)
                        return None
                    return data
                if not stat.S_ISDIR(st.st_mode):
                    break
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise LayerUnsafe(f"{where}: a directory cannot be opened: {os.strerror(exc.errno or 5)}") from None
                opened.append(child)
                if _has_xattr(child, UNSAFE_XATTRS):
                    raise LayerUnsafe(f"{where}: a directory is redirected (overlay redirect_dir)")
                below.append(child)
                if _is_opaque(child):
                    break
            if last or not below:
                return None
            candidates = below
        return None  # pragma: no cover - the loop returns at the last component
    finally:
        for fd in opened:
            os.close(fd)


def layer_changes(upper: str, paths: Sequence[str]) -> bool:
    """Whether the container's own layer ``upper`` holds anything that changes one of ``paths``
    (an entry, a whiteout or an opaque directory on the way). Raises LayerUnsafe."""
    fd = open_dir_nofollow(upper)
    try:
        for path in paths:
            if _changes_path(fd, _components(path)):
                return True
        return False
    finally:
        os.close(fd)


def _changes_path(root: int, parts: list[str]) -> bool:
    fd = root
    opened: list[int] = []
    try:
        for depth, name in enumerate(parts):
            st = _lstat(fd, name)
            if _is_whiteout(fd, name, st):
                return True
            if st is None:
                return False
            if depth == len(parts) - 1 or not stat.S_ISDIR(st.st_mode):
                return True
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                return True
            opened.append(child)
            if _is_opaque(child) or _has_xattr(child, UNSAFE_XATTRS):
                return True
            fd = child
        return False
    finally:
        for item in opened:
            os.close(item)
