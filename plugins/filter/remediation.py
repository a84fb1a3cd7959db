# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filter that turns the results of the four roles into the remediation summary's lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

# The kernel parameter of the unprivileged_ports role (what permfix.containers.unprivileged_port returns as key).
UNPRIVILEGED_PORT_KEY = "net.ipv4.ip_unprivileged_port_start"


def _subid_change(item: Mapping[str, Any]) -> str:
    return f"subid: subordinate UIDs and GIDs of {item.get('user')}"


def _port_change(item: Mapping[str, Any]) -> str:
    runtime = item.get("runtime")
    before = runtime.get("before", "?") if isinstance(runtime, Mapping) else "?"
    return f"unprivileged_port: {item.get('key') or UNPRIVILEGED_PORT_KEY} {before} -> {item.get('value')}"


def _bind_mount_change(item: Mapping[str, Any]) -> str:
    return f"bind_mount: owners below {item.get('path')}"


def _volume_change(item: Mapping[str, Any]) -> str:
    return f"named_volume: owners in volume {item.get('volume')}"


def _notes(result: Mapping[str, Any]) -> list[Any]:
    return list(result.get("notes") or [])


def _skipped_reasons(result: Mapping[str, Any]) -> list[Any]:
    return [item.get("reason") for item in result.get("skipped") or []]


# In the order the remediate playbook applies the roles: how one fixed item reads, and the notes shown.
# bind_mounts shows why it left each mount alone; its own notes (what it could not examine) are not shown,
# the before/after detections report those.
ROLES: dict[str, tuple[Callable[[Mapping[str, Any]], str], Callable[[Mapping[str, Any]], list[Any]]]] = {
    "subids": (_subid_change, _notes),
    "unprivileged_ports": (_port_change, _notes),
    "bind_mounts": (_bind_mount_change, _skipped_reasons),
    "named_volumes": (_volume_change, _notes),
}


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AnsibleFilterError(f"{what} must be a mapping, not {type(value).__name__}")
    return value


def _strings(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise AnsibleFilterError(f"{what} must be a list of strings, not {type(value).__name__}")
    return list(value)


def remediation_changes(
    results: Any, errors_before: Sequence[str] | None = None, errors_after: Sequence[str] | None = None
) -> dict[str, list[Any]]:
    """What the roles changed (would change, in check mode) and the notes, one line each."""
    roles = _mapping(results, "the input (role name to <role>_result)")
    unknown = sorted(str(name) for name in roles if name not in ROLES)
    if unknown:
        raise AnsibleFilterError(
            f"remediation_changes does not know the role(s) {', '.join(unknown)}; it takes {', '.join(ROLES)}"
        )
    changes: list[Any] = []
    notes: list[Any] = []
    for name, (change_line, note_lines) in ROLES.items():
        result = roles.get(name)
        if result is None:  # the role did not run
            continue
        result = _mapping(result, f"{name}_result")
        for item in result.get("fixed") or []:
            changes.append(change_line(_mapping(item, f"an item of {name}_result.fixed")))
        notes.extend(note_lines(result))
    notes.extend(f"not examined before the fix: {error}" for error in _strings(errors_before, "errors_before"))
    notes.extend(f"not examined after the fix: {error}" for error in _strings(errors_after, "errors_after"))
    return {"changes": changes, "notes": notes}


class FilterModule:
    """permfix.containers remediation filter."""

    def filters(self) -> dict[str, Any]:
        return {"remediation_changes": remediation_changes}
