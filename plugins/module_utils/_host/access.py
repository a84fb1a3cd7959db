# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Who a container process is, and whether a host identity can use a host path.

1. :func:`resolve_identity`: the uid, gid and supplementary groups a container process runs
   with, from its ``User`` setting (``""``, ``name``, ``uid``, ``uid:gid``, ``name:group``)
   resolved with the container's own /etc/passwd and /etc/group the way runc and crun do
   (libcontainer's ``GetExecUser``): a numeric user is always a uid; a user without a group
   gets the passwd entry's gid (0 when the uid has no entry) and the supplementary groups it
   is a member of in /etc/group; an explicit group replaces the gid and brings no
   supplementary groups; ``--group-add`` values are added in every case.
2. :func:`check_access`: the kernel's permission check (owner, POSIX ACL named users, the
   group class with its mask, other) for a mapped host identity (:class:`HostIdentity`), with
   the capabilities a container root has (CAP_DAC_OVERRIDE applies only to inodes whose owner
   and group are mapped into the container's namespace).

Mapping container ids to host ids is :mod:`._host.idmap`'s; doing it for a container is
``_engines.containers.host_identity``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.acl import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER,
    EXECUTE,
    READ,
    WRITE,
    AclEntry,
    AclError,
    perm_text,
    read_acl,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import IDENTITY, IdMap


class IdentityError(PermfixError, ValueError):
    """A container user cannot be resolved; the message names what is missing and where."""


# --------------------------------------------------------------------------------------------
# The user a container process runs as


@dataclass(frozen=True)
class UserSpec:
    """A ``--user`` value split into its user and group parts (either may be empty)."""

    user: str
    group: str

    @property
    def text(self) -> str:
        return f"{self.user}:{self.group}" if self.group else self.user


def parse_user_spec(text: str | None) -> UserSpec:
    """Split ``user[:group]``; white space around the parts is dropped, None is ``""``.

    Only the first ``:`` separates (libcontainer's parseLine), so ``a:b:c`` has group
    ``b:c``, which then fails to resolve like it does in the runtime.
    """
    value = (text or "").strip()
    user, _sep, group = value.partition(":")
    return UserSpec(user.strip(), group.strip())


def choose_user(container_user: str | None, image_user: str | None) -> tuple[str, str]:
    """The effective ``--user`` value and where it comes from (container, image or default)."""
    if container_user and container_user.strip():
        return container_user.strip(), "container"
    if image_user and image_user.strip():
        return image_user.strip(), "image"
    return "", "default"


@dataclass(frozen=True)
class ProcessIdentity:
    """The ids a container process runs with, inside the container."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    spec: str = ""
    name: str | None = None

    def describe(self) -> str:
        return f"{self.uid}:{self.gid}"


def _number(text: str) -> int | None:
    if text.isdigit():
        value = int(text)
        if value <= ID_MAX:
            return value
    return None


def resolve_identity(
    spec: str | None,
    accounts: AccountDatabase | None,
    group_add: Iterable[str] = (),
    *,
    where: str = "the container",
) -> ProcessIdentity:
    """Resolve a ``--user`` value like the OCI runtime does.

    ``accounts`` holds the container's /etc/passwd and /etc/group (None when they could
    not be read: then only numeric values resolve). ``group_add`` are ``--group-add``
    values (names or numbers; podman's ``keep-groups`` is ignored). Raises IdentityError
    with a sentence naming the missing user or group.
    """
    parsed = parse_user_spec(spec)
    accounts = accounts or AccountDatabase()
    uid_arg = _number(parsed.user) if parsed.user else 0
    if parsed.user and uid_arg is None and parsed.user.isdigit():
        raise IdentityError(f"user {parsed.user} of {where} is out of range (the highest id is {ID_MAX})")
    entry = None
    if uid_arg is not None:
        entry = accounts.user_by_uid(uid_arg)
    else:
        entry = accounts.user(parsed.user)
        if entry is None:
            raise IdentityError(
                f"user {parsed.user!r} of {where} is not in its /etc/passwd, so the container cannot start "
                f"as that user: use a numeric uid or add the user to the image"
            )
    if entry is not None:
        uid, gid, name = entry.uid, entry.gid, entry.name
    else:
        uid, gid, name = (uid_arg if uid_arg is not None else 0), 0, None
    groups: list[int] = []
    if parsed.group:
        gid_arg = _number(parsed.group)
        group_entry = accounts.group_by_gid(gid_arg) if gid_arg is not None else accounts.group(parsed.group)
        if group_entry is not None:
            gid = group_entry.gid
        elif gid_arg is not None:
            gid = gid_arg
        else:
            raise IdentityError(
                f"group {parsed.group!r} of {where} is not in its /etc/group, so the container cannot start "
                f"with it: use a numeric gid or add the group to the image"
            )
    elif name is not None:
        groups.extend(group.gid for group in accounts.groups if name in group.members)
    for value in group_add:
        text = str(value).strip()
        if not text or text == "keep-groups":
            continue
        number = _number(text)
        if number is None:
            group_entry = accounts.group(text)
            if group_entry is None:
                raise IdentityError(
                    f"additional group {text!r} of {where} is not in its /etc/group: use a numeric gid"
                )
            number = group_entry.gid
        groups.append(number)
    unique = tuple(dict.fromkeys(group for group in groups))
    return ProcessIdentity(uid, gid, unique, parsed.text, name)


# --------------------------------------------------------------------------------------------
# Access to a host path


@dataclass(frozen=True)
class PathFacts:
    """What the permission check needs to know about a host path (its ``stat``, its ACL)."""

    path: str
    uid: int
    gid: int
    mode: int
    acl: tuple[AclEntry, ...] | None = None

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def kind(self) -> str:
        return file_kind(self.mode)

    @property
    def mode_text(self) -> str:
        return f"{stat.S_IMODE(self.mode):04o}"

    def with_owner(self, uid: int, gid: int) -> PathFacts:
        """These facts after a ``chown uid:gid`` (the kernel keeps the ACL and the mode bits;
        chown only clears setuid/setgid, which do not matter here)."""
        return PathFacts(self.path, uid, gid, self.mode, self.acl)


def file_kind(mode: int) -> str:
    """``directory``, ``regular file``, ``socket``... for an ``st_mode``."""
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISREG, "regular file"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
    ):
        if test(mode):
            return name
    return "unknown"


def path_facts(path: str) -> PathFacts:
    """``stat`` (following symbolic links, as a bind mount does) and the ACL of ``path``.

    Raises OSError when the path cannot be examined.
    """
    st = os.stat(path)
    try:
        acl = read_acl(path, follow_symlinks=True)
    except AclError:
        acl = None
    return PathFacts(path, st.st_uid, st.st_gid, st.st_mode, acl)


def needed_access(is_dir: bool, read_only: bool) -> int:
    """What a mount needs: a directory is read and entered (and written when rw); a single
    file is read (and written when rw)."""
    want = READ | (EXECUTE if is_dir else 0)
    if not read_only:
        want |= WRITE
    return want


@dataclass(frozen=True)
class HostIdentity:
    """The host ids a container process acts with, and whether it has CAP_DAC_OVERRIDE.

    ``uid_map``/``gid_map`` are the container's namespace: a capability in it only applies
    to inodes whose owner and group it maps.
    """

    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    dac_override: bool = False
    uid_map: IdMap = IDENTITY
    gid_map: IdMap = IDENTITY

    def describe(self) -> str:
        return f"{self.uid}:{self.gid}"


@dataclass(frozen=True)
class AccessResult:
    """The outcome of one permission check."""

    granted: bool
    want: int
    perms: int  # what the identity effectively has through the class that applied
    via: str  # owner, acl user, group, acl group, other, capability

    @property
    def missing(self) -> int:
        return self.want & ~self.perms & 7 if not self.granted else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "granted": self.granted,
            "needed": perm_text(self.want),
            "has": perm_text(self.perms),
            "via": self.via,
        }


def _acl_lookup(acl: Sequence[AclEntry], tag: int) -> list[AclEntry]:
    return [entry for entry in acl if entry[0] == tag]


def check_access(facts: PathFacts, who: HostIdentity, want: int) -> AccessResult:
    """The kernel's ``generic_permission`` for ``who`` asking ``want`` (READ|WRITE|EXECUTE)."""
    want &= 7
    if who.dac_override and who.uid_map.maps_host(facts.uid) and who.gid_map.maps_host(facts.gid):
        # CAP_DAC_OVERRIDE: read and write anything; execute a directory, or a file with an x bit.
        allowed = READ | WRITE | (EXECUTE if facts.is_dir or facts.mode & 0o111 else 0)
        if want & allowed == want:
            return AccessResult(True, want, allowed, "capability")
    result = _dac_check(facts, who, want)
    return result


def _dac_check(facts: PathFacts, who: HostIdentity, want: int) -> AccessResult:
    mode = facts.mode
    if who.uid == facts.uid:
        perms = (mode >> 6) & 7
        return AccessResult(want & perms == want, want, perms, "owner")
    all_groups = {who.gid, *who.groups}
    acl = facts.acl
    if acl and any(entry[0] in (ACL_USER, ACL_GROUP, ACL_MASK) for entry in acl):
        mask_entries = _acl_lookup(acl, ACL_MASK)
        mask = mask_entries[0][2] if mask_entries else 7
        for _tag, ident, perm in _acl_lookup(acl, ACL_USER):
            if ident == who.uid:
                effective = perm & mask
                return AccessResult(want & effective == want, want, effective, "acl user")
        found = False
        best = 0
        for tag, ident, perm in acl:
            if tag == ACL_GROUP_OBJ:
                matches = facts.gid in all_groups
            elif tag == ACL_GROUP:
                matches = ident in all_groups
            else:
                continue
            if not matches:
                continue
            found = True
            effective = perm & mask
            if want & effective == want:
                return AccessResult(True, want, effective, "acl group")
            if bin(effective).count("1") > bin(best).count("1"):
                best = effective
        if found:
            return AccessResult(False, want, best, "acl group")
        other = [entry[2] for entry in acl if entry[0] == ACL_OTHER]
        perms = other[0] if other else mode & 7
        return AccessResult(want & perms == want, want, perms, "other")
    if facts.gid in all_groups:
        perms = (mode >> 3) & 7
        return AccessResult(want & perms == want, want, perms, "group")
    perms = mode & 7
    return AccessResult(want & perms == want, want, perms, "other")
