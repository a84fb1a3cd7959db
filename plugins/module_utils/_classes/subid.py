# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Subordinate IDs: the detection (subid_info).

Missing, short, overlapping and malformed ranges of /etc/subuid and /etc/subgid, per user
asked for and per rootless podman user, with what each user holds and the linux-system-roles
``podman_subuid_info`` shape. Reads the files with ``_host.subid_file``; when nsswitch names
another ``subid:`` source, asks ``getsubids`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Detection, take
from ansible_collections.permfix.containers.plugins.module_utils._core.errors import DetectionError, OptionError
from ansible_collections.permfix.containers.plugins.module_utils._core.findings import make_finding, sort_findings
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import json_safe
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX
from ansible_collections.permfix.containers.plugins.module_utils._core.options import host_path, plain_name
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import rootless_users
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import (
    Account,
    AccountDatabase,
    ids_within,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import (
    BLANK,
    COMMENT,
    ENTRY,
    ID_WORD,
    KINDS,
    MALFORMED,
    MAX_EXAMPLES,
    SUBGID,
    SUBUID,
    SubidError,
    SubidFile,
    SubidLine,
    SubidPaths,
    SubRange,
    account_ids,
    describe_ranges,
    find_overlaps,
    getsubids,
    getsubids_path,
    helper_status,
    line_numbers,
    load_snapshot,
    path_option_spec,
    subid_paths,
    union_size,
)

# ---------------------------------------------------------------------------------------------
# The read-only report


@dataclass
class SubidInfoRequest:
    paths: SubidPaths = field(default_factory=SubidPaths)
    users: Sequence[str] = ()
    discover: bool = True
    min_count: int | None = None
    # per user name: the least number of subordinate IDs that user should have (wins over min_count)
    counts: Mapping[str, int] = field(default_factory=dict)
    required_id: int | None = None
    newuidmap_path: str | None = None
    newgidmap_path: str | None = None
    proc_root: str = "/proc"


def subid_report(request: SubidInfoRequest, runner: Runner) -> dict[str, Any]:
    """Everything subid_info returns: users, findings, files, helpers, source."""
    snap = load_snapshot(request.paths)
    accounts = snap.accounts
    findings: list[dict[str, Any]] = []
    authoritative = snap.source == "files"
    getsubids_exe = getsubids_path() if not authoritative else None

    named: dict[int, Account] = {}
    for name in request.users:
        entry = accounts.resolve_user(str(name))
        if entry is None:
            raise SubidError(
                f"user {name!r} does not exist (not in {request.paths.passwd}"
                + (" nor the passwd database" if accounts.nss_fallback else "")
                + "); check the name in users"
            )
        named[entry.uid] = entry
    rootless = {entry.uid: entry for entry in rootless_users(accounts, request.proc_root)} if request.discover else {}

    def key(line: SubidLine) -> Any:
        entry = accounts.resolve_user(line.owner or "")
        return ("uid", entry.uid) if entry is not None else ("name", line.owner)

    # Everything the files say, line by line.
    with_entries: dict[int, Account] = {}
    for kind in KINDS:
        subid_file = snap.files[kind]
        suffix = (
            ""
            if authoritative
            else f" (this file is not used: subordinate IDs come from the NSS source {snap.source!r})"
        )
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
                    f"(line{'s' if len(numbers) > 1 else ''} {line_numbers(numbers)}); the IDs stay reserved and a "
                    f"new user of that name would get them{suffix}",
                    id_parts=("unknown_user", kind), observed={"path": subid_file.path, "lines": numbers},
                )
            )
        if authoritative:
            findings.extend(_overlap_findings(subid_file, key, accounts))
            findings.extend(_account_id_findings(subid_file, accounts, kind))

    examined: dict[int, Account] = {}
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
        per_kind: dict[str, list[SubRange]] = {}
        for kind in KINDS:
            wanted_min = request.counts.get(
                entry.name, request.min_count if request.min_count is not None else snap.bounds[kind].count
            )
            required = max(wanted_min, request.required_id or 0)
            if authoritative:
                lines = indexes[kind].get(entry.uid, [])
                ranges = [line.range for line in lines if line.range is not None]
                listed: list[dict[str, Any]] = [
                    dict(line.range.as_dict(), line=line.number) for line in lines if line.range is not None
                ]
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
                (uid_info if kind == SUBUID else gid_info)[entry.name] = {
                    "start": ranges[0].start,
                    "range": ranges[0].count,
                }
            if authoritative or getsubids_exe is not None:
                findings.extend(
                    _user_findings(entry, kind, info[kind], snap.files[kind].path, uid in rootless, authoritative)
                )
            if authoritative:
                findings.extend(
                    _own_overlap_findings(entry, kind, indexes[kind].get(entry.uid, []), snap.files[kind].path)
                )
        if per_kind[SUBUID] and per_kind[SUBGID] and sorted(per_kind[SUBUID]) != sorted(per_kind[SUBGID]):
            uid_total, gid_total = union_size(per_kind[SUBUID]), union_size(per_kind[SUBGID])
            findings.append(
                make_finding(
                    "subid",
                    "warning" if uid_total != gid_total else "info",
                    entry.name,
                    f"{entry.name}'s subordinate UIDs ({describe_ranges(per_kind[SUBUID])}, {uid_total} IDs) and GIDs "
                    f"({describe_ranges(per_kind[SUBGID])}, {gid_total} IDs) disagree"
                    + ("; a container can use only as many of each as it has" if uid_total != gid_total else ""),
                    id_parts=("disagree",),
                    user=entry.name,
                    observed={
                        "subuid": [r.as_dict() for r in per_kind[SUBUID]],
                        "subgid": [r.as_dict() for r in per_kind[SUBGID]],
                    },
                    fixable=uid_total != gid_total,
                    fix=f"give {entry.name} {max(uid_total, gid_total)} of each (permfix.containers.subid)"
                    if uid_total != gid_total
                    else None,
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
        message += (
            "; ranges were read with getsubids"
            if getsubids_exe
            else "; getsubids is not installed, so no user's ranges could be read"
        )
        findings.append(
            make_finding(
                "subid", "info" if getsubids_exe else "warning", request.paths.nsswitch, message,
                id_parts=("nss_source",), observed={"source": snap.source, "getsubids": getsubids_exe},
            )
        )
    return json_safe(
        {
            "users": users,
            "findings": findings,
            "podman_subuid_info": uid_info,
            "podman_subgid_info": gid_info,
            "source": {
                "nss": snap.source,
                "authoritative": authoritative,
                "getsubids": getsubids_exe,
                "nsswitch_path": request.paths.nsswitch,
            },
            "files": {kind: _file_summary(snap.files[kind], authoritative) for kind in KINDS},
            "helpers": helpers,
            "bounds": {kind: {"min": b.low, "max": b.high, "count": b.count} for kind, b in snap.bounds.items()},
        }
    )


SUBID_INFO_ARGUMENT_SPEC: dict[str, Any] = {
    "users": {"type": "list", "elements": "str", "default": []},
    "discover": {"type": "bool", "default": True},
    "min_count": {"type": "int"},
    "counts": {"type": "dict", "default": {}},
    "required_id": {"type": "int"},
    "newuidmap_path": {"type": "path"},
    "newgidmap_path": {"type": "path"},
}
SUBID_INFO_ARGUMENT_SPEC.update(path_option_spec())


def subid_counts(raw: Mapping[str, Any] | None) -> dict[str, int]:
    """The ``counts`` option (user name to a count of at least 1) validated; OptionError says which entry is wrong."""
    counts: dict[str, int] = {}
    for name, value in (raw or {}).items():
        user = plain_name(str(name), "a user name in counts")
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if number is None and isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if number is None or not 1 <= number <= ID_MAX:
            raise OptionError(f"counts[{user}] must be a number of subordinate IDs from 1 to {ID_MAX}, not {value!r}")
        counts[user] = number
    return counts


def subid_info_request(params: Mapping[str, Any]) -> SubidInfoRequest:
    """subid_info's validated parameters as a request; OptionError for a value out of range."""
    for name in ("min_count", "required_id"):
        if params[name] is not None and not 0 <= params[name] <= ID_MAX:
            raise OptionError(f"{name} must be between 0 and {ID_MAX}, not {params[name]}")
    helpers = {
        name: host_path(params[name], name) for name in ("newuidmap_path", "newgidmap_path") if params[name] is not None
    }
    names = ("users", "discover", "min_count", "required_id")
    request = SubidInfoRequest(paths=subid_paths(params), counts=subid_counts(params["counts"]), **take(params, *names))
    request.newuidmap_path = helpers.get("newuidmap_path")
    request.newgidmap_path = helpers.get("newgidmap_path")
    return request


def subid_info(request: SubidInfoRequest, runner: Runner) -> dict[str, Any]:
    """Everything subid_info returns, findings sorted errors first; DetectionError when it cannot run."""
    try:
        report = subid_report(request, runner)
    except SubidError as exc:
        raise DetectionError(json_safe(str(exc))) from None
    report["findings"] = sort_findings(report["findings"])
    return report


SUBID_INFO = Detection("subid", "subid_info", SUBID_INFO_ARGUMENT_SPEC, subid_info_request, subid_info)


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
    seen: dict[tuple[str | None, SubRange], list[int]] = {}
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
                    "subid",
                    "info",
                    subid_file.path,
                    f"{subid_file.path} has the same range {owner}:{rng.start}:{rng.count} "
                    f"on lines {line_numbers(numbers)}; "
                    f"the copies add no IDs{suffix}",
                    id_parts=("duplicate", kind, str(numbers[0])),
                    user=owner,
                    observed={"lines": numbers, "range": rng.as_dict()},
                )
            )
    return findings


def _range_of(subid_file: SubidFile, line: SubidLine, rng: SubRange) -> str:
    """``subordinate UIDs 100000-165535 of app (/etc/subuid line 3)``, for messages."""
    word = ID_WORD[subid_file.kind]
    return f"subordinate {word}s {rng.describe()} of {line.owner} ({subid_file.path} line {line.number})"


def _overlap_findings(
    subid_file: SubidFile, key: Callable[[SubidLine], Any], accounts: AccountDatabase
) -> list[dict[str, Any]]:
    findings = []
    for overlap in find_overlaps(subid_file.entries, key):
        line = overlap.line
        rng = line.range if line.range is not None else SubRange(0, 0)
        names = ", ".join(
            f"{other.owner} (line {other.number}, {other.range.describe()})"  # type: ignore[union-attr]
            for other in overlap.examples
        )
        more = overlap.total - len(overlap.examples)
        owner_entry = accounts.resolve_user(line.owner or "")
        findings.append(
            make_finding(
                "subid",
                "warning",
                line.owner or "?",
                f"{_range_of(subid_file, line, rng)} overlap the ranges of other users: {names}"
                + (f" and {more} more" if more > 0 else "")
                + "; their containers share host IDs and can read and write each other's files. Reported, not fixed: "
                "moving a range would orphan the files in the user's container storage",
                id_parts=("overlap", subid_file.kind, str(line.number)),
                user=owner_entry.name if owner_entry else line.owner,
                observed={
                    "line": line.number,
                    "range": rng.as_dict(),
                    "overlaps": overlap.total,
                    "examples": [
                        {"user": o.owner, "line": o.number, "range": o.range.as_dict()}  # type: ignore[union-attr]
                        for o in overlap.examples
                    ],
                },
                expected={"overlaps": 0},
            )
        )
    return findings


def _own_overlap_findings(entry: Account, kind: str, lines: Sequence[SubidLine], path: str) -> list[dict[str, Any]]:
    pairs = []
    for index, line in enumerate(lines):
        for other in lines[index + 1:]:
            if (
                line.range is not None
                and other.range is not None
                and line.range != other.range
                and line.range.overlaps(other.range)
            ):
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
                "subid",
                "warning",
                line.owner or "?",
                f"{_range_of(subid_file, line, rng)} contain the {word}"
                f"{'s' if len(inside) > 1 else ''} of existing accounts: {', '.join(described)}"
                + (f" and {more} more" if more > 0 else "")
                + f"; a container of {line.owner} can act as those accounts on the host's files",
                id_parts=("contains_account", kind, str(line.number)),
                user=owner.name if owner else line.owner,
                observed={
                    "line": line.number,
                    "range": rng.as_dict(),
                    "ids": inside[:MAX_EXAMPLES],
                    "count": len(inside),
                },
                expected={"ids": []},
            )
        )
    return findings


def _user_findings(
    entry: Account, kind: str, info: Mapping[str, Any], path: str, rootless: bool, authoritative: bool
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
