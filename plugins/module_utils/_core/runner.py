# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TODO docstring (_podman)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], Optional[str]], Tuple[int, str, str]]


def module_runner(module: Any) -> Runner:
    """A Runner backed by ``AnsibleModule.run_command`` (what every module passes in)."""

    def run(argv: Sequence[str], cwd: Optional[str]) -> tuple[int, str, str]:
        rc, stdout, stderr = module.run_command(list(argv), cwd=cwd)
        return rc, stdout, stderr

    return run
