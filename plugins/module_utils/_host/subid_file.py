# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The /etc/subuid and /etc/subgid files: parsed as shadow-utils reads them, rendered back byte for byte.

The parser reads each line the way shadow-utils (libsubid, newuidmap, getsubids) reads it, so
what counts as a range here is what the kernel mappings will be built from; every line keeps
its exact text so that a write changes only the lines it means to change. Also here: overlaps,
the free-interval helpers the allocator uses, login.defs' SUB_*ID bounds, where subordinate ids
come from (nsswitch ``subid:``, ``getsubids``), the setuid helpers' state, and one snapshot of
everything read from the host for one decision (:func:`load_snapshot`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError, root_advice
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX, strtoul
from ansible_collections.permfix.containers.plugins.module_utils._core.options import host_path
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import (
    DEFAULT_GROUP,
    DEFAULT_LOGIN_DEFS,
    DEFAULT_PASSWD,
    Account,
    AccountDatabase,
    AccountsError,
    login_defs_int,
    parse_login_defs,
    read_text,
    split_lines,
)

SUBUID = "subuid"
SUBGID = "subgid"
KINDS: tuple[str, ...] = (SUBUID, SUBGID)
ID_WORD = {SUBUID: "UID", SUBGID: "GID"}

DEFAULT_SUBUID = "/etc/subuid"
DEFAULT_SUBGID = "/etc/subgid"
DEFAULT_NSSWITCH = "/etc/nsswitch.conf"

# shadow-utils' defaults when login.defs does not set SUB_UID_MIN/MAX/COUNT.
DEFAULT_MIN = 100000
DEFAULT_MAX = 600100000
DEFAULT_COUNT = 65536
MAX_EXAMPLES = 10
CAP_SETGID = 6
CAP_SETUID = 7
HELPER_CAPABILITY = {"newuidmap": CAP_SETUID, "newgidmap": CAP_SETGID}

ENTRY = "entry"
COMMENT = "comment"
BLANK = "blank"
MALFORMED = "malformed"
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
_GETSUBIDS_LINE = re.compile(r"^\d+: (.+) (\d+) (\d+)$")


class SubidError(PermfixError):
    """Something a person has to act on: the message says what and how."""


# ---------------------------------------------------------------------------------------------
# Ranges and lines


@dataclass(frozen=True, order=True)
class SubRange:
    """``count`` IDs starting at ``start`` (``end`` is one past the last)."""

    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def last(self) -> int:
        return self.start + self.count - 1

    def overlaps(self, other: SubRange) -> bool:
        return self.count > 0 and other.count > 0 and self.start < other.end and other.start < self.end

    def contains(self, value: int) -> bool:
        return self.start <= value < self.end

    def describe(self) -> str:
        return f"{self.start}-{self.last}" if self.count > 0 else f"{self.start} (empty)"

    def as_dict(self) -> dict[str, int]:
        return {"start": self.start, "count": self.count}


@dataclass(frozen=True)
class SubidLine:
    """One line of a subuid or subgid file, with its exact text.

    ``kind`` is ``entry`` (shadow-utils reads a range from it), ``comment``, ``blank`` or
    ``malformed`` (shadow-utils ignores it). ``range`` is what shadow reads for an entry, and
    the numbers a person most likely meant for a malformed line when they can be recovered
    (the allocator keeps clear of those too). ``problem`` says why a malformed line is
    ignored, or why an entry is probably not what was meant.
    """

    number: int
    text: str
    newline: bool
    kind: str
    owner: str | None = None
    range: SubRange | None = None
    problem: str | None = None

    @property
    def raw(self) -> str:
        return self.text + ("\n" if self.newline else "")

    @property
    def is_entry(self) -> bool:
        return self.kind == ENTRY

    @property
    def canonical(self) -> bool:
        """``owner:start:count`` in plain decimal, nothing unusual."""
        return self.kind == ENTRY and self.problem is None


def parse_subid_line(number: int, text: str, newline: bool = True) -> SubidLine:
    """Classify one line (``text`` without its ``\\n``) as shadow-utils would read it."""
    stripped = text.strip()
    if not stripped:
        return SubidLine(number, text, newline, BLANK)
    if stripped.startswith("#"):
        return SubidLine(number, text, newline, COMMENT)
    parts = text.split(":", 3)
    recovered = _recover(parts)
    owner = parts[0] if parts[0] else None
    if len(parts) < 3:
        return SubidLine(number, text, newline, MALFORMED, owner, None, "expected USER:START:COUNT")
    if not parts[0] or not parts[1] or not parts[2]:
        return SubidLine(
            number, text, newline, MALFORMED, owner, recovered, "a field is empty (expected USER:START:COUNT)"
        )
    start, count = strtoul(parts[1]), strtoul(parts[2])
    if start is None or count is None:
        if text.endswith("\r") and strtoul(parts[2].rstrip("\r")) is not None and start is not None:
            problem = "the line ends with a carriage return (a DOS line ending), so shadow-utils ignores it"
        elif start is None:
            problem = f"the start {parts[1]!r} is not a number"
        else:
            problem = f"the count {parts[2]!r} is not a number"
        return SubidLine(number, text, newline, MALFORMED, owner, recovered, problem)
    problems = []
    if len(parts) == 4:
        problems.append(f"the text after the count (':{parts[3]}') is ignored")
    if owner is not None and owner != owner.strip():
        problems.append(f"the user name {owner!r} has white space around it")
    if not _DECIMAL.match(parts[1]):
        problems.append(f"the start {parts[1]!r} is read as {start}")
    if not _DECIMAL.match(parts[2]):
        problems.append(f"the count {parts[2]!r} is read as {count}")
    if count == 0:
        problems.append("the range is empty (count 0)")
    elif start + count - 1 > ID_MAX:
        problems.append(f"the range goes past the highest ID {ID_MAX}")
    return SubidLine(number, text, newline, ENTRY, owner, SubRange(start, count), "; ".join(problems) or None)


def _recover(parts: Sequence[str]) -> SubRange | None:
    if len(parts) < 3:
        return None
    start, count = parts[1].strip(), parts[2].strip()
    if start.isdigit() and count.isdigit() and int(count) > 0:
        return SubRange(int(start), int(count))
    return None


def parse_subid(text: str) -> list[SubidLine]:
    """Every line of a subuid/subgid file; ``render(parse_subid(t)) == t`` for any text."""
    pieces = text.split("\n")
    lines = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        if last and piece == "":
            break
        lines.append(parse_subid_line(index + 1, piece, newline=not last))
    return lines


def render(lines: Iterable[SubidLine]) -> str:
    return "".join(line.raw for line in lines)


@dataclass
class SubidFile:
    """A subuid or subgid file as read (``exists`` False: the file is absent, read as empty)."""

    kind: str
    path: str
    exists: bool
    lines: list[SubidLine] = field(default_factory=list)

    @property
    def text(self) -> str:
        return render(self.lines)

    @property
    def entries(self) -> list[SubidLine]:
        return [line for line in self.lines if line.is_entry]

    def lines_of(self, user: Account, accounts: AccountDatabase) -> list[SubidLine]:
        """The entries that belong to ``user``: by name, by uid, or by another name of the uid.

        This is how newuidmap and newgidmap match an owner (find_range in shadow-utils).
        """
        found = []
        for line in self.entries:
            if line.owner == user.name or line.owner == str(user.uid):
                found.append(line)
            elif line.owner is not None:
                other = accounts.user(line.owner)
                if other is not None and other.uid == user.uid:
                    found.append(line)
        return found

    def index(self, accounts: AccountDatabase) -> dict[int, list[SubidLine]]:
        """The entries of every user, by uid, matched as :meth:`lines_of` matches them (one pass)."""
        found: dict[int, list[SubidLine]] = {}
        for line in self.entries:
            uids = set()
            owner = accounts.user(line.owner) if line.owner is not None else None
            if owner is not None:
                uids.add(owner.uid)
            if line.owner is not None and line.owner.isdigit():
                uids.add(int(line.owner))
            for uid in uids:
                found.setdefault(uid, []).append(line)
        return found

    def occupied(self) -> list[SubRange]:
        """Every range the file holds or most likely meant to hold (malformed lines too)."""
        return [line.range for line in self.lines if line.range is not None and line.range.count > 0]


def read_subid_file(kind: str, path: str) -> SubidFile:
    """Read and parse one file; a missing file reads as empty, an unreadable one is an error."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return SubidFile(kind, path, False, [])
    except OSError as exc:
        raise SubidError(
            f"cannot read {path}: {exc.strerror or exc}; "
            + root_advice("run as root (become: true) or point ", "point ") + f"{kind}_path at a readable file"
        ) from exc
    return SubidFile(kind, path, True, parse_subid(data.decode("utf-8", "surrogateescape")))


def union_size(ranges: Iterable[SubRange]) -> int:
    """How many distinct IDs the ranges hold together."""
    return sum(end - start for start, end in merge_intervals((r.start, r.end) for r in ranges))


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open intervals sorted and merged (touching ones joined); empty ones dropped."""
    merged: list[list[int]] = []
    for start, end in sorted(pair for pair in intervals if pair[1] > pair[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(pair[0], pair[1]) for pair in merged]


# ---------------------------------------------------------------------------------------------
# Overlaps


@dataclass(frozen=True)
class Overlap:
    """An entry that shares IDs with entries of other owners."""

    line: SubidLine
    total: int
    examples: tuple[SubidLine, ...]


def find_overlaps(
    entries: Sequence[SubidLine],
    owner_key: Callable[[SubidLine], Any],
    max_examples: int = MAX_EXAMPLES,
) -> list[Overlap]:
    """Entries whose range overlaps a range of a different owner (``owner_key`` differs).

    ``total`` is exact; ``examples`` (up to ``max_examples``, at least one) name some of the
    overlapping entries. Runs in O(n log n) plus the examples, however many pairs overlap.
    """
    items = sorted(
        (line for line in entries if line.range is not None and line.range.count > 0),
        key=lambda line: (line.range.start, line.range.end, line.number),  # type: ignore[union-attr]
    )
    starts = [line.range.start for line in items]  # type: ignore[union-attr]
    ends = sorted(line.range.end for line in items)  # type: ignore[union-attr]
    keys = [owner_key(line) for line in items]
    by_owner: dict[Any, tuple[list[int], list[int]]] = {}
    for line, key in zip(items, keys):
        owned = by_owner.setdefault(key, ([], []))
        owned[0].append(line.range.start)  # type: ignore[union-attr]
        owned[1].append(line.range.end)  # type: ignore[union-attr]
    for owned in by_owner.values():
        owned[0].sort()
        owned[1].sort()

    def overlapping(sorted_starts: list[int], sorted_ends: list[int], rng: SubRange) -> int:
        # ranges with start < rng.end, minus those that end at or before rng.start, minus itself
        return bisect_left(sorted_starts, rng.end) - bisect_right(sorted_ends, rng.start) - 1

    examples: list[list[int]] = [[] for dummy in items]
    # Forward: the ranges that start inside each range (pairs found both ways).
    for index, line in enumerate(items):
        end = line.range.end  # type: ignore[union-attr]
        other = index + 1
        while other < len(items) and starts[other] < end and len(examples[index]) < max_examples:
            if keys[other] != keys[index]:
                examples[index].append(other)
                if len(examples[other]) < max_examples:
                    examples[other].append(index)
            other += 1
    # Backward: a range that started earlier and reaches into this one, found through the two
    # longest-reaching earlier ranges of different owners.
    best: int | None = None
    second: int | None = None
    for index, line in enumerate(items):
        start = line.range.start  # type: ignore[union-attr]
        if not examples[index]:
            for candidate in (best, second):
                if (
                    candidate is not None
                    and keys[candidate] != keys[index]
                    and items[candidate].range.end > start  # type: ignore[union-attr]
                ):
                    examples[index].append(candidate)
                    break
        end = line.range.end  # type: ignore[union-attr]
        if best is None or end > items[best].range.end:  # type: ignore[union-attr]
            if best is not None and keys[best] != keys[index]:
                second = best
            best = index
        elif keys[index] != keys[best] and (second is None or end > items[second].range.end):  # type: ignore[union-attr]
            second = index

    found = []
    for index, line in enumerate(items):
        owned = by_owner[keys[index]]
        total = overlapping(starts, ends, line.range) - overlapping(owned[0], owned[1], line.range)  # type: ignore[arg-type]
        if total > 0:
            chosen = sorted(set(examples[index]), key=lambda i: items[i].number)[:max_examples]
            found.append(Overlap(line, total, tuple(items[i] for i in chosen)))
    return sorted(found, key=lambda overlap: overlap.line.number)


# ---------------------------------------------------------------------------------------------
# Allocation


@dataclass(frozen=True)
class IdBounds:
    """SUB_UID_MIN/MAX/COUNT (or the GID ones): where new ranges go and their default size."""

    low: int
    high: int
    count: int


def bounds_from_login_defs(values: Mapping[str, str]) -> dict[str, IdBounds]:
    """SUB_*ID_MIN/MAX/COUNT as login.defs sets them (shadow-utils' defaults otherwise), the
    highest ID capped at ID_MAX: a range's last ID is never (uid_t)-1 or beyond."""
    return {
        kind: IdBounds(
            login_defs_int(values, f"SUB_{ID_WORD[kind]}_MIN", DEFAULT_MIN),
            min(login_defs_int(values, f"SUB_{ID_WORD[kind]}_MAX", DEFAULT_MAX), ID_MAX),
            login_defs_int(values, f"SUB_{ID_WORD[kind]}_COUNT", DEFAULT_COUNT),
        )
        for kind in KINDS
    }


def bounds_warnings(values: Mapping[str, str], path: str) -> list[str]:
    """A sentence for each SUB_*ID_MAX of login.defs above ID_MAX, which :func:`bounds_from_login_defs` caps."""
    warnings = []
    for kind in KINDS:
        name = f"SUB_{ID_WORD[kind]}_MAX"
        asked = login_defs_int(values, name, DEFAULT_MAX)
        if asked > ID_MAX:
            warnings.append(
                f"{name} {asked} in {path} is above the highest {ID_WORD[kind]} {ID_MAX} (IDs are 32 bits and "
                f"{ID_MAX + 1} means 'no ID'), so new subordinate {ID_WORD[kind]}s end at {ID_MAX} at most; "
                f"lower {name} to {ID_MAX} or less"
            )
    return warnings


def is_free(merged: Sequence[tuple[int, int]], start: int, count: int) -> bool:
    """Whether ``count`` IDs from ``start`` touch none of the merged, sorted intervals."""
    index = bisect_right(merged, (start, float("inf"))) - 1
    if index >= 0 and merged[index][1] > start:
        return False
    following = index + 1
    return not (following < len(merged) and merged[following][0] < start + count)


def first_free(merged: Sequence[tuple[int, int]], count: int, low: int, high: int) -> int | None:
    """The lowest start of ``count`` free IDs within ``low..high`` (inclusive), or None."""
    if count <= 0:
        return None
    cursor = low
    for start, end in merged:
        if end <= cursor:
            continue
        if start - cursor >= count:
            break
        cursor = max(cursor, end)
    if cursor + count - 1 <= high:
        return cursor
    return None


# ---------------------------------------------------------------------------------------------
# Where subordinate IDs come from, and the helpers that use them


def nss_source(nsswitch_text: str | None) -> str:
    """The ``subid:`` source of nsswitch.conf (libsubid uses only the first); ``files`` when
    there is no such line."""
    if nsswitch_text is None:
        return "files"
    for line in split_lines(nsswitch_text):
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("subid:"):
            sources = stripped[len("subid:"):].split()
            return sources[0] if sources else "files"
    return "files"


def parse_getsubids(output: str) -> list[SubRange]:
    """Ranges from ``getsubids`` output (``0: user 100000 65536`` per line)."""
    ranges = []
    for line in output.splitlines():
        match = _GETSUBIDS_LINE.match(line.strip())
        if match:
            ranges.append(SubRange(int(match.group(2)), int(match.group(3))))
    return ranges


def getsubids_path() -> str | None:
    return shutil.which("getsubids") or shutil.which("getsubids", path="/usr/bin:/usr/sbin:/bin:/sbin")


def getsubids(runner: Runner, executable: str, user: str, kind: str) -> list[SubRange]:
    """The user's ranges as libsubid reports them (through whatever NSS source is set)."""
    argv = [executable] + (["-g"] if kind == SUBGID else []) + [user]
    rc, stdout, stderr = runner(argv, "/")
    if rc != 0:
        if not stdout.strip():
            return []
        raise SubidError(f"'{' '.join(argv)}' failed with exit code {rc}: {stderr.strip()}")
    return parse_getsubids(stdout)


def file_capabilities(path: str) -> set[int]:
    """The permitted capabilities in the file's ``security.capability`` attribute."""
    try:
        data = os.getxattr(path, "security.capability")
    except (OSError, AttributeError):
        return set()
    return capabilities_from_xattr(data)


def capabilities_from_xattr(data: bytes) -> set[int]:
    """The permitted set of a ``security.capability`` value (struct vfs_cap_data v1, v2, v3)."""
    if len(data) < 12:
        return set()
    magic = struct.unpack_from("<I", data, 0)[0]
    permitted = struct.unpack_from("<I", data, 4)[0]
    if magic & 0xFF000000 != 0x01000000 and len(data) >= 20:
        permitted |= struct.unpack_from("<I", data, 12)[0] << 32
    return {bit for bit in range(64) if permitted & (1 << bit)}


def helper_status(name: str, path: str | None = None) -> dict[str, Any]:
    """Whether newuidmap/newgidmap exists and may set the IDs (setuid root or file capability)."""
    found = path or shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/bin:/sbin")
    status: dict[str, Any] = {
        "path": found,
        "exists": False,
        "setuid_root": False,
        "file_capability": False,
        "ok": False,
    }
    if not found:
        status["problem"] = (
            f"{name} is not installed (Debian and Ubuntu: package uidmap; Fedora and RHEL: shadow-utils)"
        )
        return status
    try:
        info = os.stat(found)
    except OSError as exc:
        status["path"] = found
        status["problem"] = f"{found} cannot be examined: {exc.strerror or exc}"
        return status
    status["exists"] = stat.S_ISREG(info.st_mode)
    status["setuid_root"] = bool(info.st_mode & stat.S_ISUID) and info.st_uid == 0
    status["file_capability"] = HELPER_CAPABILITY[name] in file_capabilities(found)
    status["ok"] = status["exists"] and (status["setuid_root"] or status["file_capability"])
    if not status["exists"]:
        status["problem"] = f"{found} is not a regular file"
    elif not status["ok"]:
        cap = "cap_setuid" if name == "newuidmap" else "cap_setgid"
        status["problem"] = (
            f"{found} is neither setuid root nor has the {cap} file capability, so rootless podman cannot map "
            f"subordinate IDs; run 'chmod u+s {found}' (or 'setcap {cap}=ep {found}')"
        )
    return status


# ---------------------------------------------------------------------------------------------
# Reading the host


@dataclass(frozen=True)
class SubidPaths:
    subuid: str = DEFAULT_SUBUID
    subgid: str = DEFAULT_SUBGID
    login_defs: str = DEFAULT_LOGIN_DEFS
    passwd: str = DEFAULT_PASSWD
    group: str = DEFAULT_GROUP
    nsswitch: str = DEFAULT_NSSWITCH

    def of(self, kind: str) -> str:
        return self.subuid if kind == SUBUID else self.subgid

    @property
    def system_files(self) -> bool:
        """Whether these are the host's own files (what usermod and getsubids use)."""
        return (self.subuid, self.subgid, self.passwd, self.group) == (
            DEFAULT_SUBUID,
            DEFAULT_SUBGID,
            DEFAULT_PASSWD,
            DEFAULT_GROUP,
        )


@dataclass
class Snapshot:
    """Everything read from the host for one decision."""

    paths: SubidPaths
    files: dict[str, SubidFile]
    accounts: AccountDatabase
    bounds: dict[str, IdBounds]
    source: str
    warnings: list[str] = field(default_factory=list)


def load_snapshot(paths: SubidPaths) -> Snapshot:
    """Read the subid files, the accounts, login.defs and nsswitch.conf."""
    files = {kind: read_subid_file(kind, paths.of(kind)) for kind in KINDS}
    try:
        accounts = AccountDatabase.from_files(
            paths.passwd, paths.group, nss_fallback=(paths.passwd, paths.group) == (DEFAULT_PASSWD, DEFAULT_GROUP)
        )
    except AccountsError as exc:
        raise SubidError(f"{exc}; point passwd_path and group_path at readable files") from exc
    defs = parse_login_defs(_optional_text(paths.login_defs) or "")
    bounds = bounds_from_login_defs(defs)
    for kind in KINDS:
        if bounds[kind].low > bounds[kind].high or bounds[kind].low < 1:
            raise SubidError(
                f"SUB_{ID_WORD[kind]}_MIN {bounds[kind].low} and SUB_{ID_WORD[kind]}_MAX {bounds[kind].high} "
                f"in {paths.login_defs} leave no room for subordinate IDs; fix login.defs"
            )
    source = nss_source(_optional_text(paths.nsswitch))
    return Snapshot(paths, files, accounts, bounds, source, bounds_warnings(defs, paths.login_defs))


def _optional_text(path: str) -> str | None:
    try:
        return read_text(path)
    except AccountsError:
        return None


INFO_PATH_OPTIONS: dict[str, str] = {
    "subuid_path": DEFAULT_SUBUID,
    "subgid_path": DEFAULT_SUBGID,
    "login_defs_path": DEFAULT_LOGIN_DEFS,
    "passwd_path": DEFAULT_PASSWD,
    "group_path": DEFAULT_GROUP,
    "nsswitch_path": DEFAULT_NSSWITCH,
}


def subid_paths(params: Mapping[str, Any]) -> SubidPaths:
    """The files named by the path options (INFO_PATH_OPTIONS) of subid_info and subid, each
    checked by :func:`host_path` (a string, absolute, no NUL byte) or OptionError."""
    return SubidPaths(
        **{
            field: host_path(params[f"{field}_path"], f"{field}_path")
            for field in ("subuid", "subgid", "login_defs", "passwd", "group", "nsswitch")
        }
    )


def path_option_spec() -> dict[str, dict[str, Any]]:
    """The argument spec of the path options (INFO_PATH_OPTIONS) of subid_info and subid.

    ``passwd_path`` says ``no_log: False``: it names a file, it is no secret, and without it
    ansible warns on every run that its name looks like a password option.
    """
    spec: dict[str, dict[str, Any]] = {
        name: {"type": "path", "default": default} for name, default in INFO_PATH_OPTIONS.items()
    }
    spec["passwd_path"]["no_log"] = False
    return spec


def account_ids(accounts: AccountDatabase, kind: str) -> list[int]:
    """The ids of every account (users for subuid, groups and primary groups for subgid)."""
    return accounts.uids() if kind == SUBUID else accounts.gids()


def line_numbers(numbers: Sequence[int]) -> str:
    """``3, 7, 9`` (line numbers, for messages)."""
    return ", ".join(str(n) for n in numbers)


def describe_ranges(ranges: Sequence[SubRange]) -> str:
    """The ranges as people read them, for messages."""
    return ", ".join(rng.describe() for rng in ranges)
