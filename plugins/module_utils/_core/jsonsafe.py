# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Values made safe for JSON: text that came in with surrogate escapes (bytes that are not UTF-8,
in names read from files) shown as ``\\xNN`` instead of breaking the module's output.
"""

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
