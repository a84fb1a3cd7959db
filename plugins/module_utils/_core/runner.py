# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""How module_utils run commands and look at processes.

Every external command goes through a :data:`Runner`: ``module_runner(module)`` wraps
``AnsibleModule.run_command`` (output decoded with surrogate escapes, so bytes survive), and
unit tests pass plain functions. module_utils never start processes themselves.

:func:`proc_by_comm` is the one scan of ``/proc`` for processes by command name (podman's
pause processes, dockerd's command line).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

Runner = Callable[[Sequence[str], Optional[str]], tuple[int, str, str]]
"""Runs argv with a working directory and returns (rc, stdout, stderr): see module_runner."""


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


def module_runner(module: Any) -> Runner:
    """A Runner backed by ``AnsibleModule.run_command`` (what every module passes in)."""

    def run(argv: Sequence[str], cwd: str | None) -> tuple[int, str, str]:
        rc, stdout, stderr = module.run_command(list(argv), cwd=cwd)
        return rc, stdout, stderr

    return run


@dataclass(frozen=True)
class Process:
    """A process found by :func:`proc_by_comm`: its pid, owner and command line."""

    pid: int
    uid: int
    argv: tuple[str, ...]


def proc_by_comm(comm: str, proc_root: str = "/proc") -> list[Process]:
    """Running processes whose ``/proc/PID/comm`` is ``comm``; ones that exit meanwhile are skipped.

    ``argv`` is the NUL-separated command line (surrogate escapes for bytes that are not UTF-8).
    """
    found: list[Process] = []
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        directory = os.path.join(proc_root, entry)
        try:
            with open(os.path.join(directory, "comm"), encoding="utf-8", errors="replace") as handle:
                if handle.read().strip() != comm:
                    continue
            uid = os.stat(directory).st_uid
            with open(os.path.join(directory, "cmdline"), "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        argv = tuple(part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0") if part)
        found.append(Process(int(entry), uid, argv))
    return found
