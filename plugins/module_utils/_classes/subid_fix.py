# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Subordinate IDs: the fix (subid).

The allocator never moves or shrinks a range: it widens one in place when the IDs after it
are free, otherwise it adds the first free block within SUB_UID_MIN..SUB_UID_MAX (as shadow's
useradd does) that overlaps no other range and no account's ID.

Writes go through ``usermod --add-subuids/--add-subgids`` (which takes shadow's locks) when
the change only adds ranges to the system files, otherwise through an atomic replacement made
under shadow's own locks (``_core.atomic``). Every run that writes also holds a lock of its own
so that two runs never pick the same free block. Then ``podman system migrate`` as the user.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

from ansible_collections.permfix.containers.plugins.module_utils._core.atomic import (
    LinkTargetError,
    SerialLock,
    ShadowLock,
    backup_copy,
    link_target,
    write_atomically,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Fix, FixFailed
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import OptionError, root_advice
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
    has_rootless_state,
    pause_process_uids,
    podman_path,
    run_podman,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account, AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import (
    ID_WORD,
    KINDS,
    SUBGID,
    SUBUID,
    IdBounds,
    Snapshot,
    SubidError,
    SubidFile,
    SubidLine,
    SubidPaths,
    SubRange,
    account_ids,
    describe_ranges,
    first_free,
    is_free,
    load_snapshot,
    merge_intervals,
    path_option_spec,
    read_subid_file,
    subid_paths,
    union_size,
)

MIGRATE_ON_CHANGE = "on_change"
MIGRATE_ALWAYS = "always"
MIGRATE_NEVER = "never"
MIGRATE_WARNING = "podman system migrate stops every running container of the user"


@dataclass(frozen=True)
class RangeChange:
    """One change to a user's ranges: widen the range of line ``line``, or add a range."""

    kind: str
    action: str
    before: SubRange | None
    after: SubRange
    line: int | None = None

    @property
    def added(self) -> SubRange:
        """The IDs this change gives the user."""
        if self.before is None:
            return self.after
        return SubRange(self.before.end, self.after.end - self.before.end)

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


def plan_user(
    files: Mapping[str, SubidFile],
    accounts: AccountDatabase,
    user: Account,
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
                plan[kind].append(RangeChange(kind, "add", None, SubRange(start, need)))
            return plan
    for kind, need in shortfall.items():
        start = first_free(occupied[kind], need, bounds[kind].low, bounds[kind].high)
        if start is None:
            raise SubidError(
                f"no block of {need} free subordinate {ID_WORD[kind]}s is left between "
                f"SUB_{ID_WORD[kind]}_MIN {bounds[kind].low} and SUB_{ID_WORD[kind]}_MAX {bounds[kind].high} "
                f"in {files[kind].path}; raise SUB_{ID_WORD[kind]}_MAX in login.defs or remove unused ranges"
            )
        plan[kind].append(RangeChange(kind, "add", None, SubRange(start, need)))
    return plan


def _widen(
    kind: str,
    mine: Sequence[SubidLine],
    need: int,
    occupied: Sequence[tuple[int, int]],
    bounds: IdBounds,
) -> RangeChange | None:
    for line in mine:
        rng = line.range
        if not line.canonical or rng is None:
            continue
        if rng.end < bounds.low or rng.end + need - 1 > bounds.high:
            continue
        if is_free(occupied, rng.end, need):
            return RangeChange(kind, "widen", rng, SubRange(rng.start, rng.count + need), line.number)
    return None


def apply_range_changes(subid_file: SubidFile, owner: str, changes: Sequence[RangeChange]) -> str:
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
# The fix


@dataclass
class SubidFixRequest:
    user: str
    counts: Mapping[str, int] | None = None
    paths: SubidPaths = field(default_factory=SubidPaths)
    migrate: str = MIGRATE_ON_CHANGE
    proc_root: str = "/proc"


@dataclass
class EnsureResult:
    user: Account
    changes: dict[str, list[RangeChange]]
    before: dict[str, str]
    after: dict[str, str]
    ranges: dict[str, list[SubRange]]
    wanted: dict[str, int]
    method: str | None = None
    backups: dict[str, str] = field(default_factory=dict)
    migrate: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed_ranges(self) -> bool:
        return any(self.changes[kind] for kind in KINDS)


def usermod_path() -> str | None:
    return shutil.which("usermod") or shutil.which("usermod", path="/usr/sbin:/usr/bin:/sbin:/bin")


def usermod_supports_subids(runner: Runner, executable: str) -> bool:
    rc, stdout, stderr = runner([executable, "--help"], "/")
    return "--add-subuids" in stdout + stderr


def ensure_subids(
    request: SubidFixRequest,
    runner: Runner,
    *,
    check_mode: bool,
    backup: Callable[[str], str] | None = None,
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
    plan = _plan(snap, user, wanted)
    if check_mode or not any(plan[kind] for kind in KINDS):
        # Nothing to write (or check mode): no lock is needed, the files are replaced whole by
        # every writer, so this read is one consistent state.
        result = _result(snap, user, wanted, plan)
    else:
        with SerialLock():
            snap = load_snapshot(request.paths)
            plan = _plan(snap, user, wanted)
            use_usermod = _usermod_applies(snap, user, plan, runner)
            if any(plan[kind] for kind in KINDS) and use_usermod is None:
                with ShadowLock([request.paths.subuid, request.paths.subgid]):
                    snap = load_snapshot(request.paths)
                    plan = _plan(snap, user, wanted)
                    result = _result(snap, user, wanted, plan)
                    _write_files(snap, result, backup)
                    result.method = "file" if result.changed_ranges else None
            elif any(plan[kind] for kind in KINDS) and use_usermod is not None:
                result = _result(snap, user, wanted, plan)
                _run_usermod(snap, result, use_usermod, runner, backup)
                result.method = "usermod"
            else:
                result = _result(snap, user, wanted, plan)
    result.warnings.extend(snap.warnings)
    _overlap_warnings(snap, user, result)
    result.migrate = _migrate(request, user, result.changed_ranges, runner, check_mode)
    return result


def _plan(snap: Snapshot, user: Account, wanted: Mapping[str, int]) -> dict[str, list[RangeChange]]:
    """plan_user on the snapshot; a SubidError carries the snapshot's warnings (a capped SUB_*ID_MAX)."""
    try:
        return plan_user(snap.files, snap.accounts, user, wanted, snap.bounds)
    except SubidError as exc:
        if not snap.warnings:
            raise
        raise SubidError(str(exc), **dict(exc.details, warnings=list(snap.warnings))) from None


def _result(snap: Snapshot, user: Account, wanted: dict[str, int], plan: dict[str, list[RangeChange]]) -> EnsureResult:
    before = {kind: snap.files[kind].text for kind in KINDS}
    after = {
        kind: apply_range_changes(snap.files[kind], user.name, plan[kind]) if plan[kind] else before[kind]
        for kind in KINDS
    }
    ranges = {}
    for kind in KINDS:
        current = [line.range for line in snap.files[kind].lines_of(user, snap.accounts) if line.range is not None]
        widened = {change.before: change.after for change in plan[kind] if change.action == "widen"}
        ranges[kind] = [widened.get(rng, rng) for rng in current] + [c.after for c in plan[kind] if c.action == "add"]
    return EnsureResult(user, plan, before, after, ranges, wanted)


def _usermod_applies(
    snap: Snapshot, user: Account, plan: Mapping[str, list[RangeChange]], runner: Runner
) -> str | None:
    """usermod's path when it can make this change: only additions, to the system files, for a
    user of /etc/passwd (usermod edits only local accounts), with a usermod that knows
    --add-subuids. None otherwise."""
    if not snap.paths.system_files:
        return None
    if any(os.path.islink(snap.paths.of(kind)) for kind in KINDS):
        return None  # written through the link by _write_files, whatever usermod's shadow version does
    if any(change.action != "add" for kind in KINDS for change in plan[kind]):
        return None
    if user.name not in {entry.name for entry in snap.accounts.users}:
        return None
    executable = usermod_path()
    if executable is None or not usermod_supports_subids(runner, executable):
        return None
    return executable


def _write_files(snap: Snapshot, result: EnsureResult, backup: Callable[[str], str] | None) -> None:
    """Write each changed file (through a symbolic link to the file it leads to, see
    :func:`link_target`). When the second write fails after the first succeeded, the first file
    gets its previous text back, so the two files never disagree; when even that fails,
    :class:`FixFailed` says which file changed (``changed`` true)."""
    kinds = [kind for kind in KINDS if result.changes[kind]]
    try:
        targets = {kind: link_target(snap.paths.of(kind)) for kind in kinds}
    except LinkTargetError as exc:
        raise SubidError(f"{exc}; nothing was changed") from exc
    for index, kind in enumerate(kinds):
        path = snap.paths.of(kind)
        written = kinds[:index]
        if backup is not None and snap.files[kind].exists:
            try:
                result.backups[kind] = backup(path)
            except OSError as exc:
                _undo(snap, result, targets, written, f"cannot back up {path}: {_reason(exc)}")
        try:
            write_atomically(targets[kind], result.after[kind])
        except OSError as exc:
            _undo(snap, result, targets, written, f"cannot write {path}: {_reason(exc)}")


def _reason(exc: OSError) -> str:
    """Why a write failed, with what to do about it."""
    text = exc.strerror or str(exc)
    if exc.errno == errno.EPERM:
        return f"{text} (is it immutable? lsattr shows an 'i'; 'chattr -i' clears it)"
    if exc.errno == errno.EACCES:
        return text + root_advice("; run as root (become: true)")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{text}; free some space on its file system"
    if exc.errno == errno.EROFS:
        return f"{text}; it is on a read-only file system"
    return text


def _undo(
    snap: Snapshot, result: EnsureResult, targets: Mapping[str, str], written: Sequence[str], problem: str
) -> NoReturn:
    """Put back the files already written (``written``) and raise: SubidError when every one got
    its previous text back, FixFailed (``changed`` true, ``changed_files``) when one did not."""
    kept = []
    for kind in written:
        try:
            if snap.files[kind].exists:
                write_atomically(targets[kind], result.before[kind])
            else:
                os.unlink(targets[kind])
        except OSError as exc:
            kept.append((kind, _reason(exc)))
    if not written:
        raise SubidError(f"{problem}; nothing was changed")
    if not kept:
        restored = " and ".join(snap.paths.of(kind) for kind in written)
        raise SubidError(f"{problem}; {restored} got its previous text back, so nothing was changed")
    files = [snap.paths.of(kind) for kind, reason in kept]
    backups = [result.backups[kind] for kind, reason in kept if kind in result.backups]
    raise FixFailed(
        f"{problem}; {' and '.join(files)} already has the new ranges for {result.user.name} and could not be "
        f"restored ({'; '.join(reason for kind, reason in kept)})"
        + (f"; its previous text is in {', '.join(backups)}" if backups else "")
        + "; run again once both files can be written",
        changed=True,
        changed_files=files,
        user=result.user.name,
        backup_files=dict(result.backups),
    )


def _run_usermod(
    snap: Snapshot, result: EnsureResult, executable: str, runner: Runner, backup: Callable[[str], str] | None
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
    # usermod appends exactly what apply_range_changes predicted; read back to prove it, and to make
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
                f"usermod reported success but {snap.paths.of(kind)} lacks {describe_ranges(missing)} "
                f"for {result.user.name}"
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
                undo += [
                    "--del-subuids" if kind == SUBUID else "--del-subgids",
                    f"{change.after.start}-{change.after.last}",
                ]
        undo.append(result.user.name)
        rc, stdout, stderr = runner(undo, "/")
        undone = "they were removed again" if rc == 0 else f"removing them again failed ({(stderr or stdout).strip()})"
        raise SubidError(
            f"another program added {', '.join(clashes)} while ranges for {result.user.name} were being chosen, so "
            f"the new ranges overlap it; {undone}. Run again."
        )


def _overlap_warnings(snap: Snapshot, user: Account, result: EnsureResult) -> None:
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


def _migrate(
    request: SubidFixRequest, user: Account, changed: bool, runner: Runner, check_mode: bool
) -> dict[str, Any]:
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
    account = user
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


# --------------------------------------------------------------------------------------------
# The subid module


@dataclass(frozen=True)
class SubidModuleRequest:
    """The subid module's validated parameters."""

    ensure: SubidFixRequest
    backup: bool


SUBID_ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True, "aliases": ["user"]},
    "count": {"type": "int"},
    "migrate": {
        "type": "str",
        "choices": [MIGRATE_ON_CHANGE, MIGRATE_ALWAYS, MIGRATE_NEVER],
        "default": MIGRATE_ON_CHANGE,
    },
    "backup": {"type": "bool", "default": False},
    **path_option_spec(),
}


def subid_module_request(params: Mapping[str, Any]) -> SubidModuleRequest:
    """subid's parameters as a request; OptionError says what is wrong."""
    if params["count"] is not None and not 1 <= params["count"] <= ID_MAX:
        raise OptionError(f"count must be between 1 and {ID_MAX}, not {params['count']}")
    ensure = SubidFixRequest(
        user=params["name"],
        counts=None if params["count"] is None else {kind: params["count"] for kind in KINDS},
        paths=subid_paths(params),
        migrate=params["migrate"],
    )
    return SubidModuleRequest(ensure, bool(params["backup"]))


def _outcome(result: EnsureResult) -> dict[str, Any]:
    """The module's return values (without ``changed`` and ``diff``)."""
    values: dict[str, Any] = {
        "user": result.user.name,
        "uid": result.user.uid,
        "method": result.method,
        "backup_files": dict(result.backups),
        "migrate": result.migrate,
    }
    for kind in KINDS:
        values[kind] = {
            "count": union_size(result.ranges[kind]),
            "wanted": result.wanted[kind],
            "ranges": [rng.as_dict() for rng in result.ranges[kind]],
            "changes": [change.as_dict() for change in result.changes[kind]],
        }
    return values


def _diff(result: EnsureResult, paths: SubidPaths) -> list[dict[str, str]]:
    return [
        {
            "before_header": paths.of(kind),
            "after_header": paths.of(kind),
            "before": result.before[kind],
            "after": result.after[kind],
        }
        for kind in KINDS
        if result.changes[kind]
    ]


def run_subid(request: SubidModuleRequest, runner: Runner, check_mode: bool, diff: bool) -> dict[str, Any]:
    """Everything the subid module returns; FixFailed when ``podman system migrate`` failed."""
    result = ensure_subids(
        request.ensure, runner, check_mode=check_mode, backup=backup_copy if request.backup else None
    )
    changed = result.changed_ranges or bool(result.migrate.get("would_run"))
    values = dict(
        _outcome(result), changed=changed, diff=_diff(result, request.ensure.paths), warnings=list(result.warnings)
    )
    if result.migrate.get("ran") and result.migrate.get("rc") != 0:
        written = "its new ranges are written, but " if result.changed_ranges else ""
        raise FixFailed(
            f"{written}'podman system migrate' as {result.user.name} failed with exit code "
            f"{result.migrate['rc']}: {result.migrate['stderr'].strip()}; run it as that user to see why",
            **values,
        )
    return values


SUBID_FIX = Fix("subid", "subid", SUBID_ARGUMENT_SPEC, subid_module_request, run_subid)
