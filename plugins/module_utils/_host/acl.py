# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""POSIX ACLs and permission bits: the kernel's xattr format, read, planned and rendered.

The codec (:func:`parse_acl`, :func:`build_acl`) reads and writes ``system.posix_acl_access``
(version 2, little-endian entries sorted by tag and id); :func:`acl_grant` and :func:`plan_acl`
compute the smallest ACL change that gives named users and groups an access; ``perm_text``
and ``perm_words`` are the one table of permission texts for messages.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError

READ = 4
WRITE = 2
EXECUTE = 1
_PERM_TEXT = ("---", "--x", "-w-", "-wx", "r--", "r-x", "rw-", "rwx")


def perm_text(perm: int) -> str:
    """``rwx``-style text for the low three bits of ``perm``."""
    return _PERM_TEXT[perm & 7]


def perm_words(perm: int) -> str:
    """``read, write and enter`` for the bits of ``perm`` (for messages)."""
    words = [word for bit, word in ((READ, "read"), (WRITE, "write"), (EXECUTE, "enter")) if perm & bit]
    if not words:
        return "use"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def read_acl(path: str, follow_symlinks: bool = False) -> tuple[AclEntry, ...] | None:
    """The access ACL of ``path`` as entries, None when it has none (or the filesystem has no
    ACLs). Never follows a symbolic link unless asked. Raises AclError for a corrupt value."""
    try:
        data = os.getxattr(path, XATTR_ACCESS, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    if not data:
        return None
    return tuple(parse_acl(data))


# --------------------------------------------------------------------------------------------
# POSIX ACLs (the kernel's xattr format: version 2, little-endian entries sorted by tag, id)

ACL_USER_OBJ = 0x01
ACL_USER = 0x02
ACL_GROUP_OBJ = 0x04
ACL_GROUP = 0x08
ACL_MASK = 0x10
ACL_OTHER = 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
_ACL_VERSION = 2
_ACL_HEADER = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")
XATTR_ACCESS = "system.posix_acl_access"
XATTR_DEFAULT = "system.posix_acl_default"

AclEntry = tuple[int, int, int]  # (tag, id, perm)
_NAMED = (ACL_USER, ACL_GROUP)
_BASE = (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER)


class AclError(PermfixError, ValueError):
    """An ACL xattr that does not parse."""


def parse_acl(data: bytes) -> list[AclEntry]:
    """Decode a ``system.posix_acl_*`` xattr value into sorted ``(tag, id, perm)`` entries."""
    if len(data) < _ACL_HEADER.size or (len(data) - _ACL_HEADER.size) % _ACL_ENTRY.size:
        raise AclError(f"ACL xattr of {len(data)} bytes has a bad size")
    (version,) = _ACL_HEADER.unpack_from(data, 0)
    if version != _ACL_VERSION:
        raise AclError(f"ACL xattr version {version} is not {_ACL_VERSION}")
    entries = []
    for offset in range(_ACL_HEADER.size, len(data), _ACL_ENTRY.size):
        tag, perm, ident = _ACL_ENTRY.unpack_from(data, offset)
        if tag not in _NAMED:
            ident = ACL_UNDEFINED_ID
        entries.append((tag, ident, perm & 7))
    return sorted(entries)


def build_acl(entries: Iterable[AclEntry]) -> bytes:
    """Encode entries into the xattr value the kernel expects (sorted, versioned)."""
    out = [_ACL_HEADER.pack(_ACL_VERSION)]
    for tag, ident, perm in sorted(entries):
        out.append(_ACL_ENTRY.pack(tag, perm & 7, ident if tag in _NAMED else ACL_UNDEFINED_ID))
    return b"".join(out)


def acl_from_mode(mode: int) -> list[AclEntry]:
    """The minimal ACL equivalent to the permission bits of ``mode``."""
    return [
        (ACL_USER_OBJ, ACL_UNDEFINED_ID, (mode >> 6) & 7),
        (ACL_GROUP_OBJ, ACL_UNDEFINED_ID, (mode >> 3) & 7),
        (ACL_OTHER, ACL_UNDEFINED_ID, mode & 7),
    ]


def acl_grant(entries: Sequence[AclEntry], grants: Sequence[tuple[int, int]], perm: int) -> list[AclEntry]:
    """Return ``entries`` with each ``(tag, id)`` of ``grants`` given at least ``perm``.

    The mask is widened only by ``perm`` when one exists (least privilege); when the ACL
    had none, it becomes the union of the group class like ``setfacl -m`` computes it.
    """
    table: dict[tuple[int, int], int] = {(tag, ident): p for tag, ident, p in entries}
    for tag, ident in grants:
        table[(tag, ident)] = table.get((tag, ident), 0) | perm
    has_named = any(tag in _NAMED for tag, _ident in table)
    mask_key = (ACL_MASK, ACL_UNDEFINED_ID)
    if mask_key in table:
        table[mask_key] |= perm
    elif has_named:
        union = 0
        for (tag, _ident), p in table.items():
            if tag in _NAMED or tag == ACL_GROUP_OBJ:
                union |= p
        table[mask_key] = union
    return sorted((tag, ident, p) for (tag, ident), p in table.items())


_TAG_TEXT = {
    ACL_USER_OBJ: "user",
    ACL_USER: "user",
    ACL_GROUP_OBJ: "group",
    ACL_GROUP: "group",
    ACL_MASK: "mask",
    ACL_OTHER: "other",
}


def acl_text(entries: Iterable[AclEntry], prefix: str = "") -> str:
    """getfacl-like short text: ``user::rwx,user:1000:rwx,group::r-x,mask::rwx,other::r-x``."""
    parts = []
    for tag, ident, perm in sorted(entries):
        qualifier = str(ident) if tag in _NAMED else ""
        parts.append(f"{prefix}{_TAG_TEXT.get(tag, hex(tag))}:{qualifier}:{_PERM_TEXT[perm & 7]}")
    return ",".join(parts)


@dataclass
class AclPlan:
    """What the acl strategy would write for one entry (None: that ACL is already right)."""

    access: bytes | None
    default: bytes | None
    before: str
    after: str

    @property
    def needed(self) -> bool:
        return self.access is not None or self.default is not None


def _acl_focus(entries: Sequence[AclEntry], grants: Sequence[tuple[int, int]], prefix: str) -> str:
    table = {(tag, ident): perm for tag, ident, perm in entries}
    shown = [(tag, ident, table.get((tag, ident), 0)) for tag, ident in grants]
    mask = table.get((ACL_MASK, ACL_UNDEFINED_ID))
    if mask is not None:
        shown.append((ACL_MASK, ACL_UNDEFINED_ID, mask))
    return acl_text(shown, prefix)


def plan_acl(
    access: bytes | None,
    default: bytes | None,
    mode: int,
    grants: Sequence[tuple[int, int]],
) -> AclPlan:
    """Plan the ACL change that grants ``grants`` rwX (and a default rwx on directories).

    ``access``/``default`` are the current xattr values (None when absent); ``mode`` is the
    entry's st_mode. Regular files get ``rw`` plus ``x`` when some execute bit is set.
    """
    is_dir = stat.S_ISDIR(mode)
    current = parse_acl(access) if access else acl_from_mode(mode)
    perm = 7 if is_dir or mode & 0o111 else 6
    wanted = acl_grant(current, grants, perm)
    new_access = build_acl(wanted) if wanted != current else None
    before = [_acl_focus(current, grants, "")]
    after = [_acl_focus(wanted, grants, "")]
    new_default = None
    if is_dir:
        current_default = parse_acl(default) if default else []
        base = current_default or [entry for entry in current if entry[0] in _BASE]
        wanted_default = acl_grant(base, grants, 7)
        if wanted_default != current_default:
            new_default = build_acl(wanted_default)
        before.append(_acl_focus(current_default, grants, "default:"))
        after.append(_acl_focus(wanted_default, grants, "default:"))
    return AclPlan(new_access, new_default, ",".join(before), ",".join(after))
