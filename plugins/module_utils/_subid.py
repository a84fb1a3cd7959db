# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subordinate IDs: read, check and extend /etc/subuid and /etc/subgid.

The parser reads each line the way shadow-utils (libsubid, newuidmap, getsubids) reads it,
so what counts as a range here is what the kernel mappings will be built from; every line
keeps its exact text so that a write changes only the lines it means to change.

The allocator never moves or shrinks a range: it widens one in place when the IDs after it
are free, otherwise it adds the first free block within SUB_UID_MIN..SUB_UID_MAX (as
shadow's useradd does) that overlaps no other range and no account's ID.

Writes go through ``usermod --add-subuids/--add-subgids`` (which takes shadow's locks) when
the change only adds ranges to the system files, otherwise through an atomic replacement
made under shadow's own locks (lckpwdf's ``.pwd.lock`` and ``FILE.lock``). Every run that
writes also holds a lock of its own so that two runs never pick the same free block.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
import struct
import tempfile
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ansible_collections.permfix.containers.plugins.module_utils._accounts import (
    DEFAULT_GROUP,
    DEFAULT_LOGIN_DEFS,
    DEFAULT_PASSWD,
    AccountDatabase,
    AccountsError,
    PasswdEntry,
    ids_within,
    login_defs_int,
    parse_login_defs,
    read_text,
    split_lines,
)
from ansible_collections.permfix.containers.plugins.module_utils._findings import make_finding, sort_findings
from ansible_collections.permfix.containers.plugins.module_utils._info import Detection, DetectionError, OptionError
from ansible_collections.permfix.containers.plugins.module_utils._podman import (
    Account,
    PodmanError,
    Runner,
    has_rootless_state,
    pause_process_uids,
    podman_path,
    run_podman,
)

SUBUID = "subuid"
SUBGID = "subgid"
KINDS: tuple[str, ...] = (SUBUID, SUBGID)
ID_WORD = {SUBUID: "UID", SUBGID: "GID"}

DEFAULT_SUBUID = "/etc/subuid"
DEFAULT_SUBGID = "/etc/subgid"
DEFAULT_NSSWITCH = "/etc/nsswitch.conf"
DEFAULT_PATHS = {SUBUID: DEFAULT_SUBUID, SUBGID: DEFAULT_SUBGID}

# shadow-utils' defaults when login.defs does not set SUB_UID_MIN/MAX/COUNT.
DEFAULT_MIN = 100000
DEFAULT_MAX = 600100000
DEFAULT_COUNT = 65536
HIGHEST_ID = 4294967294  # (uid_t)-1 is not an ID
ULONG_MAX = 2**64 - 1
MAX_EXAMPLES = 10

HELPERS = {"newuidmap": SUBUID, "newgidmap": SUBGID}
CAP_SETGID = 6
CAP_SETUID = 7
HELPER_CAPABILITY = {"newuidmap": CAP_SETUID, "newgidmap": CAP_SETGID}

MIGRATE_ON_CHANGE = "on_change"
MIGRATE_ALWAYS = "always"
MIGRATE_NEVER = "never"
MIGRATE_WARNING = "podman system migrate stops every running container of the user"

ENTRY = "entry"
COMMENT = "comment"
BLANK = "blank"
MALFORMED = "malformed"

# strtoul(3) with base 0, as shadow-utils' getulong() calls it: leading white space, a sign,
# then 0x hex, 0 octal or decimal digits, and nothing after them.
_STRTOUL = re.compile(r"^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
_GETSUBIDS_LINE = re.compile(r"^\d+: (.+) (\d+) (\d+)$")


class SubidError(Exception):
    """Something a person has to act on: the message says what and how."""


# ---------------------------------------------------------------------------------------------
# Ranges and lines


@dataclass(frozen=True, order=True)
class IdRange:
    """``count`` IDs starting at ``start`` (``end`` is one past the last)."""

    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def last(self) -> int:
        return self.start + self.count - 1

    def overlaps(self, other: IdRange) -> bool:
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
    owner: Optional[str] = None
    range: Optional[IdRange] = None
    problem: Optional[str] = None

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


def strtoul(text: str) -> Optional[int]:
    """``text`` read as shadow-utils' getulong() reads it; None when it rejects it."""
    match = _STRTOUL.match(text)
    if match is None:
        return None
    sign, digits = match.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    if value > ULONG_MAX:
        return None
    if sign == "-":
        value = (ULONG_MAX + 1 - value) % (ULONG_MAX + 1)
    return value


def parse_line(number: int, text: str, newline: bool = True) -> SubidLine:
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
        return SubidLine(number, text, newline, MALFORMED, owner, recovered, "a field is empty (expected USER:START:COUNT)")
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
    elif start + count - 1 > HIGHEST_ID:
        problems.append(f"the range goes past the highest ID {HIGHEST_ID}")
    return SubidLine(number, text, newline, ENTRY, owner, IdRange(start, count), "; ".join(problems) or None)


def _recover(parts: Sequence[str]) -> Optional[IdRange]:
    if len(parts) < 3:
        return None
    start, count = parts[1].strip(), parts[2].strip()
    if start.isdigit() and count.isdigit() and int(count) > 0:
        return IdRange(int(start), int(count))
    return None


def parse_subid(text: str) -> list[SubidLine]:
    """Every line of a subuid/subgid file; ``render(parse_subid(t)) == t`` for any text."""
    pieces = text.split("\n")
    lines = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        if last and piece == "":
            break
        lines.append(parse_line(index + 1, piece, newline=not last))
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

    def lines_of(self, user: PasswdEntry, accounts: AccountDatabase) -> list[SubidLine]:
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

    def occupied(self) -> list[IdRange]:
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
            f"cannot read {path}: {exc.strerror or exc}; run as root (become: true) or point "
            f"{kind}_path at a readable file"
        ) from exc
    return SubidFile(kind, path, True, parse_subid(data.decode("utf-8", "surrogateescape")))


def union_size(ranges: Iterable[IdRange]) -> int:
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

    def overlapping(sorted_starts: list[int], sorted_ends: list[int], rng: IdRange) -> int:
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
    best: Optional[int] = None
    second: Optional[int] = None
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
    return {
        kind: IdBounds(
            login_defs_int(values, f"SUB_{ID_WORD[kind]}_MIN", DEFAULT_MIN),
            login_defs_int(values, f"SUB_{ID_WORD[kind]}_MAX", DEFAULT_MAX),
            login_defs_int(values, f"SUB_{ID_WORD[kind]}_COUNT", DEFAULT_COUNT),
        )
        for kind in KINDS
    }


def is_free(merged: Sequence[tuple[int, int]], start: int, count: int) -> bool:
    """Whether ``count`` IDs from ``start`` touch none of the merged, sorted intervals."""
    index = bisect_right(merged, (start, float("inf"))) - 1
    if index >= 0 and merged[index][1] > start:
        return False
    following = index + 1
    return not (following < len(merged) and merged[following][0] < start + count)


def first_free(merged: Sequence[tuple[int, int]], count: int, low: int, high: int) -> Optional[int]:
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


@dataclass(frozen=True)
class RangeChange:
    """One change to a user's ranges: widen the range of line ``line``, or add a range."""

    kind: str
    action: str
    before: Optional[IdRange]
    after: IdRange
    line: Optional[int] = None

    @property
    def added(self) -> IdRange:
        """The IDs this change gives the user."""
        if self.before is None:
            return self.after
        return IdRange(self.before.end, self.after.end - self.before.end)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "start": self.added.start,
            "count": self.added.count,
            "line": self.line,
            "range_before": self.before.as_dict() if self.before else None,
            "range_after": self.after.as_dict(),
        }


def occupied_intervals(subid_file: SubidFile, account_ids: Iterable[int]) -> list[tuple[int, int]]:
    """What a new range must keep clear of: every range in the file and every account ID."""
    intervals = [(rng.start, rng.end) for rng in subid_file.occupied()]
    intervals.extend((value, value + 1) for value in account_ids)
    return merge_intervals(intervals)


def account_ids(accounts: AccountDatabase, kind: str) -> list[int]:
    return accounts.uids() if kind == SUBUID else accounts.gids()


def plan_user(
    files: Mapping[str, SubidFile],
    accounts: AccountDatabase,
    user: PasswdEntry,
    wanted: Mapping[str, int],
    bounds: Mapping[str, IdBounds],
) -> dict[str, list[RangeChange]]:
    """What to change so ``user`` holds at least ``wanted[kind]`` IDs of each kind.

    Never moves or shrinks a range. Widens the first of the user's plain ranges whose
    following IDs are free (within the bounds), otherwise adds one range of the missing size
    at the first free block; when both kinds need a new range of the same size, a start free
    in both files is preferred so the user's UIDs and GIDs line up.
    """
    plan: dict[str, list[RangeChange]] = {kind: [] for kind in KINDS}
    shortfall: dict[str, int] = {}
    occupied: dict[str, list[tuple[int, int]]] = {}
    for kind in KINDS:
        mine = files[kind].lines_of(user, accounts)
        have = union_size(line.range for line in mine if line.range is not None)
        need = wanted[kind] - have
        if need <= 0:
            continue
        occupied[kind] = occupied_intervals(files[kind], account_ids(accounts, kind))
        widened = _widen(kind, mine, need, occupied[kind], bounds[kind])
        if widened is not None:
            plan[kind].append(widened)
        else:
            shortfall[kind] = need
    if len(shortfall) == 2 and shortfall[SUBUID] == shortfall[SUBGID]:
        need = shortfall[SUBUID]
        joint = merge_intervals(occupied[SUBUID] + occupied[SUBGID])
        low = max(bounds[SUBUID].low, bounds[SUBGID].low)
        high = min(bounds[SUBUID].high, bounds[SUBGID].high)
        start = first_free(joint, need, low, high)
        if start is not None:
            for kind in KINDS:
                plan[kind].append(RangeChange(kind, "add", None, IdRange(start, need)))
            return plan
    for kind, need in shortfall.items():
        start = first_free(occupied[kind], need, bounds[kind].low, bounds[kind].high)
        if start is None:
            raise SubidError(
                f"no block of {need} free subordinate {ID_WORD[kind]}s is left between "
                f"SUB_{ID_WORD[kind]}_MIN {bounds[kind].low} and SUB_{ID_WORD[kind]}_MAX {bounds[kind].high} "
                f"in {files[kind].path}; raise SUB_{ID_WORD[kind]}_MAX in login.defs or remove unused ranges"
            )
        plan[kind].append(RangeChange(kind, "add", None, IdRange(start, need)))
    return plan


def _widen(
    kind: str,
    mine: Sequence[SubidLine],
    need: int,
    occupied: Sequence[tuple[int, int]],
    bounds: IdBounds,
) -> Optional[RangeChange]:
    for line in mine:
        rng = line.range
        if not line.canonical or rng is None:
            continue
        if rng.end < bounds.low or rng.end + need - 1 > bounds.high:
            continue
        if is_free(occupied, rng.end, need):
            return RangeChange(kind, "widen", rng, IdRange(rng.start, rng.count + need), line.number)
    return None


def apply_changes(subid_file: SubidFile, owner: str, changes: Sequence[RangeChange]) -> str:
    """The file's new text: widened lines rewritten in place, new ranges appended.

    Every other line keeps its exact bytes; a last line without a newline gets one before a
    range is appended after it (as shadow-utils does).
    """
    widened = {change.line: change for change in changes if change.action == "widen"}
    out = []
    for line in subid_file.lines:
        change = widened.get(line.number)
        if change is None:
            out.append(line.raw)
        else:
            out.append(f"{line.owner}:{change.after.start}:{change.after.count}" + ("\n" if line.newline else ""))
    added = [change for change in changes if change.action == "add"]
    if added:
        text = "".join(out)
        if text and not text.endswith("\n"):
            out.append("\n")
        out.extend(f"{owner}:{change.after.start}:{change.after.count}\n" for change in added)
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Where subordinate IDs come from, and the helpers that use them


def nss_source(nsswitch_text: Optional[str]) -> str:
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


def parse_getsubids(output: str) -> list[IdRange]:
    """Ranges from ``getsubids`` output (``0: user 100000 65536`` per line)."""
    ranges = []
    for line in output.splitlines():
        match = _GETSUBIDS_LINE.match(line.strip())
        if match:
            ranges.append(IdRange(int(match.group(2)), int(match.group(3))))
    return ranges


def getsubids_path() -> Optional[str]:
    return shutil.which("getsubids") or shutil.which("getsubids", path="/usr/bin:/usr/sbin:/bin:/sbin")


def getsubids(runner: Runner, executable: str, user: str, kind: str) -> list[IdRange]:
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


def helper_status(name: str, path: Optional[str] = None) -> dict[str, Any]:
    """Whether newuidmap/newgidmap exists and may set the IDs (setuid root or file capability)."""
    found = path or shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/bin:/sbin")
    status: dict[str, Any] = {"path": found, "exists": False, "setuid_root": False, "file_capability": False, "ok": False}
    if not found:
        status["problem"] = f"{name} is not installed (Debian and Ubuntu: package uidmap; Fedora and RHEL: shadow-utils)"
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


def load_snapshot(paths: SubidPaths) -> Snapshot:
    """Read the subid files, the accounts, login.defs and nsswitch.conf."""
    files = {kind: read_subid_file(kind, paths.of(kind)) for kind in KINDS}
    try:
        accounts = AccountDatabase.from_files(
            paths.passwd, paths.group, nss_fallback=(paths.passwd, paths.group) == (DEFAULT_PASSWD, DEFAULT_GROUP)
        )
    except AccountsError as exc:
        raise SubidError(f"{exc}; point passwd_path and group_path at readable files") from exc
    defs = _optional_text(paths.login_defs)
    bounds = bounds_from_login_defs(parse_login_defs(defs or ""))
    for kind in KINDS:
        if bounds[kind].low > bounds[kind].high or bounds[kind].low < 1:
            raise SubidError(
                f"SUB_{ID_WORD[kind]}_MIN {bounds[kind].low} and SUB_{ID_WORD[kind]}_MAX {bounds[kind].high} "
                f"in {paths.login_defs} leave no room for subordinate IDs; fix login.defs"
            )
    return Snapshot(paths, files, accounts, bounds, nss_source(_optional_text(paths.nsswitch)))


def _optional_text(path: str) -> Optional[str]:
    try:
        return read_text(path)
    except AccountsError:
        return None


def discover_rootless(accounts: AccountDatabase, proc_root: str = "/proc") -> list[PasswdEntry]:
    """Users (other than root) with rootless podman state or a running podman pause process."""
    found: dict[int, PasswdEntry] = {}
    running = pause_process_uids(proc_root)
    for entry in accounts.users:
        if entry.uid == 0 or entry.uid in found:
            continue
        if entry.uid in running or has_rootless_state(_account(entry)):
            found[entry.uid] = entry
    for uid in running:
        if uid not in found:
            entry = accounts.user_by_uid(uid)
            if entry is not None:
                found[uid] = entry
    return [found[uid] for uid in sorted(found)]


def _account(entry: PasswdEntry) -> Account:
    return Account(entry.name, entry.uid, entry.gid, entry.home)


# ---------------------------------------------------------------------------------------------
# The read-only report


@dataclass
class InfoRequest:
    paths: SubidPaths = field(default_factory=SubidPaths)
    users: Sequence[str] = ()
    discover: bool = True
    min_count: Optional[int] = None
    required_id: Optional[int] = None
    newuidmap_path: Optional[str] = None
    newgidmap_path: Optional[str] = None
    proc_root: str = "/proc"


def subid_report(request: InfoRequest, runner: Runner) -> dict[str, Any]:
    """Everything subid_info returns: users, findings, files, helpers, source."""
    snap = load_snapshot(request.paths)
    accounts = snap.accounts
    findings: list[dict[str, Any]] = []
    authoritative = snap.source == "files"
    getsubids_exe = getsubids_path() if not authoritative else None

    named: dict[int, PasswdEntry] = {}
    for name in request.users:
        entry = accounts.resolve_user(str(name))
        if entry is None:
            raise SubidError(
                f"user {name!r} does not exist (not in {request.paths.passwd}"
                + (" nor the passwd database" if accounts.nss_fallback else "")
                + "); check the name in users"
            )
        named[entry.uid] = entry
    rootless = {entry.uid: entry for entry in discover_rootless(accounts, request.proc_root)} if request.discover else {}

    def key(line: SubidLine) -> Any:
        entry = accounts.resolve_user(line.owner or "")
        return ("uid", entry.uid) if entry is not None else ("name", line.owner)

    # Everything the files say, line by line.
    with_entries: dict[int, PasswdEntry] = {}
    for kind in KINDS:
        subid_file = snap.files[kind]
        suffix = "" if authoritative else f" (this file is not used: subordinate IDs come from the NSS source {snap.source!r})"
        findings.extend(_line_findings(subid_file, suffix, authoritative))
        unknown: dict[str, list[int]] = {}
        for line in subid_file.entries:
            entry = accounts.resolve_user(line.owner or "")
            if entry is None:
                unknown.setdefault(line.owner or "", []).append(line.number)
            else:
                with_entries.setdefault(entry.uid, entry)
        for owner, numbers in sorted(unknown.items()):
            findings.append(
                make_finding(
                    "subid", "info", owner,
                    f"{subid_file.path} has ranges for {owner!r}, which is not a user on this host "
                    f"(line{'s' if len(numbers) > 1 else ''} {_numbers(numbers)}); the IDs stay reserved and a "
                    f"new user of that name would get them{suffix}",
                    id_parts=("unknown_user", kind), observed={"path": subid_file.path, "lines": numbers},
                )
            )
        if authoritative:
            findings.extend(_overlap_findings(subid_file, key, accounts))
            findings.extend(_account_id_findings(subid_file, accounts, kind))

    examined: dict[int, PasswdEntry] = {}
    for group in (with_entries, named, rootless):
        examined.update(group)

    users: dict[str, Any] = {}
    uid_info: dict[str, Any] = {}
    gid_info: dict[str, Any] = {}
    indexes = {kind: snap.files[kind].index(accounts) for kind in KINDS}
    for uid in sorted(examined):
        entry = examined[uid]
        info: dict[str, Any] = {
            "uid": entry.uid,
            "gid": entry.gid,
            "home": entry.home,
            "named": uid in named,
            "rootless_podman": uid in rootless,
        }
        per_kind: dict[str, list[IdRange]] = {}
        for kind in KINDS:
            wanted_min = request.min_count if request.min_count is not None else snap.bounds[kind].count
            required = max(wanted_min, request.required_id or 0)
            if authoritative:
                lines = indexes[kind].get(entry.uid, [])
                ranges = [line.range for line in lines if line.range is not None]
                listed = [dict(line.range.as_dict(), line=line.number) for line in lines if line.range is not None]
            elif getsubids_exe is not None:
                ranges = getsubids(runner, getsubids_exe, entry.name, kind)
                listed = [dict(rng.as_dict(), line=None) for rng in ranges]
            else:
                ranges, listed = [], []
            per_kind[kind] = ranges
            total = union_size(ranges)
            info[kind] = {
                "ranges": listed,
                "count": total,
                "min_count": wanted_min,
                "required_id": request.required_id,
                "required": required,
                "shortfall": max(0, required - total),
                "shortfall_min_count": max(0, wanted_min - total),
                "shortfall_required_id": max(0, (request.required_id or 0) - total),
            }
            if ranges:
                (uid_info if kind == SUBUID else gid_info)[entry.name] = {"start": ranges[0].start, "range": ranges[0].count}
            if authoritative or getsubids_exe is not None:
                findings.extend(_user_findings(entry, kind, info[kind], snap.files[kind].path, uid in rootless, authoritative))
            if authoritative:
                findings.extend(_own_overlap_findings(entry, kind, indexes[kind].get(entry.uid, []), snap.files[kind].path))
        if per_kind[SUBUID] and per_kind[SUBGID] and sorted(per_kind[SUBUID]) != sorted(per_kind[SUBGID]):
            uid_total, gid_total = union_size(per_kind[SUBUID]), union_size(per_kind[SUBGID])
            findings.append(
                make_finding(
                    "subid", "warning" if uid_total != gid_total else "info", entry.name,
                    f"{entry.name}'s subordinate UIDs ({_describe(per_kind[SUBUID])}, {uid_total} IDs) and GIDs "
                    f"({_describe(per_kind[SUBGID])}, {gid_total} IDs) disagree"
                    + ("; a container can use only as many of each as it has" if uid_total != gid_total else ""),
                    id_parts=("disagree",), user=entry.name,
                    observed={"subuid": [r.as_dict() for r in per_kind[SUBUID]], "subgid": [r.as_dict() for r in per_kind[SUBGID]]},
                    fixable=uid_total != gid_total,
                    fix=f"give {entry.name} {max(uid_total, gid_total)} of each (permfix.containers.subid)" if uid_total != gid_total else None,
                )
            )
        users[entry.name] = info

    helpers = {
        "newuidmap": helper_status("newuidmap", request.newuidmap_path),
        "newgidmap": helper_status("newgidmap", request.newgidmap_path),
    }
    for name, status in helpers.items():
        if not status["ok"]:
            findings.append(
                make_finding(
                    "subid", "error" if users else "info", name,
                    status["problem"] + ("" if users else " (no user on this host uses subordinate IDs yet)"),
                    id_parts=("helper",), observed={k: v for k, v in status.items() if k != "problem"},
                    expected={"setuid_root_or_file_capability": True},
                )
            )
    if not authoritative:
        message = (
            f"{request.paths.nsswitch} names {snap.source!r} as the source of subordinate IDs, so "
            f"{request.paths.subuid} and {request.paths.subgid} are not authoritative"
        )
        message += "; ranges were read with getsubids" if getsubids_exe else "; getsubids is not installed, so no user's ranges could be read"
        findings.append(
            make_finding(
                "subid", "info" if getsubids_exe else "warning", request.paths.nsswitch, message,
                id_parts=("nss_source",), observed={"source": snap.source, "getsubids": getsubids_exe},
            )
        )
    return json_safe({
        "users": users,
        "findings": findings,
        "podman_subuid_info": uid_info,
        "podman_subgid_info": gid_info,
        "source": {"nss": snap.source, "authoritative": authoritative, "getsubids": getsubids_exe, "nsswitch_path": request.paths.nsswitch},
        "files": {kind: _file_summary(snap.files[kind], authoritative) for kind in KINDS},
        "helpers": helpers,
        "bounds": {kind: {"min": b.low, "max": b.high, "count": b.count} for kind, b in snap.bounds.items()},
    })


INFO_PATH_OPTIONS: dict[str, str] = {
    "subuid_path": DEFAULT_SUBUID,
    "subgid_path": DEFAULT_SUBGID,
    "login_defs_path": DEFAULT_LOGIN_DEFS,
    "passwd_path": DEFAULT_PASSWD,
    "group_path": DEFAULT_GROUP,
    "nsswitch_path": DEFAULT_NSSWITCH,
}
INFO_ARGUMENT_SPEC: dict[str, Any] = {
    "users": {"type": "list", "elements": "str", "default": []},
    "discover": {"type": "bool", "default": True},
    "min_count": {"type": "int"},
    "required_id": {"type": "int"},
    "newuidmap_path": {"type": "path"},
    "newgidmap_path": {"type": "path"},
}
INFO_ARGUMENT_SPEC.update({name: {"type": "path", "default": default} for name, default in INFO_PATH_OPTIONS.items()})


def subid_paths(params: Mapping[str, Any]) -> SubidPaths:
    """The files named by the path options (INFO_PATH_OPTIONS) of subid_info and subid."""
    return SubidPaths(
        subuid=params["subuid_path"],
        subgid=params["subgid_path"],
        login_defs=params["login_defs_path"],
        passwd=params["passwd_path"],
        group=params["group_path"],
        nsswitch=params["nsswitch_path"],
    )


def info_request(params: Mapping[str, Any]) -> InfoRequest:
    """subid_info's validated parameters as a request; OptionError for a value out of range."""
    for name in ("min_count", "required_id"):
        if params[name] is not None and not 0 <= params[name] <= HIGHEST_ID:
            raise OptionError(f"{name} must be between 0 and {HIGHEST_ID}, not {params[name]}")
    return InfoRequest(
        paths=subid_paths(params),
        users=params["users"],
        discover=params["discover"],
        min_count=params["min_count"],
        required_id=params["required_id"],
        newuidmap_path=params["newuidmap_path"],
        newgidmap_path=params["newgidmap_path"],
    )


def subid_info(request: InfoRequest, runner: Runner) -> dict[str, Any]:
    """Everything subid_info returns, findings sorted errors first; DetectionError when it cannot run."""
    try:
        report = subid_report(request, runner)
    except SubidError as exc:
        raise DetectionError(json_safe(str(exc))) from None
    report["findings"] = sort_findings(report["findings"])
    return report


SUBID_INFO = Detection("subid", "subid_info", INFO_ARGUMENT_SPEC, info_request, subid_info)


def json_safe(value: Any) -> Any:
    """``value`` with every string made valid UTF-8: bytes that were not (kept as surrogate
    escapes when the files were read) are shown as ``\\xNN``."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, Mapping):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _numbers(numbers: Sequence[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _describe(ranges: Sequence[IdRange]) -> str:
    return ", ".join(rng.describe() for rng in ranges)


def _file_summary(subid_file: SubidFile, authoritative: bool) -> dict[str, Any]:
    counts = {kind: 0 for kind in (ENTRY, COMMENT, BLANK, MALFORMED)}
    for line in subid_file.lines:
        counts[line.kind] += 1
    return {
        "path": subid_file.path,
        "exists": subid_file.exists,
        "authoritative": authoritative,
        "lines": len(subid_file.lines),
        "entries": counts[ENTRY],
        "comments": counts[COMMENT],
        "blank": counts[BLANK],
        "malformed": counts[MALFORMED],
    }


def _line_findings(subid_file: SubidFile, suffix: str, authoritative: bool) -> list[dict[str, Any]]:
    findings = []
    kind = subid_file.kind
    seen: dict[tuple[Optional[str], IdRange], list[int]] = {}
    for line in subid_file.lines:
        if line.kind == MALFORMED:
            findings.append(
                make_finding(
                    "subid", "warning" if authoritative else "info", subid_file.path,
                    f"{subid_file.path} line {line.number} ({line.text!r}) is malformed: {line.problem}; "
                    f"it is kept as it is{suffix}",
                    id_parts=("malformed", kind, str(line.number)),
                    observed={"line": line.number, "text": line.text, "problem": line.problem},
                    expected={"format": "USER:START:COUNT"},
                )
            )
        elif line.kind == ENTRY:
            if line.problem is not None:
                findings.append(
                    make_finding(
                        "subid", "warning" if authoritative else "info", subid_file.path,
                        f"{subid_file.path} line {line.number} ({line.text!r}) is read by shadow-utils as "
                        f"{line.owner}:{line.range.start}:{line.range.count}, which is probably not what was meant: "  # type: ignore[union-attr]
                        f"{line.problem}{suffix}",
                        id_parts=("nonstandard", kind, str(line.number)),
                        observed={"line": line.number, "text": line.text, "problem": line.problem,
                                  "read_as": line.range.as_dict()},  # type: ignore[union-attr]
                        expected={"format": "USER:START:COUNT in decimal"},
                    )
                )
            seen.setdefault((line.owner, line.range), []).append(line.number)  # type: ignore[arg-type]
    for (owner, rng), numbers in seen.items():
        if len(numbers) > 1:
            findings.append(
                make_finding(
                    "subid", "info", subid_file.path,
                    f"{subid_file.path} has the same range {owner}:{rng.start}:{rng.count} on lines {_numbers(numbers)}; "
                    f"the copies add no IDs{suffix}",
                    id_parts=("duplicate", kind, str(numbers[0])), user=owner,
                    observed={"lines": numbers, "range": rng.as_dict()},
                )
            )
    return findings


def _overlap_findings(subid_file: SubidFile, key: Callable[[SubidLine], Any], accounts: AccountDatabase) -> list[dict[str, Any]]:
    findings = []
    word = ID_WORD[subid_file.kind]
    for overlap in find_overlaps(subid_file.entries, key):
        line = overlap.line
        rng = line.range if line.range is not None else IdRange(0, 0)
        names = ", ".join(f"{other.owner} (line {other.number}, {other.range.describe()})" for other in overlap.examples)  # type: ignore[union-attr]
        more = overlap.total - len(overlap.examples)
        owner_entry = accounts.resolve_user(line.owner or "")
        findings.append(
            make_finding(
                "subid", "warning", line.owner or "?",
                f"subordinate {word}s {rng.describe()} of {line.owner} ({subid_file.path} line {line.number}) "
                f"overlap the ranges of other users: {names}" + (f" and {more} more" if more > 0 else "")
                + "; their containers share host IDs and can read and write each other's files. Reported, not fixed: "
                "moving a range would orphan the files in the user's container storage",
                id_parts=("overlap", subid_file.kind, str(line.number)),
                user=owner_entry.name if owner_entry else line.owner,
                observed={
                    "line": line.number, "range": rng.as_dict(), "overlaps": overlap.total,
                    "examples": [{"user": o.owner, "line": o.number, "range": o.range.as_dict()} for o in overlap.examples],  # type: ignore[union-attr]
                },
                expected={"overlaps": 0},
            )
        )
    return findings


def _own_overlap_findings(entry: PasswdEntry, kind: str, lines: Sequence[SubidLine], path: str) -> list[dict[str, Any]]:
    pairs = []
    for index, line in enumerate(lines):
        for other in lines[index + 1:]:
            if line.range is not None and other.range is not None and line.range != other.range and line.range.overlaps(other.range):
                pairs.append((line.number, other.number))
    if not pairs:
        return []
    text = ", ".join(f"{a} and {b}" for a, b in pairs[:MAX_EXAMPLES])
    return [
        make_finding(
            "subid", "info", entry.name,
            f"{entry.name}'s own subordinate {ID_WORD[kind]} ranges in {path} overlap each other (lines {text}); "
            "the shared IDs count once",
            id_parts=("overlap_own", kind), user=entry.name, observed={"line_pairs": [list(p) for p in pairs]},
        )
    ]


def _account_id_findings(subid_file: SubidFile, accounts: AccountDatabase, kind: str) -> list[dict[str, Any]]:
    findings = []
    ids = account_ids(accounts, kind)
    names = accounts.names_by_uid() if kind == SUBUID else accounts.names_by_gid()
    word = ID_WORD[kind]
    for line in subid_file.entries:
        rng = line.range
        if rng is None or rng.count == 0:
            continue
        inside = ids_within(ids, rng.start, rng.end)
        if not inside:
            continue
        owner = accounts.resolve_user(line.owner or "")
        own_id = None if owner is None else (owner.uid if kind == SUBUID else owner.gid)
        described = []
        for value in inside[:MAX_EXAMPLES]:
            label = ", ".join(names.get(value, []))
            described.append(f"{value} ({'its own' if value == own_id else label})")
        more = len(inside) - len(described)
        findings.append(
            make_finding(
                "subid", "warning", line.owner or "?",
                f"subordinate {word}s {rng.describe()} of {line.owner} ({subid_file.path} line {line.number}) contain the "
                f"{word}{'s' if len(inside) > 1 else ''} of existing accounts: {', '.join(described)}"
                + (f" and {more} more" if more > 0 else "")
                + f"; a container of {line.owner} can act as those accounts on the host's files",
                id_parts=("contains_account", kind, str(line.number)),
                user=owner.name if owner else line.owner,
                observed={"line": line.number, "range": rng.as_dict(), "ids": inside[:MAX_EXAMPLES], "count": len(inside)},
                expected={"ids": []},
            )
        )
    return findings


def _user_findings(
    entry: PasswdEntry, kind: str, info: Mapping[str, Any], path: str, rootless: bool, authoritative: bool
) -> list[dict[str, Any]]:
    word = ID_WORD[kind]
    where = path if authoritative else "the subordinate ID database (getsubids)"
    total, required = info["count"], info["required"]
    observed = {"count": total, "ranges": [{"start": r["start"], "count": r["count"]} for r in info["ranges"]]}
    expected = {"count": required}
    fix = f"give {entry.name} {required - total} more subordinate {word}s (permfix.containers.subid)"
    if total == 0:
        why = "it runs rootless podman" if rootless else "it is expected to run rootless containers"
        return [
            make_finding(
                "subid", "error", entry.name,
                f"{entry.name} has no subordinate {word}s in {where}, and {why}: podman fails with "
                f"'no {kind} ranges found for user \"{entry.name}\"' or maps only the user's own {word}",
                id_parts=("missing", kind), user=entry.name, observed=observed, expected=expected,
                fixable=authoritative, fix=fix if authoritative else None,
            )
        ]
    if total >= required:
        return []
    required_id = info["required_id"] or 0
    severity = "error" if total < required_id else "warning"
    reason = (
        f"container {word} {required_id} needs at least {required_id}"
        if total < required_id
        else f"at least {info['min_count']} are expected (SUB_{word}_COUNT or min_count)"
    )
    return [
        make_finding(
            "subid", severity, entry.name,
            f"{entry.name} has {total} subordinate {word}s in {where} and {reason}; images with files owned by higher "
            f"IDs fail with 'potentially insufficient UIDs or GIDs available in user namespace' and "
            f"'--user' above {total} fails with 'cannot setresuid'",
            id_parts=("too_few", kind), user=entry.name, observed=observed, expected=expected,
            fixable=authoritative, fix=fix if authoritative else None,
        )
    ]


# ---------------------------------------------------------------------------------------------
# Locks and atomic writes


SERIAL_LOCK_DIRS = ("/run/lock", "/var/lock")
SERIAL_LOCK_NAME = "permfix-subid.lock"


class SerialLock:
    """An exclusive flock of our own, held across read, allocate and write, so that two runs
    (whatever writer they use) never pick the same free block."""

    def __init__(self, timeout: float = 60.0, directory: Optional[str] = None) -> None:
        self.timeout = timeout
        if directory is None:
            directory = next((d for d in SERIAL_LOCK_DIRS if os.path.isdir(d) and os.access(d, os.W_OK)), tempfile.gettempdir())
        self.path = os.path.join(directory, SERIAL_LOCK_NAME)
        self._fd: Optional[int] = None

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
                    raise SubidError(f"another run holds {self.path} for more than {self.timeout:.0f} seconds; try again") from exc
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
            raise SubidError(f"cannot open the password file lock {path}: {exc.strerror or exc}; run as root") from exc
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    raise SubidError(
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
            raise SubidError(f"cannot create the lock file {mine}: {exc.strerror or exc}; run as root") from exc
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
                        raise SubidError(
                            f"{lock} is held by process {holder if holder is not None else '(unknown)'}; "
                            "try again when it has finished"
                        ) from None
                    time.sleep(0.05)
                except OSError as exc:
                    raise SubidError(f"cannot create the lock {lock}: {exc.strerror or exc}") from exc
        finally:
            try:
                os.unlink(mine)
            except OSError:
                pass


def _lock_holder(lock: str) -> Optional[int]:
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


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: a temporary file in the same directory with the same
    owner, mode (0644 for a new file) and SELinux label, flushed to disk, then renamed."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        current: Optional[os.stat_result] = os.stat(path)
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
                os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        _copy_selinux_label(path, temporary)
        os.rename(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _copy_selinux_label(source: str, target: str) -> None:
    try:
        import selinux  # type: ignore[import-not-found]
    except ImportError:
        return
    try:
        if selinux.is_selinux_enabled() and os.path.exists(source):
            selinux.lsetfilecon(target, selinux.lgetfilecon(source)[1])
    except OSError:
        return


# ---------------------------------------------------------------------------------------------
# The fix


@dataclass
class EnsureRequest:
    user: str
    counts: Optional[Mapping[str, int]] = None
    paths: SubidPaths = field(default_factory=SubidPaths)
    migrate: str = MIGRATE_ON_CHANGE
    proc_root: str = "/proc"


@dataclass
class EnsureResult:
    user: PasswdEntry
    changes: dict[str, list[RangeChange]]
    before: dict[str, str]
    after: dict[str, str]
    ranges: dict[str, list[IdRange]]
    wanted: dict[str, int]
    method: Optional[str] = None
    backups: dict[str, str] = field(default_factory=dict)
    migrate: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed_ranges(self) -> bool:
        return any(self.changes[kind] for kind in KINDS)


def usermod_path() -> Optional[str]:
    return shutil.which("usermod") or shutil.which("usermod", path="/usr/sbin:/usr/bin:/sbin:/bin")


def usermod_supports_subids(runner: Runner, executable: str) -> bool:
    rc, stdout, stderr = runner([executable, "--help"], "/")
    return "--add-subuids" in stdout + stderr


def ensure_subids(
    request: EnsureRequest,
    runner: Runner,
    *,
    check_mode: bool,
    backup: Optional[Callable[[str], str]] = None,
) -> EnsureResult:
    """Make sure the user holds at least the wanted number of subordinate UIDs and GIDs.

    In check mode nothing is locked or written and the result says exactly what a real run
    would change. Raises SubidError with an actionable message.
    """
    snap = load_snapshot(request.paths)
    if snap.source != "files":
        raise SubidError(
            f"subordinate IDs on this host come from the NSS source {snap.source!r} ('subid:' in "
            f"{request.paths.nsswitch}), not from {request.paths.subuid} and {request.paths.subgid}; "
            f"change the ranges in that source (for example the directory server) instead"
        )
    user = snap.accounts.resolve_user(request.user)
    if user is None:
        raise SubidError(
            f"user {request.user!r} does not exist (not in {request.paths.passwd}"
            + (" nor the passwd database" if snap.accounts.nss_fallback else "")
            + "); create the user first"
        )
    wanted = {kind: (request.counts or {}).get(kind, snap.bounds[kind].count) for kind in KINDS}
    if check_mode:
        result = _result(snap, user, wanted, plan_user(snap.files, snap.accounts, user, wanted, snap.bounds))
    else:
        with SerialLock():
            snap = load_snapshot(request.paths)
            plan = plan_user(snap.files, snap.accounts, user, wanted, snap.bounds)
            use_usermod = _usermod_applies(snap, user, plan, runner)
            if any(plan[kind] for kind in KINDS) and use_usermod is None:
                with ShadowLock([request.paths.subuid, request.paths.subgid]):
                    snap = load_snapshot(request.paths)
                    plan = plan_user(snap.files, snap.accounts, user, wanted, snap.bounds)
                    result = _result(snap, user, wanted, plan)
                    _write_files(snap, result, backup)
                    result.method = "file"
            elif any(plan[kind] for kind in KINDS) and use_usermod is not None:
                result = _result(snap, user, wanted, plan)
                _run_usermod(snap, result, use_usermod, runner, backup)
                result.method = "usermod"
            else:
                result = _result(snap, user, wanted, plan)
    _overlap_warnings(snap, user, result)
    result.migrate = _migrate(request, user, result.changed_ranges, runner, check_mode)
    return result


def _result(snap: Snapshot, user: PasswdEntry, wanted: dict[str, int], plan: dict[str, list[RangeChange]]) -> EnsureResult:
    before = {kind: snap.files[kind].text for kind in KINDS}
    after = {kind: apply_changes(snap.files[kind], user.name, plan[kind]) if plan[kind] else before[kind] for kind in KINDS}
    ranges = {}
    for kind in KINDS:
        current = [line.range for line in snap.files[kind].lines_of(user, snap.accounts) if line.range is not None]
        widened = {change.before: change.after for change in plan[kind] if change.action == "widen"}
        ranges[kind] = [widened.get(rng, rng) for rng in current] + [c.after for c in plan[kind] if c.action == "add"]
    return EnsureResult(user, plan, before, after, ranges, wanted)


def _usermod_applies(snap: Snapshot, user: PasswdEntry, plan: Mapping[str, list[RangeChange]], runner: Runner) -> Optional[str]:
    """usermod's path when it can make this change: only additions, to the system files, for a
    user of /etc/passwd (usermod edits only local accounts), with a usermod that knows
    --add-subuids. None otherwise."""
    if not snap.paths.system_files:
        return None
    if any(change.action != "add" for kind in KINDS for change in plan[kind]):
        return None
    if user.name not in {entry.name for entry in snap.accounts.users}:
        return None
    executable = usermod_path()
    if executable is None or not usermod_supports_subids(runner, executable):
        return None
    return executable


def _write_files(snap: Snapshot, result: EnsureResult, backup: Optional[Callable[[str], str]]) -> None:
    for kind in KINDS:
        if not result.changes[kind]:
            continue
        path = snap.paths.of(kind)
        if backup is not None and snap.files[kind].exists:
            result.backups[kind] = backup(path)
        try:
            write_atomically(path, result.after[kind])
        except OSError as exc:
            raise SubidError(f"cannot write {path}: {exc.strerror or exc}; run as root (become: true)") from exc


def _run_usermod(
    snap: Snapshot, result: EnsureResult, executable: str, runner: Runner, backup: Optional[Callable[[str], str]]
) -> None:
    argv = [executable]
    for kind in KINDS:
        for change in result.changes[kind]:
            flag = "--add-subuids" if kind == SUBUID else "--add-subgids"
            argv += [flag, f"{change.after.start}-{change.after.last}"]
        if result.changes[kind] and backup is not None and snap.files[kind].exists:
            result.backups[kind] = backup(snap.paths.of(kind))
    argv.append(result.user.name)
    rc, stdout, stderr = runner(argv, "/")
    if rc != 0:
        raise SubidError(f"'{' '.join(argv)}' failed with exit code {rc}: {(stderr or stdout).strip()}")
    # usermod appends exactly what apply_changes predicted; read back to prove it, and to make
    # sure no other program (useradd, a hand edit) took the same IDs while this run chose them.
    clashes = []
    for kind in KINDS:
        if not result.changes[kind]:
            continue
        written = read_subid_file(kind, snap.paths.of(kind))
        mine = written.lines_of(result.user, snap.accounts)
        have = {line.range for line in mine}
        missing = [c.after for c in result.changes[kind] if c.after not in have]
        if missing:
            raise SubidError(
                f"usermod reported success but {snap.paths.of(kind)} lacks {_describe(missing)} for {result.user.name}"
            )
        for change in result.changes[kind]:
            for line in written.entries:
                if line not in mine and line.range is not None and line.range.overlaps(change.after):
                    clashes.append(f"{line.owner}'s {line.range.describe()} ({snap.paths.of(kind)} line {line.number})")
        result.after[kind] = written.text
    if clashes:
        undo = [executable]
        for kind in KINDS:
            for change in result.changes[kind]:
                undo += ["--del-subuids" if kind == SUBUID else "--del-subgids", f"{change.after.start}-{change.after.last}"]
        undo.append(result.user.name)
        rc, stdout, stderr = runner(undo, "/")
        undone = "they were removed again" if rc == 0 else f"removing them again failed ({(stderr or stdout).strip()})"
        raise SubidError(
            f"another program added {', '.join(clashes)} while ranges for {result.user.name} were being chosen, so "
            f"the new ranges overlap it; {undone}. Run again."
        )


def _overlap_warnings(snap: Snapshot, user: PasswdEntry, result: EnsureResult) -> None:
    for kind in KINDS:
        mine = snap.files[kind].lines_of(user, snap.accounts)
        for line in mine:
            if line.range is None:
                continue
            for other in snap.files[kind].entries:
                if other in mine or other.range is None or not other.range.overlaps(line.range):
                    continue
                result.warnings.append(
                    f"{user.name}'s subordinate {ID_WORD[kind]}s {line.range.describe()} ({snap.paths.of(kind)} line "
                    f"{line.number}) overlap {other.owner}'s {other.range.describe()} (line {other.number}); not "
                    "changed, because moving a range would orphan the files in the user's container storage"
                )
                break


def _migrate(request: EnsureRequest, user: PasswdEntry, changed: bool, runner: Runner, check_mode: bool) -> dict[str, Any]:
    """Run ``podman system migrate`` as the user when its ranges changed (or always)."""
    outcome: dict[str, Any] = {"ran": False, "would_run": False, "rc": None, "stdout": "", "stderr": "", "reason": None}
    if request.migrate == MIGRATE_NEVER:
        outcome["reason"] = "migrate is set to never"
        return outcome
    if request.migrate == MIGRATE_ON_CHANGE and not changed:
        outcome["reason"] = "the user's ranges did not change"
        return outcome
    if podman_path() is None:
        outcome["reason"] = "podman is not installed"
        return outcome
    account = _account(user)
    if user.uid not in pause_process_uids(request.proc_root) and not has_rootless_state(account):
        outcome["reason"] = "the user has no rootless podman state, so there is nothing to migrate"
        return outcome
    outcome["would_run"] = True
    outcome["warning"] = MIGRATE_WARNING
    if check_mode:
        outcome["reason"] = "check mode"
        return outcome
    try:
        result = run_podman(runner, ["system", "migrate"], account, check=False)
    except PodmanError as exc:
        raise SubidError(f"podman system migrate as {user.name} could not run: {exc}") from exc
    outcome.update(ran=True, rc=result.rc, stdout=result.stdout, stderr=result.stderr)
    return outcome
