# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Checks of option values that name host files and directories.

ansible-core's ``type: path`` turns any value into a string (``{a: 1}`` becomes ``"{'a': 1}"``)
and accepts relative paths, empty strings and NUL bytes; a module that writes to such a path
would write into its working directory or fail with a traceback. Every option that names a
host file goes through :func:`host_path` (or :func:`host_paths` for a list) first.
"""

from __future__ import annotations

from typing import Any

from .errors import OptionError


def _text(value: Any, name: str, what: str, blank: bool = False) -> str:
    """``value`` as a non-empty string without a NUL byte (``blank``: not only white space either)."""
    if not isinstance(value, str):
        raise OptionError(f"{name} must be {what} given as a string, not {type(value).__name__} {value!r}")
    if (value.strip() if blank else value) == "":
        raise OptionError(f"{name} must be {what}, not an empty string")
    if "\x00" in value:
        raise OptionError(f"{name} must not contain a NUL byte: {value!r}")
    return value


def host_path(value: Any, name: str) -> str:
    """``value`` as an absolute host path, or :class:`OptionError` naming option ``name``."""
    _text(value, name, "an absolute path")
    if not value.startswith("/"):
        raise OptionError(f"{name} must be an absolute path (starting with /), not {value!r}")
    return value


def host_paths(values: Any, name: str) -> list[str]:
    """Each element of the list ``values`` as :func:`host_path` (named ``name[i]`` in errors)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise OptionError(f"{name} must be a list of absolute paths, not {type(values).__name__} {values!r}")
    return [host_path(value, f"{name}[{index}]") for index, value in enumerate(values)]


def plain_name(value: Any, name: str) -> str:
    """``value`` as a name handed to a program or an NSS lookup (a user, a container, a volume, an image):
    a non-empty string without a NUL byte, or :class:`OptionError` naming option ``name``."""
    return _text(value, name, "a name", blank=True)


def plain_names(values: Any, name: str) -> list[str]:
    """Each element of the list ``values`` as :func:`plain_name` (named ``name[i]`` in errors)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise OptionError(f"{name} must be a list of names, not {type(values).__name__} {values!r}")
    return [plain_name(value, f"{name}[{index}]") for index, value in enumerate(values)]
