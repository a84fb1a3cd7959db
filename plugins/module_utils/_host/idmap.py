# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""User namespaces as id maps: container id -> host id.

:class:`IdMap` is a namespace's uid or gid map as ``(inside, outside, length)`` ranges
(:class:`IdMapping`). It is built from what the kernel reports for a running process
(``/proc/PID/uid_map``, :func:`read_proc_maps`, only meaningful when this process is in the
host's namespaces: :func:`in_host_namespaces`), from podman's ``IDMappings`` colon syntax, or
computed for Docker's ``userns-remap`` and a rootless user's default namespace (0 is the
user, N is the user's N-th subordinate id). Maps compose, as nested namespaces do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_LIMIT


@dataclass(frozen=True, order=True)
class IdMapping:
    """``length`` ids: container id ``inside + k`` is host id ``outside + k``."""

    inside: int
    outside: int
    length: int

    def text(self) -> str:
        return f"{self.inside}:{self.outside}:{self.length}"


class IdMap:
    """A user namespace's uid or gid map, container id -> host id."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: Iterable[IdMapping] = ()) -> None:
        self.ranges: tuple[IdMapping, ...] = tuple(sorted(r for r in ranges if r.length > 0))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self.ranges == other.ranges

    def __hash__(self) -> int:
        return hash(self.ranges)

    def __repr__(self) -> str:
        return f"IdMap({[r.text() for r in self.ranges]})"

    @property
    def is_identity(self) -> bool:
        return self.ranges == IDENTITY.ranges

    def to_host(self, value: int) -> int | None:
        """The host id of container id ``value``, None when the namespace does not map it."""
        for rng in self.ranges:
            if rng.inside <= value < rng.inside + rng.length:
                return rng.outside + (value - rng.inside)
        return None

    def to_container(self, host_value: int) -> int | None:
        """The container id that host id ``host_value`` appears as, None when unmapped."""
        for rng in self.ranges:
            if rng.outside <= host_value < rng.outside + rng.length:
                return rng.inside + (host_value - rng.outside)
        return None

    def maps_host(self, host_value: int) -> bool:
        return self.to_container(host_value) is not None

    def compose(self, outer: IdMap) -> IdMap:
        """This map (container -> middle) followed by ``outer`` (middle -> host).

        Parts of this map whose middle ids ``outer`` does not map are dropped, as the
        kernel would refuse them.
        """
        result = []
        for rng in self.ranges:
            start, end = rng.outside, rng.outside + rng.length
            for out in outer.ranges:
                low = max(start, out.inside)
                high = min(end, out.inside + out.length)
                if low < high:
                    result.append(IdMapping(rng.inside + (low - start), out.outside + (low - out.inside), high - low))
        return IdMap(_merge(result))

    def lines(self) -> list[str]:
        """``inside:outside:length`` per range (podman's --uidmap syntax), for reports."""
        return [rng.text() for rng in self.ranges]


def _merge(ranges: Sequence[IdMapping]) -> list[IdMapping]:
    merged: list[IdMapping] = []
    for rng in sorted(ranges):
        if merged:
            last = merged[-1]
            if last.inside + last.length == rng.inside and last.outside + last.length == rng.outside:
                merged[-1] = IdMapping(last.inside, last.outside, last.length + rng.length)
                continue
        merged.append(rng)
    return merged


IDENTITY = IdMap([IdMapping(0, 0, ID_LIMIT)])


def parse_proc_map(text: str) -> IdMap:
    """Parse ``/proc/PID/uid_map`` (``inside outside length`` per line)."""
    ranges = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or not all(field.isdigit() for field in fields):
            continue
        ranges.append(IdMapping(int(fields[0]), int(fields[1]), int(fields[2])))
    return IdMap(ranges)


def parse_colon_map(entries: Iterable[str]) -> IdMap:
    """Parse podman's ``IDMappings`` / ``--uidmap`` values (``inside:outside:length``).

    Raises ValueError for an entry that is not three numbers.
    """
    ranges = []
    for entry in entries:
        parts = str(entry).strip().split(":")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ValueError(f"id mapping {entry!r} is not inside:outside:length")
        ranges.append(IdMapping(int(parts[0]), int(parts[1]), int(parts[2])))
    return IdMap(ranges)


def concatenated(subranges: Iterable[tuple[int, int]], first_inside: int = 0) -> IdMap:
    """Container ids ``first_inside``, ``first_inside + 1``... laid over ``(start, count)``
    host ranges in the order given (how newuidmap and Docker's userns-remap use
    /etc/subuid lines)."""
    ranges = []
    inside = first_inside
    for start, count in subranges:
        if count <= 0:
            continue
        ranges.append(IdMapping(inside, start, count))
        inside += count
    return IdMap(ranges)


def userns_remap_map(subranges: Iterable[tuple[int, int]]) -> IdMap:
    """Docker's ``userns-remap``: container 0 is the remap user's first subordinate id."""
    return concatenated(subranges, 0)


def rootless_map(host_id: int, subranges: Iterable[tuple[int, int]]) -> IdMap:
    """A rootless podman user's namespace: 0 is the user, N is the N-th subordinate id."""
    return IdMap([IdMapping(0, host_id, 1)] + list(concatenated(subranges, 1).ranges))


def read_proc_maps(pid: int | None, proc_root: str = "/proc") -> tuple[IdMap, IdMap] | None:
    """A running process's uid and gid maps, as the host's initial namespace sees them."""
    if not pid:
        return None
    try:
        with open(os.path.join(proc_root, str(pid), "uid_map"), encoding="ascii") as handle:
            uid_text = handle.read()
        with open(os.path.join(proc_root, str(pid), "gid_map"), encoding="ascii") as handle:
            gid_text = handle.read()
    except (OSError, ValueError):
        return None
    uid_map, gid_map = parse_proc_map(uid_text), parse_proc_map(gid_text)
    if not uid_map.ranges or not gid_map.ranges:
        return None
    return uid_map, gid_map


# The kernel's inode numbers of the initial PID namespace (PROC_PID_INIT_INO).
INITIAL_PID_NS = "pid:[4026531836]"


def in_host_namespaces(proc_root: str = "/proc") -> bool:
    """Whether this process is in the host's initial PID and user namespaces.

    Only then is an engine's ``State.Pid`` a process of ``/proc`` here, and its maps host ids
    (inside a container, the same number can be another process).
    """
    try:
        pid_ns = os.readlink(os.path.join(proc_root, "self", "ns", "pid"))
    except OSError:
        return False
    if pid_ns != INITIAL_PID_NS:
        return False
    maps = read_proc_maps(os.getpid(), proc_root)
    return maps is not None and maps[0].is_identity
