# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The one exception base of permfix.containers' module_utils.

Every error a module_util raises on purpose is a :class:`PermfixError` (directly or through a
subclass named after where it comes from: ``SubidError``, ``DockerEngineError``...). Its message
is the sentence the module fails with; ``details`` are extra ``fail_json`` values (for example
``exception`` for a missing library). ``run_detection`` and ``run_fix`` (``_core.contracts``)
catch it once; anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from typing import Any


def root_advice(advice: str, as_root: str = "") -> str:
    """``advice`` to run as root for a process that is not root; ``as_root`` (often nothing) for
    one that already is: telling root to run as root only hides the real cause."""
    return advice if os.geteuid() != 0 else as_root


class PermfixError(Exception):
    """A failure with a sentence a person can act on; ``details`` go into ``fail_json`` too."""

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.details = details


class OptionError(PermfixError):
    """An option value the module refuses; the message says which one and what to give."""


class DetectionError(PermfixError):
    """A detection could not run; the message says why."""


class LockError(PermfixError):
    """A lock could not be taken (held by another run for too long, or not creatable)."""
