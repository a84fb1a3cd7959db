# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Owner and group specifications: names or numbers, resolved on the target host.

``owner: app`` and ``owner: "1000"`` both become a uid; ``from_owner`` takes chown's
``--from`` syntax (``OWNER``, ``OWNER:GROUP``, ``:GROUP``). Every problem is an
:class:`OwnerSpecError` whose message tells the person what to give instead.
"""

from __future__ import annotations

import grp
import pwd
import re
from typing import Callable, Union

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX

IdValue = Union[str, int, None]

_NUMBER = re.compile(r"[+-]?[0-9]+")


class OwnerSpecError(PermfixError, ValueError):
    """An owner or group that cannot be used, with a message a person can act on."""


def _lookup_user(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def _lookup_group(name: str) -> int:
    return grp.getgrnam(name).gr_gid


def parse_id(
    value: IdValue,
    kind: str,
    lookup: Callable[[str], int] | None = None,
) -> int | None:
    """Return the numeric id for ``value`` (a name, a number or a numeric string), or None.

    ``kind`` is ``user`` or ``group``; it picks the database used for names (unless
    ``lookup`` is given, which unit tests use) and words the error messages.
    """
    if kind not in ("user", "group"):
        raise ValueError(f"kind must be user or group, not {kind!r}")
    if value is None:
        return None
    if isinstance(value, bool):
        raise OwnerSpecError(f"{kind} must be a name or a number, not {value!r}")
    if isinstance(value, int):
        number: int | None = value
    else:
        text = str(value).strip()
        if not text:
            return None
        if _NUMBER.fullmatch(text):
            number = int(text)
        else:
            number = None
    if number is not None:
        if number < 0 or number > ID_MAX:
            raise OwnerSpecError(
                f"{kind} id {number} is out of range: a {kind} id is a number from 0 to {ID_MAX}"
            )
        return number
    name = str(value).strip()
    if "\x00" in name:
        raise OwnerSpecError(f"{kind} {name!r} contains a NUL byte: give a {kind} name or a numeric {kind} id")
    if lookup is None:
        lookup = _lookup_user if kind == "user" else _lookup_group
    try:
        return lookup(name)
    except KeyError:
        database = "/etc/passwd" if kind == "user" else "/etc/group"
        raise OwnerSpecError(
            f"{kind} {name!r} does not exist on this host: give a {kind} name known to the host "
            f"({database}, LDAP, ...) or a numeric {kind} id"
        ) from None


def parse_from(
    spec: IdValue,
    user_lookup: Callable[[str], int] | None = None,
    group_lookup: Callable[[str], int] | None = None,
) -> tuple[int | None, int | None]:
    """Parse chown's ``--from`` syntax into ``(uid, gid)``; either may be None (any).

    Accepted: ``OWNER``, ``OWNER:GROUP``, ``:GROUP`` and ``OWNER:`` (owner only); owner and
    group are names or numbers.
    """
    if spec is None:
        return None, None
    if isinstance(spec, int) and not isinstance(spec, bool):
        return parse_id(spec, "user", user_lookup), None
    text = str(spec).strip()
    if not text:
        return None, None
    if text.count(":") > 1:
        raise OwnerSpecError(
            f"from_owner {text!r} is not OWNER, OWNER:GROUP or :GROUP (it has more than one ':')"
        )
    owner_text, _sep, group_text = text.partition(":")
    uid = parse_id(owner_text, "user", user_lookup) if owner_text else None
    gid = parse_id(group_text, "group", group_lookup) if group_text else None
    if uid is None and gid is None:
        raise OwnerSpecError(f"from_owner {text!r} names neither an owner nor a group")
    return uid, gid
