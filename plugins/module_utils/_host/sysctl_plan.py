# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Changes to sysctl files: planned as whole-file contents, checked, then written.

Changes are planned first (:func:`plan_dropin`, :func:`plan_in_place`) as whole-file contents,
so check mode and diff mode see exactly what a real run writes; every plan is checked by
resolving the files as they would be afterwards (:func:`resolve_after`), so a plan that would
not win at boot is refused before anything is written. :func:`apply_file_changes` then writes
each file atomically and puts everything back if one write fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.atomic import write_atomically
from ansible_collections.permfix.containers.plugins.module_utils._host.sysctl import (
    KERNEL_SEPARATORS,
    KERNEL_SPACE,
    Assignment,
    ConfigFile,
    Resolution,
    SysctlError,
    file_bytes,
    file_text,
    name_order,
    parse_sysctl_line,
    resolve_contents,
    sysctl_lines,
)

DROPIN_NAME = "99-permfix-unprivileged-port.conf"
# A drop-in that must sort after NAME.conf is called NAME.<DROPIN_SUFFIX>: "." + "p" sorts
# after ".c", so it comes after NAME.conf whatever NAME is.
DROPIN_SUFFIX = "permfix-unprivileged-port.conf"
MARKER = "# Managed by permfix.containers.unprivileged_port; edit with that module or remove this file."


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
    ordered = sorted(names, key=name_order)
    if not ordered or name_order(preferred) > name_order(ordered[-1]):
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
        if item.is_conf and item.accepted and item.value != value:
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
    return _verified(resolution, changes, value)


def _verified(resolution: Resolution, changes: list[FileChange], value: int) -> list[FileChange]:
    """``changes`` when sysctl --system would then set ``value``; SysctlError saying why not otherwise."""
    after = resolve_after(resolution, changes)
    if after.value == value:
        return changes
    winner = after.winner
    refused = [item for item in after.applied_assignments if item.value == value and item.refused]
    source = f"{winner.path} line {winner.line}" if winner else "the kernel default"
    reason = f"; the new line would be refused: {refused[-1].refused}" if refused else ""
    raise SysctlError(
        f"after these changes sysctl --system would still set {resolution.key} to {after.value} ({source}){reason}. "
        "Nothing was changed; change the file that wins by hand, or choose another value"
    )


def replace_value_in_line(text: str, value: int, span: tuple[int, int] | None = None) -> str:
    """``text`` with the number it sets replaced by ``value``.

    Only the number the kernel reads changes (``span`` is where the value is in the line's bytes,
    as :func:`parse_sysctl_line` found it): the key, the ``-`` prefix, the spacing, a trailing
    remark after a blank (which the kernel ignores), other bytes and the line end stay as they were.
    """
    raw = file_bytes(text)
    if span is None:
        parsed = parse_sysctl_line(text)
        if parsed is None or parsed.value_span is None:
            raise SysctlError(f"{text!r} does not set a value")
        span = parsed.value_span
    start, end = span
    segment = raw[start:end]
    lead = len(segment) - len(segment.lstrip(KERNEL_SPACE))
    number_end = lead
    while number_end < len(segment) and segment[number_end:number_end + 1] not in KERNEL_SEPARATORS:
        number_end += 1
    return file_text(raw[:start] + segment[:lead] + str(value).encode() + segment[number_end:] + raw[end:])


# The directories of packaged files: never edited in place, even through a link from /etc.
VENDOR_DIRS: tuple[str, ...] = ("/usr/lib/sysctl.d", "/lib/sysctl.d", "/usr/local/lib/sysctl.d", "/run/sysctl.d")


def editable_in_place(winner: Assignment, sysctl_dirs: Sequence[str], sysctl_conf: str | None) -> bool:
    """Whether persist_mode in_place may change the winning line where it is.

    What counts is the file the line is really in (links resolved): sysctl_conf, or a file in the
    first sysctl directory; never a file of a vendor directory, a file elsewhere that a link in
    /etc points to, or a pattern line (changing it would change other keys too).
    """
    if winner.pattern:
        return False
    real_dir = os.path.dirname(winner.real_path)
    vendor = {os.path.realpath(directory) for directory in (*VENDOR_DIRS, *sysctl_dirs[1:])}
    if real_dir in vendor:
        return False
    if sysctl_conf and winner.real_path == os.path.realpath(sysctl_conf):
        return True
    return bool(sysctl_dirs) and real_dir == os.path.realpath(sysctl_dirs[0])


def plan_in_place(
    resolution: Resolution,
    value: int,
    sysctl_dirs: Sequence[str],
    sysctl_conf: str | None,
    dropin_name: str = DROPIN_NAME,
) -> list[FileChange]:
    """Change the winning line in place when it is in /etc; a drop-in otherwise.

    Vendor files (under /usr/lib, /lib, /run) are never edited, not even through a link in
    /etc/sysctl.d: a package update would undo the change; a drop-in in the first sysctl
    directory wins over them instead.
    """
    if resolution.value == value:
        return []
    winner = resolution.winner
    if winner is not None and editable_in_place(winner, sysctl_dirs, sysctl_conf):
        before = resolution.contents[winner.real_path]
        lines = sysctl_lines(before)
        lines[winner.line - 1] = replace_value_in_line(lines[winner.line - 1], value, winner.value_span)
        after = "".join(lines)
        reason = f"line {winner.line} set {resolution.key} = {winner.raw_value}; changed in place to {value}"
        return _verified(resolution, [FileChange(winner.real_path, before, after, reason)], value)
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


def resolve_after(resolution: Resolution, changes: Sequence[FileChange]) -> Resolution:
    """What :func:`resolve` would find once ``changes`` are written (nothing is written)."""
    removed = {change.path for change in changes if change.after is None}
    contents = dict(resolution.contents)
    files = [config for config in resolution.files if config.path not in removed]
    for change in changes:
        if change.after is None:
            continue
        real_path = os.path.realpath(change.path)
        contents[real_path] = change.after
        if all(config.real_path != real_path for config in files):
            name, directory = os.path.basename(change.path), os.path.dirname(change.path)
            files.append(ConfigFile(change.path, name, directory, real_path))
    ordered = sorted(
        (config for config in files if config.applied and not config.is_conf), key=lambda item: name_order(item.name)
    )
    ordered += [config for config in files if config.applied and config.is_conf]
    ordered += [config for config in files if not config.applied]
    return resolve_contents(resolution.key, ordered, contents, resolution.default)
