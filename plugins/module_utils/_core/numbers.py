# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Numbers as C and the kernel read them, and the limits of ids.

One parser for C's base-0 integers (``0x`` hex, leading-``0`` octal, decimal, after optional
white space and a sign), read the way the two consumers need: :func:`parse_c_number` like
``strtol`` (login.defs, through shadow-utils' getlong) and :func:`strtoul` like shadow-utils'
``getulong`` (the fields of /etc/subuid and /etc/subgid, where ``-1`` wraps around).
"""

from __future__ import annotations

import re

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import OptionError

# uid_t and gid_t are 32 bits and (uid_t)-1 is "no id" (chown(2): "leave unchanged"), so the
# highest id is ID_MAX and ID_LIMIT = ID_MAX + 1 is the number of ids (the length of the
# identity map).
ID_MAX = 4294967294
ID_LIMIT = ID_MAX + 1
ULONG_MAX = 2**64 - 1

_C_NUMBER = re.compile(r"^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")


def _c_number(text: str) -> tuple[str, int] | None:
    """The sign and the magnitude of a C base-0 integer, None when ``text`` is not one."""
    match = _C_NUMBER.match(text)
    if match is None:
        return None
    sign, digits = match.groups()
    if digits[:2] in ("0x", "0X"):
        return sign, int(digits[2:], 16)
    if len(digits) > 1 and digits[0] == "0":
        return sign, int(digits[1:], 8)
    return sign, int(digits)


def parse_c_number(text: str) -> int | None:
    """Read ``text`` as C's strtol with base 0 does (0x hex, leading-0 octal, decimal).

    Leading white space and a sign are accepted; anything after the digits is not.
    Returns None when the whole text is not one number.
    """
    parsed = _c_number(text)
    if parsed is None:
        return None
    sign, value = parsed
    return -value if sign == "-" else value


def strtoul(text: str) -> int | None:
    """``text`` read as shadow-utils' getulong() reads it (strtoul, base 0); None when it rejects it."""
    parsed = _c_number(text)
    if parsed is None:
        return None
    sign, value = parsed
    if value > ULONG_MAX:
        return None
    if sign == "-":
        value = (ULONG_MAX + 1 - value) % (ULONG_MAX + 1)
    return value


def sample_size(value: int) -> int:
    """A ``sample_size`` option (how many examples a result lists), checked: 0 or more."""
    if value < 0:
        raise OptionError(f"sample_size must be 0 or more, not {value}")
    return value


# The longest wait an option may ask for: a week. Longer values overflow the C time types that
# sockets and subprocess timeouts use ("timestamp out of range for platform time_t").
SECONDS_MAX = 7 * 24 * 3600


def seconds(value: int, name: str) -> int:
    """A timeout option ``name`` in seconds, checked: from 1 to :data:`SECONDS_MAX`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise OptionError(f"{name} must be a positive number of seconds")
    if value > SECONDS_MAX:
        raise OptionError(f"{name} must be at most {SECONDS_MAX} seconds (a week), not {value}")
    return value
