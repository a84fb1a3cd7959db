# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Kernel parameters (sysctl): the runtime value and the value the system applies at boot.

The boot value is resolved the way ``sysctl --system`` (procps-ng) and systemd-sysctl do:

* every ``*.conf`` file of the sysctl directories (by default /etc/sysctl.d, /run/sysctl.d,
  /usr/local/lib/sysctl.d, /usr/lib/sysctl.d, /lib/sysctl.d, in that priority), where a file
  in a directory earlier in the list hides a same-named file in a later one;
* the remaining files applied in the byte order of their names, whatever their directory;
* then /etc/sysctl.conf, applied last (procps); on Debian /etc/sysctl.d/99-sysctl.conf is a
  symbolic link to it, so it is applied at that position too;
* within a file, lines in order: ``#`` and ``;`` start comments, ``-key = value`` ignores
  errors, keys may be written with dots or slashes, spaces around keys and values do not
  count, and a later assignment of the same key wins.

A value the kernel refuses (not a number, out of range) does not change anything, so the
boot value is the last *valid* assignment, or the kernel's default when there is none.

Changes are planned first (:func:`plan_dropin`, :func:`plan_in_place`) as whole-file contents,
so check mode and diff mode see exactly what a real run writes; :func:`apply_changes` then
writes each file atomically and puts everything back if one write fails.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.atomic import write_atomically
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError, root_advice
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import pick

UNPRIVILEGED_PORT_KEY = "net.ipv4.ip_unprivileged_port_start"
DEFAULT_SYSCTL_DIRS: tuple[str, ...] = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
DEFAULT_SYSCTL_CONF = "/etc/sysctl.conf"
DEFAULT_PROC_PATH = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
DEFAULT_LOCAL_PORT_RANGE_PATH = "/proc/sys/net/ipv4/ip_local_port_range"
# The value the kernel gives net.ipv4.ip_unprivileged_port_start when nothing sets it.
KERNEL_DEFAULT_UNPRIVILEGED_PORT = 1024
PORT_MIN = 0
PORT_MAX = 65535

DROPIN_NAME = "99-permfix-unprivileged-port.conf"
# A drop-in that must sort after NAME.conf is called NAME.<DROPIN_SUFFIX>: "." + "p" sorts
# after ".c", so it comes after NAME.conf whatever NAME is.
DROPIN_SUFFIX = "permfix-unprivileged-port.conf"
MARKER = "# Managed by permfix.containers.unprivileged_port; edit with that module or remove this file."

_INTEGER = re.compile(r"^-?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")


class SysctlError(PermfixError):
    """Something about the kernel parameter or its files stops us; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def normalize_key(key: str) -> str:
    """The dotted form of a sysctl key (``net/ipv4/x`` and ``net.ipv4.x`` are the same key)."""
    return key.strip(" \t").replace("/", ".")


def parse_value(raw: str) -> int | None:
    """The integer the kernel would store for ``raw``, None when it would refuse the write.

    The kernel reads the first whitespace-separated number (decimal, ``0x`` hexadecimal or
    ``0`` octal, like strtoul with base 0, no ``+`` sign) and ignores what follows a blank;
    the parameter only takes 0 to 65535.
    """
    tokens = raw.split()
    if not tokens or not _INTEGER.match(tokens[0]):
        return None
    token = tokens[0]
    sign = -1 if token.startswith("-") else 1
    digits = token.lstrip("-")
    if digits[:2] in ("0x", "0X"):
        number = int(digits[2:], 16)
    elif len(digits) > 1 and digits.startswith("0"):
        number = int(digits[1:], 8)
    else:
        number = int(digits)
    number *= sign
    if number < PORT_MIN or number > PORT_MAX:
        return None
    return number


@dataclass(frozen=True)
class ParsedLine:
    """A line of a sysctl file that assigns a value to a key."""

    key: str
    raw_value: str
    ignore_errors: bool


def parse_sysctl_line(text: str) -> ParsedLine | None:
    """The assignment on one line, None for blank lines, comments and ``-key`` exclusions."""
    stripped = text.strip(" \t\r\n")
    if len(stripped) < 2 or stripped[0] in "#;":
        return None
    if "=" not in stripped:
        return None
    key, value = stripped.split("=", 1)
    ignore_errors = key.startswith("-")
    if ignore_errors:
        key = key[1:]
    key = normalize_key(key)
    if not key:
        return None
    return ParsedLine(key, value.strip(" \t"), ignore_errors)


# --------------------------------------------------------------------------------------------
# Files and precedence
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigFile:
    """One configuration file sysctl --system looks at."""

    path: str
    name: str
    directory: str
    real_path: str
    is_conf: bool = False  # /etc/sysctl.conf (applied after every drop-in)
    masked_by: str | None = None  # the same-named file in a higher-priority directory

    @property
    def applied(self) -> bool:
        return self.masked_by is None


@dataclass(frozen=True)
class Assignment:
    """A line of a configuration file that sets the key."""

    path: str
    real_path: str
    name: str
    line: int
    text: str
    raw_value: str
    value: int | None
    ignore_errors: bool
    applied: bool
    is_conf: bool

    @property
    def valid(self) -> bool:
        return self.value is not None

    def as_dict(self, winner: Assignment | None = None) -> dict[str, Any]:
        return dict(
            pick(self, "path", "real_path", "line", "text", "raw_value", "value", "valid", "applied"),
            winner=winner is self,
        )


@dataclass
class Resolution:
    """Where the boot value of a key comes from."""

    key: str
    files: list[ConfigFile]  # applied files in the order sysctl --system applies them, then masked ones
    assignments: list[Assignment]  # every line setting the key: applied ones in order, then masked ones
    default: int
    contents: dict[str, str] = field(default_factory=dict)  # real path -> text as read

    @property
    def applied_assignments(self) -> list[Assignment]:
        return [item for item in self.assignments if item.applied]

    @property
    def winner(self) -> Assignment | None:
        """The last valid applied assignment: the one whose value the key has after boot."""
        valid = [item for item in self.applied_assignments if item.valid]
        return valid[-1] if valid else None

    @property
    def value(self) -> int:
        winner = self.winner
        return self.default if winner is None or winner.value is None else winner.value

    def as_dict(self) -> dict[str, Any]:
        winner = self.winner
        return {
            "value": self.value,
            "path": winner.path if winner else None,
            "line": winner.line if winner else None,
            "default": winner is None,
        }


def _name_key(name: str) -> bytes:
    return os.fsencode(name)


def list_config_files(sysctl_dirs: Sequence[str], sysctl_conf: str | None) -> list[ConfigFile]:
    """The configuration files in the order sysctl --system applies them, then the masked ones."""
    chosen: dict[str, ConfigFile] = {}
    masked: list[ConfigFile] = []
    for directory in sysctl_dirs:
        try:
            names = sorted(os.listdir(directory), key=_name_key)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise SysctlError(f"cannot list the sysctl directory {directory}: {exc.strerror}") from exc
        for name in names:
            if len(name) < 5 or not name.endswith(".conf"):
                continue
            path = os.path.join(directory, name)
            real_path = os.path.realpath(path)
            if name in chosen:
                winner = chosen[name]
                if winner.real_path != real_path:  # /lib -> /usr/lib is the same file, not a mask
                    masked.append(ConfigFile(path, name, directory, real_path, masked_by=winner.path))
                continue
            chosen[name] = ConfigFile(path, name, directory, real_path)
    files = sorted(chosen.values(), key=lambda item: _name_key(item.name))
    if sysctl_conf and os.path.isfile(sysctl_conf):
        files.append(
            ConfigFile(
                sysctl_conf,
                os.path.basename(sysctl_conf),
                os.path.dirname(sysctl_conf),
                os.path.realpath(sysctl_conf),
                is_conf=True,
            )
        )
    return files + masked


def read_config_text(path: str) -> str:
    """A configuration file's text ('' for anything that is not a readable regular file).

    A link to /dev/null (how a vendor file is masked) or a dangling link sets nothing.
    Undecodable bytes survive a read/write round trip unchanged.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return ""
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise SysctlError(f"cannot read {path}: {exc.strerror}") from exc


def resolve(
    key: str = UNPRIVILEGED_PORT_KEY,
    sysctl_dirs: Sequence[str] = DEFAULT_SYSCTL_DIRS,
    sysctl_conf: str | None = DEFAULT_SYSCTL_CONF,
    default: int = KERNEL_DEFAULT_UNPRIVILEGED_PORT,
) -> Resolution:
    """Every line that sets ``key`` and the value the key gets at boot."""
    wanted = normalize_key(key)
    files = list_config_files(sysctl_dirs, sysctl_conf)
    applied: list[Assignment] = []
    masked: list[Assignment] = []
    contents: dict[str, str] = {}
    for config in files:
        if config.real_path not in contents:
            contents[config.real_path] = read_config_text(config.path)
        for number, text in enumerate(contents[config.real_path].splitlines(), start=1):
            parsed = parse_sysctl_line(text)
            if parsed is None or parsed.key != wanted:
                continue
            item = Assignment(
                path=config.path,
                real_path=config.real_path,
                name=config.name,
                line=number,
                text=text,
                raw_value=parsed.raw_value,
                value=parse_value(parsed.raw_value),
                ignore_errors=parsed.ignore_errors,
                applied=config.applied,
                is_conf=config.is_conf,
            )
            (applied if config.applied else masked).append(item)
    return Resolution(wanted, files, applied + masked, default, contents)


# --------------------------------------------------------------------------------------------
# Runtime value
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """The value the kernel uses now, in the network namespace of this process."""

    path: str
    supported: bool
    value: int | None
    writable: bool
    netns: str | None
    initial_netns: bool | None

    def as_dict(self) -> dict[str, Any]:
        return pick(self, "path", "supported", "value", "writable", "netns", "initial_netns")


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def read_runtime(path: str = DEFAULT_PROC_PATH, proc_root: str = "/proc") -> Runtime:
    """Read the runtime value at ``path``; ``supported`` is False when the kernel lacks the key."""
    netns = _readlink(os.path.join(proc_root, "self", "ns", "net"))
    init_netns = _readlink(os.path.join(proc_root, "1", "ns", "net"))
    initial = None if netns is None or init_netns is None else netns == init_netns
    try:
        with open(path, encoding="ascii") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return Runtime(path, False, None, False, netns, initial)
    except OSError as exc:
        raise SysctlError(f"cannot read {path}: {exc.strerror}") from exc
    value = parse_value(raw)
    if value is None:
        raise SysctlError(f"{path} holds {raw.strip()!r}, which is not a port number")
    return Runtime(path, True, value, is_writable(path), netns, initial)


def is_writable(path: str) -> bool:
    """Whether ``path`` is on a writable mount (an unprivileged container mounts /proc/sys read-only)."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    return os.access(path, os.W_OK)


def read_local_port_range(path: str = DEFAULT_LOCAL_PORT_RANGE_PATH) -> tuple[int, int] | None:
    """net.ipv4.ip_local_port_range as (low, high), None when it cannot be read."""
    try:
        with open(path, encoding="ascii") as handle:
            parts = handle.read().split()
    except OSError:
        return None
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        return None
    return int(parts[0]), int(parts[1])


def write_runtime(path: str, value: int) -> None:
    """Write ``value`` to the kernel and check it took; SysctlError with the reason otherwise."""
    try:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(f"{value}\n")
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise SysctlError(
                f"the kernel refused {value} for {path} (the value must not exceed the lowest port of "
                "net.ipv4.ip_local_port_range)"
            ) from exc
        if exc.errno in (errno.EROFS, errno.EPERM, errno.EACCES):
            raise SysctlError(
                f"cannot write {path}: {exc.strerror} ("
                + root_advice("run as root on the host, or ", "this looks like ")
                + "a container: it needs CAP_NET_ADMIN and a writable /proc/sys)"
            ) from exc
        raise SysctlError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with open(path, encoding="ascii") as handle:
            now = parse_value(handle.read())
    except OSError as exc:
        raise SysctlError(f"cannot read {path} back: {exc.strerror}") from exc
    if now != value:
        raise SysctlError(f"wrote {value} to {path} but the kernel reports {now}")


# --------------------------------------------------------------------------------------------
# Planning file changes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    """One file to write (``after`` is its whole new text) or remove (``after`` None)."""

    path: str
    before: str | None
    after: str | None
    reason: str

    @property
    def action(self) -> str:
        if self.after is None:
            return "removed"
        return "created" if self.before is None else "updated"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "reason": self.reason}

    def diff(self) -> dict[str, str]:
        return {
            "before_header": self.path if self.before is not None else f"{self.path} (absent)",
            "after_header": self.path if self.after is not None else f"{self.path} (removed)",
            "before": self.before or "",
            "after": self.after or "",
        }


def dropin_content(key: str, value: int) -> str:
    """The text of the drop-in this collection writes."""
    return (
        f"{MARKER}\n"
        "# Rootless containers may publish host ports from this value up; lower ports stay\n"
        "# privileged (least privilege: the lowest port a rootless container needs).\n"
        f"{key} = {value}\n"
    )


def is_managed(text: str) -> bool:
    """Whether a file was written by this collection (its first line is the marker)."""
    return text.split("\n", 1)[0].rstrip("\r") == MARKER


def dropin_name_after(names: Iterable[str], preferred: str = DROPIN_NAME) -> str:
    """``preferred`` when it sorts after every name in ``names``, else a name just after the last."""
    ordered = sorted(names, key=_name_key)
    if not ordered or _name_key(preferred) > _name_key(ordered[-1]):
        return preferred
    last = ordered[-1]
    stem = last[: -len(".conf")] if last.endswith(".conf") else last
    return f"{stem}.{DROPIN_SUFFIX}"


def _managed_files(resolution: Resolution, dropin_dir: str) -> list[ConfigFile]:
    directory = os.path.normpath(dropin_dir)
    return [
        config
        for config in resolution.files
        if config.applied
        and not config.is_conf
        and os.path.normpath(config.directory) == directory
        and is_managed(resolution.contents.get(config.real_path, ""))
    ]


def plan_dropin(
    resolution: Resolution,
    value: int,
    sysctl_dirs: Sequence[str],
    dropin_name: str = DROPIN_NAME,
) -> list[FileChange]:
    """The file changes that make ``value`` the boot value through a drop-in that wins.

    The drop-in goes into the first (highest-priority) sysctl directory with a name that sorts
    after every other file setting the key; older drop-ins of this collection are removed.
    Raises SysctlError when no drop-in can win (a different value in /etc/sysctl.conf, which
    is applied last) or the name would hide another file.
    """
    if resolution.value == value:
        return []
    if not sysctl_dirs:
        raise SysctlError("no sysctl directory is configured to put a drop-in in")
    dropin_dir = sysctl_dirs[0]
    managed = _managed_files(resolution, dropin_dir)
    managed_paths = {config.path for config in managed}
    for item in resolution.applied_assignments:
        if item.is_conf and item.valid and item.value != value:
            raise SysctlError(
                f"{item.path} line {item.line} sets {resolution.key} = {item.raw_value}, and sysctl --system "
                f"applies {item.path} after every drop-in, so no file in {dropin_dir} can win at boot. "
                "Set persist_mode to in_place to change that line, or remove it and run again"
            )
    setters = {
        item.name
        for item in resolution.applied_assignments
        if not item.is_conf and item.path not in managed_paths
    }
    name = dropin_name_after(setters, dropin_name)
    path = os.path.join(dropin_dir, name)
    for config in resolution.files:
        if config.name != name or config.path in managed_paths:
            continue
        if os.path.normpath(config.directory) == os.path.normpath(dropin_dir) or config.is_conf:
            raise SysctlError(
                f"{config.path} exists and was not written by permfix.containers; choose another dropin_name"
            )
        raise SysctlError(
            f"a drop-in named {path} would hide {config.path} (a file with the same name in a lower-priority "
            "directory); choose another dropin_name"
        )
    content = dropin_content(resolution.key, value)
    changes: list[FileChange] = []
    before = resolution.contents.get(os.path.realpath(path)) if path in managed_paths else None
    if before != content:
        reason = (
            f"sets {resolution.key} = {value}; its name sorts after every other file that sets the key, "
            "so it wins at boot"
        )
        changes.append(FileChange(path, before, content, reason))
    for config in managed:
        if config.path != path:
            changes.append(
                FileChange(
                    config.path,
                    resolution.contents.get(config.real_path, ""),
                    None,
                    f"replaced by {path}, which sorts after every file that sets the key",
                )
            )
    return changes


def replace_value_in_line(text: str, value: int) -> str:
    """``text`` with the number it sets replaced by ``value``.

    Only the first token after ``=`` changes: the key, the ``-`` prefix, the spacing, a trailing
    remark after a blank (which the kernel ignores) and the line end stay as they were.
    """
    body = text.rstrip("\r\n")
    ending = text[len(body):]
    left, right = body.split("=", 1)
    rest = right.lstrip(" \t")
    leading = right[: len(right) - len(rest)]
    tokens = rest.split()
    remainder = rest[len(tokens[0]):] if tokens else rest
    return f"{left}={leading}{value}{remainder}{ending}"


def plan_in_place(
    resolution: Resolution,
    value: int,
    sysctl_dirs: Sequence[str],
    sysctl_conf: str | None,
    dropin_name: str = DROPIN_NAME,
) -> list[FileChange]:
    """Change the winning line in place when it is in /etc; a drop-in otherwise.

    Vendor files (under /usr/lib, /lib, /run) are never edited: a package update would undo
    the change; a drop-in in the first sysctl directory wins over them instead.
    """
    if resolution.value == value:
        return []
    winner = resolution.winner
    editable = {os.path.normpath(sysctl_dirs[0])} if sysctl_dirs else set()
    conf_real = os.path.realpath(sysctl_conf) if sysctl_conf else None
    if winner is not None and (
        os.path.normpath(os.path.dirname(winner.path)) in editable or winner.real_path == conf_real
    ):
        before = resolution.contents[winner.real_path]
        lines = before.splitlines(keepends=True)
        lines[winner.line - 1] = replace_value_in_line(lines[winner.line - 1], value)
        after = "".join(lines)
        reason = f"line {winner.line} set {resolution.key} = {winner.raw_value}; changed in place to {value}"
        return [FileChange(winner.real_path, before, after, reason)]
    return plan_dropin(resolution, value, sysctl_dirs, dropin_name)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def apply_file_changes(changes: Sequence[FileChange]) -> None:
    """Write and remove files in order; on failure put back what was already done, then raise."""
    done: list[FileChange] = []
    created_dirs: list[str] = []
    try:
        for change in changes:
            if change.after is not None:
                directory = os.path.dirname(change.path)
                if directory and not os.path.isdir(directory):
                    os.makedirs(directory, mode=0o755)
                    created_dirs.append(directory)
                write_atomically(change.path, change.after)
            else:
                os.unlink(change.path)
            done.append(change)
    except OSError as exc:
        problems = _undo(done, created_dirs)
        message = f"cannot {'write' if exc.filename else 'change'} {exc.filename or 'a file'}: {exc.strerror}"
        if problems:
            message += "; putting earlier changes back also failed: " + "; ".join(problems)
        else:
            message += "; nothing was changed"
        raise SysctlError(message) from exc


def _undo(done: Sequence[FileChange], created_dirs: Sequence[str]) -> list[str]:
    problems: list[str] = []
    for change in reversed(done):
        try:
            if change.before is None:
                os.unlink(change.path)
            else:
                write_atomically(change.path, change.before)
        except OSError as exc:
            problems.append(f"{change.path}: {exc.strerror}")
    for directory in reversed(created_dirs):
        try:
            os.rmdir(directory)
        except OSError:
            pass
    return problems
