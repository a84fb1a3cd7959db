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

Changes to the files are planned and written by ``sysctl_plan.py``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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


LOCAL_PORT_RANGE_KEY = "net.ipv4.ip_local_port_range"
# The kernel's net.ipv4.ip_local_port_range in a new network namespace (and at boot).
KERNEL_DEFAULT_LOCAL_PORT_RANGE = (32768, 60999)

# What procps strips around keys and values: glibc's isspace() in the C and UTF-8 locales.
C_SPACE = b" \t\n\v\f\r"
# What the kernel skips before a number: its isspace() (lib/ctype.c also marks byte 0xA0 as a space).
KERNEL_SPACE = C_SPACE + b"\xa0"
# What may follow a number the kernel reads (proc_wspace_sep); anything else makes it refuse the write.
KERNEL_SEPARATORS = b" \t\n"
GLOB_CHARS = b"*?["
PROC_SYS = b"/proc/sys/"
_TMPBUFLEN = 22  # the kernel copies at most 21 characters of a number (proc_get_long)


class SysctlError(PermfixError):
    """Something about the kernel parameter or its files stops us; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Parsing, the way procps-ng's sysctl reads a file and the kernel reads the value it writes
# --------------------------------------------------------------------------------------------


def normalize_key(key: str) -> str:
    """The dotted form of a sysctl key (``net/ipv4/x`` and ``net.ipv4.x`` are the same key)."""
    return key.strip(" \t").replace("/", ".")


def sysctl_lines(text: str) -> list[str]:
    """The lines of a file as procps reads them (getline): each ends at ``\\n`` and keeps it.

    ``\\r``, ``\\v``, ``\\f``, ``\\x1c``-``\\x1e``, U+0085, U+2028 and U+2029 do not end a line
    (``str.splitlines`` would split at each of them).
    """
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def file_bytes(text: str) -> bytes:
    """A file's text (read with surrogate escapes) as its bytes."""
    return text.encode("utf-8", "surrogateescape")


def file_text(data: bytes) -> str:
    """Bytes as text the way files are read here (undecodable bytes as surrogate escapes)."""
    return data.decode("utf-8", "surrogateescape")


def _c_rstrip(data: bytes) -> bytes:
    """procps' rstrip(): trailing spaces go, but never the first character."""
    stripped = data.rstrip(C_SPACE)
    return stripped if stripped or not data else data[:1]


def _slashdot(path: bytes) -> bytes:
    """procps' slashdot(): when the first separator is a dot, dots and slashes swap."""
    match = re.search(rb"[/.]", path)
    if match is None or path[match.start():match.start() + 1] == b"/":
        return path
    return path.translate(bytes.maketrans(b"./", b"/."))


def _kernel_long(data: bytes, pos: int) -> tuple[int | None, int]:
    """proc_get_long() and proc_dointvec's conversion: the int at ``pos`` (None: EINVAL) and the end."""
    size = len(data) - pos
    chunk = data[pos:pos + min(size, _TMPBUFLEN - 1)]
    index = 0
    negative = False
    if chunk[:1] == b"-" and size > 1:
        negative, index = True, 1
    if not chunk[index:index + 1].isdigit():
        return None, pos
    if chunk[index:index + 1] == b"0":
        if chunk[index + 1:index + 2] in (b"x", b"X") and chunk[index + 2:index + 3] in b"0123456789abcdefABCDEF" \
                and chunk[index + 2:index + 3]:
            base, digits, index = 16, b"0123456789abcdefABCDEF", index + 2
        else:
            base, digits = 8, b"01234567"
    else:
        base, digits = 10, b"0123456789"
    first = index
    while index < len(chunk) and chunk[index:index + 1] in digits:
        index += 1
    number = int(chunk[first:index], base)
    if number >= 2**64 or index == _TMPBUFLEN - 1:
        return None, pos
    if index < size and data[pos + index:pos + index + 1] not in KERNEL_SEPARATORS:
        return None, pos
    if negative:
        return (None if number > 2**31 else -number), pos + index
    return (None if number > 2**31 - 1 else number), pos + index


def kernel_ints(raw: bytes, count: int, minimum: int, maximum: int) -> list[int] | None:
    """The numbers proc_dointvec_minmax() stores when sysctl writes ``raw`` (plus its ``\\n``);
    None when the kernel refuses the write. Fewer than ``count`` numbers leave the rest as they were,
    and what follows the last number the kernel reads is ignored."""
    data = raw + b"\n"
    pos = 0
    values: list[int] = []
    for _index in range(count):
        while pos < len(data) and data[pos:pos + 1] in KERNEL_SPACE:
            pos += 1
        if pos == len(data):
            break
        number, pos = _kernel_long(data, pos)
        if number is None or not minimum <= number <= maximum:
            return None
        values.append(number)
    return values or None


def parse_value(raw: str) -> int | None:
    """The port the kernel stores when sysctl writes ``raw``, None when it refuses the write.

    Like the kernel: leading blanks skipped, then a C number (decimal, ``0x`` hexadecimal or ``0``
    octal, an optional ``-``, no ``+``) that must end at a space, tab or the end; what follows is
    ignored; the parameter takes 0 to 65535.
    """
    values = kernel_ints(file_bytes(raw).strip(C_SPACE), 1, PORT_MIN, PORT_MAX)
    return values[0] if values else None


@dataclass(frozen=True)
class ParsedLine:
    """A line of a sysctl file that names a key: an assignment, or (``exclude``) a ``-key`` exclusion."""

    key: str  # the key as procps keeps it (after one ``-``, trailing blanks removed)
    raw_value: str | None  # None for an exclusion
    ignore_errors: bool
    exclude: bool = False
    value_span: tuple[int, int] | None = None  # where the value is in the line's bytes

    @property
    def path(self) -> bytes:
        """The file procps opens, as a string (``/proc/sys/`` and the key with slashes)."""
        key = file_bytes(self.key)
        return PROC_SYS + _slashdot(key[1:] if key[:1] == b"-" else key)

    @property
    def is_glob(self) -> bool:
        return any(char in self.path for char in (b"*", b"?", b"["))

    def names(self, key: str) -> bytes | None:
        """The path procps writes when this line sets ``key`` (a dotted key), None when it does not."""
        target = key.split(".")
        relative = self.path[len(PROC_SYS):]
        if self.is_glob:
            return _glob_names(relative, [file_bytes(part) for part in target])
        return self.path if _walk_names(relative, [file_bytes(part) for part in target]) else None


def _walk_names(path: bytes, target: list[bytes]) -> bool:
    """Whether the kernel's path lookup of /proc/sys/``path`` ends at /proc/sys/``target`` (a file).

    ``.``, ``..`` and repeated slashes work as in any path; a path through an unknown
    directory followed by ``..`` is not followed (this says no).
    """
    wanted = [b"proc", b"sys", *target]
    known = {tuple(wanted[:length]) for length in range(len(wanted))}
    stack = [b"proc", b"sys"]
    parts = path.split(b"/")
    for part in parts:
        if stack == wanted:  # a slash after the file's name: ENOTDIR
            return False
        if part in (b"", b"."):
            continue
        if part == b"..":
            if tuple(stack) not in known:
                return False
            stack = stack[:-1]
            continue
        stack = [*stack, part]
    return stack == wanted


def _fnmatch_regex(pattern: bytes, slash_special: bool) -> re.Pattern[bytes]:
    """glibc fnmatch()/glob() matching as a regular expression: ``*``, ``?``, ``[...]`` with ``!``
    or ``^``, and ``\\`` escapes."""
    out = []
    index = 0
    anything = b"[^/]" if slash_special else b"."
    while index < len(pattern):
        char = pattern[index:index + 1]
        index += 1
        if char == b"\\" and index < len(pattern):
            out.append(re.escape(pattern[index:index + 1]))
            index += 1
        elif char == b"*":
            out.append(anything + b"*")
        elif char == b"?":
            out.append(anything)
        elif char == b"[":
            end = index
            if pattern[end:end + 1] in (b"!", b"^"):
                end += 1
            if pattern[end:end + 1] == b"]":
                end += 1
            end = pattern.find(b"]", end)
            if end < 0:
                out.append(re.escape(char))
                continue
            body = pattern[index:end]
            negate = body[:1] in (b"!", b"^")
            if negate:
                body = body[1:]
            members = b"".join(
                b"\\" + bytes([byte]) if bytes([byte]) in b"\\]^[" else bytes([byte]) for byte in body
            )
            out.append(b"[" + (b"^" if negate else b"") + members + b"]")
            index = end + 1
        else:
            out.append(re.escape(char))
    return re.compile(b"".join(out) + rb"\Z", re.DOTALL)


def _glob_names(path: bytes, target: list[bytes]) -> bytes | None:
    """The path glob(3) returns for the pattern /proc/sys/``path`` when it finds ``target``.

    Patterns with empty, ``.`` or ``..`` parts are not followed (this says no).
    """
    parts = path.split(b"/")
    if len(parts) != len(target) or any(part in (b"", b".", b"..") for part in parts):
        return None
    for part, name in zip(parts, target):
        if any(char in part for char in (b"*", b"?", b"[")):
            if not _fnmatch_regex(part, True).match(name):
                return None
        elif part.replace(b"\\", b"") != name:
            return None
    return PROC_SYS + b"/".join(target)


def parse_sysctl_line(text: str) -> ParsedLine | None:
    """What procps' parse_setting_line() makes of one line; None for blank lines, comments and
    lines it rejects. The line ends at its first NUL byte, as procps sees it."""
    raw = file_bytes(text)
    if len(raw) < 2:
        return None
    line = raw.split(b"\0", 1)[0]
    start = len(line) - len(line.lstrip(C_SPACE))
    body = line[start:]
    if len(body) < 2 or body[:1] in (b"#", b";"):
        return None
    equals = body.find(b"=")
    if equals < 0:
        if body[:1] != b"-":
            return None
        return ParsedLine(file_text(_c_rstrip(body[1:])), None, False, exclude=True)
    key = body[:equals]
    ignore_errors = key[:1] == b"-"
    if ignore_errors:
        key = key[1:]
    value = body[equals + 1:]
    value_start = start + equals + 1 + len(value) - len(value.lstrip(C_SPACE))
    value = _c_rstrip(value.lstrip(C_SPACE))
    if not value:
        value_start = start + equals + 1
    return ParsedLine(
        file_text(_c_rstrip(key)), file_text(value), ignore_errors, value_span=(value_start, value_start + len(value))
    )


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
    refused: str | None = None  # why sysctl --system does not get this value into the kernel
    pattern: bool = False  # a glob pattern (``net.ipv4.ip_unprivileged_port_*``) that matches the key
    value_span: tuple[int, int] | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None

    @property
    def accepted(self) -> bool:
        """Whether the kernel takes this value when sysctl --system applies the line."""
        return self.applied and self.valid and self.refused is None

    def as_dict(self, winner: Assignment | None = None) -> dict[str, Any]:
        return dict(
            pick(self, "path", "real_path", "line", "text", "raw_value", "value", "valid", "applied", "refused",
                 "pattern"),
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
    local_port_range: tuple[int, int] = KERNEL_DEFAULT_LOCAL_PORT_RANGE  # at the end of sysctl --system

    @property
    def applied_assignments(self) -> list[Assignment]:
        return [item for item in self.assignments if item.applied]

    @property
    def winner(self) -> Assignment | None:
        """The last assignment the kernel takes: the one whose value the key has after boot."""
        accepted = [item for item in self.applied_assignments if item.accepted]
        return accepted[-1] if accepted else None

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


def name_order(name: str) -> bytes:
    """The sort key of a file name: its bytes, as sysctl --system sorts them."""
    return os.fsencode(name)


def list_config_files(sysctl_dirs: Sequence[str], sysctl_conf: str | None) -> list[ConfigFile]:
    """The configuration files in the order sysctl --system applies them, then the masked ones."""
    chosen: dict[str, ConfigFile] = {}
    masked: list[ConfigFile] = []
    for directory in sysctl_dirs:
        try:
            names = sorted(os.listdir(directory), key=name_order)
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
    files = sorted(chosen.values(), key=lambda item: name_order(item.name))
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

    A link to /dev/null (how a vendor file is masked), a dangling link, a link loop or a
    directory named ``*.conf`` sets nothing: sysctl cannot read a line from them either.
    Undecodable bytes survive a read/write round trip unchanged.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return ""
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENAMETOOLONG):
            return ""
        raise SysctlError(
            f"cannot read {path}: {exc.strerror} (sysctl --system reads it as root at boot; run the module as root)"
        ) from exc


@dataclass(frozen=True)
class _Line:
    config: ConfigFile
    number: int
    text: str
    parsed: ParsedLine


def _pattern_skipped(line: _Line, names: bytes, explicit: set[bytes]) -> str | None:
    """Why sysctl does not apply a pattern line to the key at ``names`` (None: it does).

    procps-ng 4.0.2 skips a key that any line of any file names exactly, an assignment or a
    ``-key`` exclusion; an exclusion that is itself a pattern excludes nothing there (later
    procps versions match it with fnmatch).
    """
    if not line.parsed.is_glob:
        return None
    if names in explicit:
        return "the line is a pattern, and sysctl skips a key that another line names exactly"
    return None


def resolve_contents(
    key: str,
    files: Sequence[ConfigFile],
    contents: dict[str, str],
    default: int = KERNEL_DEFAULT_UNPRIVILEGED_PORT,
) -> Resolution:
    """The boot value of ``key`` from the files' texts (``contents``: real path -> text), as
    sysctl --system gets it into the kernel.

    Lines are read as procps reads them (:func:`parse_sysctl_line`); a pattern line applies to
    the key unless any line names the key exactly (:func:`_pattern_skipped`); each value goes
    through the kernel's checks. For net.ipv4.ip_unprivileged_port_start that includes
    net.ipv4.ip_local_port_range at that point: a value above its lowest port is refused, and a
    range whose lowest port is below the key's value then is refused too.
    """
    wanted = normalize_key(key)
    track_range = wanted == UNPRIVILEGED_PORT_KEY
    lines: list[_Line] = []
    masked_lines: list[_Line] = []
    for config in files:
        for number, text in enumerate(sysctl_lines(contents.get(config.real_path, "")), start=1):
            parsed = parse_sysctl_line(text)
            if parsed is not None:
                (lines if config.applied else masked_lines).append(_Line(config, number, text, parsed))
    explicit = {line.parsed.path for line in lines}

    current = default
    low, high = KERNEL_DEFAULT_LOCAL_PORT_RANGE
    applied: list[Assignment] = []
    for line in lines:
        parsed = line.parsed
        if parsed.raw_value is None:
            continue
        names = parsed.names(wanted)
        if names is not None:
            value = parse_value(parsed.raw_value)
            refused = _pattern_skipped(line, names, explicit)
            if refused is None and value is None:
                refused = f"the kernel takes only a number from {PORT_MIN} to {PORT_MAX}"
            elif refused is None and track_range and value is not None and value > low:
                refused = (
                    f"the kernel refuses a value above the lowest port of {LOCAL_PORT_RANGE_KEY}, "
                    f"which is {low} at that point ({low}-{high})"
                )
            if refused is None and value is not None:
                current = value
            applied.append(_assignment(line, value, True, refused))
            continue
        range_names = parsed.names(LOCAL_PORT_RANGE_KEY) if track_range else None
        if range_names is None or _pattern_skipped(line, range_names, explicit):
            continue
        numbers = kernel_ints(file_bytes(parsed.raw_value), 2, 1, PORT_MAX)
        if numbers:
            new_low, new_high = numbers[0], numbers[1] if len(numbers) > 1 else high
            if new_low <= new_high and new_low >= current:
                low, high = new_low, new_high
    masked = [
        _assignment(line, parse_value(line.parsed.raw_value), False, None)
        for line in masked_lines
        if line.parsed.raw_value is not None and line.parsed.names(wanted) is not None
    ]
    return Resolution(wanted, list(files), applied + masked, default, contents, (low, high))


def _assignment(line: _Line, value: int | None, applied: bool, refused: str | None) -> Assignment:
    config = line.config
    return Assignment(
        path=config.path,
        real_path=config.real_path,
        name=config.name,
        line=line.number,
        text=line.text,
        raw_value=line.parsed.raw_value or "",
        value=value,
        ignore_errors=line.parsed.ignore_errors,
        applied=applied,
        is_conf=config.is_conf,
        refused=refused,
        pattern=line.parsed.is_glob,
        value_span=line.parsed.value_span,
    )


def resolve(
    key: str = UNPRIVILEGED_PORT_KEY,
    sysctl_dirs: Sequence[str] = DEFAULT_SYSCTL_DIRS,
    sysctl_conf: str | None = DEFAULT_SYSCTL_CONF,
    default: int = KERNEL_DEFAULT_UNPRIVILEGED_PORT,
) -> Resolution:
    """Every line that sets ``key`` and the value the key gets at boot."""
    files = list_config_files(sysctl_dirs, sysctl_conf)
    contents: dict[str, str] = {}
    for config in files:
        if config.real_path not in contents:
            contents[config.real_path] = read_config_text(config.path)
    return resolve_contents(key, files, contents, default)


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
        with open(path, encoding="ascii", errors="replace") as handle:
            raw = handle.read(4096)
    except FileNotFoundError:
        return Runtime(path, False, None, False, netns, initial)
    except OSError as exc:
        raise SysctlError(f"cannot read {path}: {exc.strerror}") from exc
    value = parse_value(raw)
    if value is None:
        raise SysctlError(f"{path} holds {raw.strip()[:80]!r}, which is not a port number")
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
        with open(path, encoding="ascii", errors="replace") as handle:
            parts = handle.read(4096).split()
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
        with open(path, encoding="ascii", errors="replace") as handle:
            now = parse_value(handle.read(4096))
    except OSError as exc:
        raise SysctlError(f"cannot read {path} back: {exc.strerror}") from exc
    if now != value:
        raise SysctlError(f"wrote {value} to {path} but the kernel reports {now}")
