# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Values for JSON: records as plain dicts (:func:`pick`), and text made valid UTF-8.

Text that came in with surrogate escapes (bytes that are not UTF-8, in names read from files) is
shown as ``\\xNN`` instead of breaking the module's output.
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


def pick(record: Any, *names: str, **renamed: str) -> dict[str, Any]:
    """The attributes ``names`` of ``record`` as a dict (a list or dict value copied), then each
    ``key=attribute`` of ``renamed``: what a record's ``as_dict`` returns to the module."""
    values = {name: getattr(record, name) for name in names}
    values.update({key: getattr(record, attribute) for key, attribute in renamed.items()})
    return {key: list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
            for key, value in values.items()}
