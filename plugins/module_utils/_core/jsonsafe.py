# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TODO docstring (_subid)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
