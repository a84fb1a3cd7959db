# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The path_owner fix: give a tree to an owner (or an ACL), safely.

The fix half of the ``bind_mount`` class (the bind_mounts role calls it for each fix plan
entry of bind_mount_info) and a module of its own. The request names the target ids (names
resolved on the host) and the walk options; :func:`run_path_owner` scans (check mode) or fixes
with the ownership walker (``_engines.walk``) and shapes the result: counts, bounded samples, a
diff of the sample, and a failure that still carries everything when some entries could not be
changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Fix, FixFailed, take
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import sample_size as check_sample_size
from ansible_collections.permfix.containers.plugins.module_utils._core.options import host_path
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.walk import (
    POLICIES,
    STRATEGIES,
    OwnershipError,
    OwnershipReport,
    Target,
    WalkOptions,
    fix,
    scan,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.owner_spec import (
    OwnerSpecError,
    parse_from,
    parse_id,
)

PATH_OWNER_ARGUMENT_SPEC: dict[str, Any] = {
    "path": {"type": "path", "required": True},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "recurse": {"type": "bool", "default": True},
    "from_owner": {"type": "str"},
    "strategy": {"type": "str", "choices": list(STRATEGIES), "default": "chown"},
    "change_policy": {"type": "str", "choices": list(POLICIES), "default": "always"},
    "one_file_system": {"type": "bool", "default": True},
    "allow_hardlinks": {"type": "bool", "default": False},
    "sample_size": {"type": "int", "default": 20},
    "workers": {"type": "int", "default": 0},
}


@dataclass(frozen=True)
class PathOwnerRequest:
    path: str
    target: Target
    options: WalkOptions


def path_owner_target(params: Mapping[str, Any]) -> Target:
    """The ids to give (names resolved on the host); OwnerSpecError says what is wrong."""
    uid = parse_id(params["owner"], "user")
    gid = parse_id(params["group"], "group")
    from_uid, from_gid = parse_from(params["from_owner"])
    if uid is None and gid is None:
        raise OwnerSpecError("give an owner, a group or both (names or numbers)")
    return Target(uid=uid, gid=gid, from_uid=from_uid, from_gid=from_gid, strategy=params["strategy"])


def path_owner_options(params: Mapping[str, Any]) -> WalkOptions:
    return WalkOptions(
        **take(params, "recurse", "one_file_system", "allow_hardlinks", "workers", policy="change_policy"),
        sample_size=check_sample_size(params["sample_size"]),
    )


def path_owner_request(params: Mapping[str, Any]) -> PathOwnerRequest:
    """path_owner's parameters as a request: the path, then the ids, then the walk options."""
    path = host_path(params["path"], "path")
    try:
        target = path_owner_target(params)
    except OwnerSpecError as exc:
        raise OwnerSpecError(str(exc), path=path) from None
    return PathOwnerRequest(path, target, path_owner_options(params))


def diff_text(report: OwnershipReport, side: str) -> str:
    """The diff of one side (``before`` or ``after``): one line per sampled entry."""
    lines: list[str] = [f"{item['path']} {item[side]}" for item in report.changes.items]
    if report.changes.truncated:
        lines.append(f"... and {report.changes.truncated:,} more entries")
    return "\n".join(lines) + ("\n" if lines else "")


def run_path_owner(request: PathOwnerRequest, runner: Runner, check_mode: bool, diff: bool) -> dict[str, Any]:
    """Scan (check mode) or fix the tree; FixFailed (with every return value) when entries failed."""
    path = request.path
    try:
        report = (scan if check_mode else fix)(path, request.target, request.options)
    except OwnershipError as exc:
        raise OwnershipError(str(exc), path=path) from None
    except OSError as exc:
        raise FixFailed(
            f"unexpected error while changing {path}: {exc}; nothing after this point was changed", path=path
        ) from None
    result: dict[str, Any] = report.as_dict()
    result["owner_id"] = request.target.uid
    result["group_id"] = request.target.gid
    result["changed"] = report.would_change if check_mode else report.changed
    if diff and report.changes.total:
        result["diff"] = {
            "before_header": report.path,
            "after_header": report.path,
            "before": diff_text(report, "before"),
            "after": diff_text(report, "after"),
        }
    problems = report.problems()
    if report.counts["failed"]:
        counts = report.counts
        if check_mode:
            done = f"{counts['to_change']:,} entries would be changed"
        else:
            done = f"{counts['changed']:,} of {counts['to_change']:,} entries to change were changed"
        raise FixFailed(f"{report.path}: {done}, but " + "; ".join(problems), **result)
    result["warnings"] = problems
    return result


PATH_OWNER_FIX = Fix(
    "bind_mount", "path_owner", PATH_OWNER_ARGUMENT_SPEC, path_owner_request, run_path_owner,
    module_options={"required_one_of": [["owner", "group"]]},
)
