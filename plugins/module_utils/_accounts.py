# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Accounts from text: passwd, group and login.defs, parsed without touching NSS.

Everything here works on text so the same code reads the host's files and the /etc/passwd and
/etc/group of a container image (copied out as text). ``AccountDatabase.from_files`` adds the
file reading and, for the host's own files, an optional fallback to the NSS databases (LDAP and
SSSD users are not in /etc/passwd).
"""

from __future__ import annotations

import grp
import pwd
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

DEFAULT_PASSWD = "/etc/passwd"
DEFAULT_GROUP = "/etc/group"
DEFAULT_LOGIN_DEFS = "/etc/login.defs"

# Numbers as C's strtol/strtoul read them with base 0 (what shadow-utils uses for login.defs).
_C_NUMBER = re.compile(r"^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$")


class AccountsError(Exception):
    """An account file could not be read."""


@dataclass(frozen=True)
class PasswdEntry:
    """One line of a passwd file."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str
    line: int


@dataclass(frozen=True)
class GroupEntry:
    """One line of a group file."""

    name: str
    gid: int
    members: tuple[str, ...]
    line: int


def split_lines(text: str) -> list[str]:
    """Split on ``\\n`` only (never on other characters ``str.splitlines`` treats as breaks).

    A final empty piece (the file ends with a newline) is dropped; carriage returns stay.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_c_number(text: str) -> Optional[int]:
    """Read ``text`` as C's strtol with base 0 does (0x hex, leading-0 octal, decimal).

    Leading white space and a sign are accepted; anything after the digits is not.
    Returns None when the whole text is not one number.
    """
    match = _C_NUMBER.match(text)
    if match is None:
        return None
    sign, digits = match.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    return -value if sign == "-" else value


def _skip(line: str) -> bool:
    stripped = line.strip()
    # Comments, blank lines and NIS compat entries (+user, -user, +@netgroup) are not accounts.
    return not stripped or stripped.startswith("#") or stripped[0] in "+-"


def _id(text: str) -> Optional[int]:
    return int(text) if text.isdigit() else None


def parse_passwd(text: str) -> list[PasswdEntry]:
    """The well-formed entries of a passwd file (7 fields, numeric uid and gid), in order."""
    entries = []
    for number, line in enumerate(split_lines(text), start=1):
        line = line.rstrip("\r")
        if _skip(line):
            continue
        fields = line.split(":")
        if len(fields) != 7 or not fields[0]:
            continue
        uid, gid = _id(fields[2]), _id(fields[3])
        if uid is None or gid is None:
            continue
        entries.append(PasswdEntry(fields[0], uid, gid, fields[4], fields[5], fields[6], number))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """The well-formed entries of a group file (4 fields, numeric gid), in order."""
    entries = []
    for number, line in enumerate(split_lines(text), start=1):
        line = line.rstrip("\r")
        if _skip(line):
            continue
        fields = line.split(":")
        if len(fields) != 4 or not fields[0]:
            continue
        gid = _id(fields[2])
        if gid is None:
            continue
        members = tuple(member for member in fields[3].split(",") if member)
        entries.append(GroupEntry(fields[0], gid, members, number))
    return entries


def parse_login_defs(text: str) -> dict[str, str]:
    """``NAME value`` pairs of a login.defs file (comments and blank lines skipped; last wins)."""
    values: dict[str, str] = {}
    for line in split_lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(None, 1)
        value = parts[1].strip() if len(parts) > 1 else ""
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values[parts[0]] = value
    return values


def login_defs_int(values: Mapping[str, str], name: str, default: int) -> int:
    """An integer setting of login.defs, ``default`` when it is absent or not a number."""
    raw = values.get(name)
    if raw is None:
        return default
    number = parse_c_number(raw)
    return default if number is None else number


def read_text(path: str) -> str:
    """A file's text; bytes that are not UTF-8 survive a round trip (surrogateescape)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise AccountsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return data.decode("utf-8", "surrogateescape")


class AccountDatabase:
    """Users and groups from passwd and group text, looked up by name or id.

    With ``nss_fallback`` a name or id that the text does not know is looked up in the
    system's NSS databases (use it only when the text is the host's own /etc files).
    """

    def __init__(
        self,
        users: Iterable[PasswdEntry] = (),
        groups: Iterable[GroupEntry] = (),
        *,
        nss_fallback: bool = False,
    ) -> None:
        self.users: list[PasswdEntry] = list(users)
        self.groups: list[GroupEntry] = list(groups)
        self.nss_fallback = nss_fallback
        self._by_name: dict[str, PasswdEntry] = {}
        self._by_uid: dict[int, PasswdEntry] = {}
        for user in self.users:
            self._by_name.setdefault(user.name, user)
            self._by_uid.setdefault(user.uid, user)
        self._group_by_name: dict[str, GroupEntry] = {}
        self._group_by_gid: dict[int, GroupEntry] = {}
        for group in self.groups:
            self._group_by_name.setdefault(group.name, group)
            self._group_by_gid.setdefault(group.gid, group)

    @classmethod
    def from_text(cls, passwd_text: str, group_text: str = "", *, nss_fallback: bool = False) -> AccountDatabase:
        return cls(parse_passwd(passwd_text), parse_group(group_text), nss_fallback=nss_fallback)

    @classmethod
    def from_files(
        cls,
        passwd_path: str = DEFAULT_PASSWD,
        group_path: str = DEFAULT_GROUP,
        *,
        nss_fallback: Optional[bool] = None,
    ) -> AccountDatabase:
        """Read both files; ``nss_fallback`` defaults to True when both are the host's own."""
        if nss_fallback is None:
            nss_fallback = passwd_path == DEFAULT_PASSWD and group_path == DEFAULT_GROUP
        return cls.from_text(read_text(passwd_path), read_text(group_path), nss_fallback=nss_fallback)

    def user(self, name: str) -> Optional[PasswdEntry]:
        """The user called ``name``."""
        entry = self._by_name.get(name)
        if entry is None and self.nss_fallback:
            try:
                entry = _from_pwd(pwd.getpwnam(name))
            except (KeyError, UnicodeError):
                entry = None
        return entry

    def user_by_uid(self, uid: int) -> Optional[PasswdEntry]:
        """The first user with ``uid``."""
        entry = self._by_uid.get(uid)
        if entry is None and self.nss_fallback:
            try:
                entry = _from_pwd(pwd.getpwuid(uid))
            except (KeyError, OverflowError):
                entry = None
        return entry

    def resolve_user(self, name_or_uid: str) -> Optional[PasswdEntry]:
        """A user by name, else (for a number) by uid, as shadow-utils and podman resolve one."""
        entry = self.user(name_or_uid)
        if entry is None and name_or_uid.isdigit():
            entry = self.user_by_uid(int(name_or_uid))
        return entry

    def group(self, name: str) -> Optional[GroupEntry]:
        """The group called ``name``."""
        entry = self._group_by_name.get(name)
        if entry is None and self.nss_fallback:
            try:
                entry = _from_grp(grp.getgrnam(name))
            except (KeyError, UnicodeError):
                entry = None
        return entry

    def group_by_gid(self, gid: int) -> Optional[GroupEntry]:
        """The first group with ``gid``."""
        entry = self._group_by_gid.get(gid)
        if entry is None and self.nss_fallback:
            try:
                entry = _from_grp(grp.getgrgid(gid))
            except (KeyError, OverflowError):
                entry = None
        return entry

    def uids(self) -> list[int]:
        """Every uid of the text's users, sorted, without repeats."""
        return sorted({user.uid for user in self.users})

    def gids(self) -> list[int]:
        """Every gid of the text's groups and users' primary groups, sorted, without repeats."""
        return sorted({group.gid for group in self.groups} | {user.gid for user in self.users})

    def names_by_uid(self) -> dict[int, list[str]]:
        """The user names of each uid in the text."""
        names: dict[int, list[str]] = {}
        for user in self.users:
            names.setdefault(user.uid, []).append(user.name)
        return names

    def names_by_gid(self) -> dict[int, list[str]]:
        """The group names of each gid in the text (a user's primary gid without a group entry
        is named after the user, in parentheses)."""
        names: dict[int, list[str]] = {}
        for group in self.groups:
            names.setdefault(group.gid, []).append(group.name)
        for user in self.users:
            if user.gid not in names:
                names[user.gid] = [f"(primary group of {user.name})"]
        return names

    def resolve_user_spec(self, spec: str) -> tuple[int, int]:
        """The uid and gid a container process gets from a ``--user`` value.

        ``spec`` is ``user``, ``uid``, ``user:group`` or ``uid:gid`` (names or numbers on
        either side). A user without a group runs with the user's primary gid, or gid 0 when
        the user is a number the passwd text does not know (what Docker and podman do).
        Raises KeyError when a name is unknown.
        """
        user_part, dummy, group_part = spec.partition(":")
        if not user_part:
            raise KeyError(f"no user in {spec!r}")
        entry = self.user(user_part)
        if entry is not None:
            uid, gid = entry.uid, entry.gid
        elif user_part.isdigit():
            uid = int(user_part)
            by_uid = self.user_by_uid(uid)
            gid = by_uid.gid if by_uid is not None else 0
        else:
            raise KeyError(f"unknown user {user_part!r}")
        if group_part:
            group = self.group(group_part)
            if group is not None:
                gid = group.gid
            elif group_part.isdigit():
                gid = int(group_part)
            else:
                raise KeyError(f"unknown group {group_part!r}")
        return uid, gid


def _from_pwd(entry: pwd.struct_passwd) -> PasswdEntry:
    return PasswdEntry(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_gecos, entry.pw_dir, entry.pw_shell, 0)


def _from_grp(entry: grp.struct_group) -> GroupEntry:
    return GroupEntry(entry.gr_name, entry.gr_gid, tuple(entry.gr_mem), 0)


def ids_within(sorted_ids: Sequence[int], start: int, end: int) -> list[int]:
    """The ids of ``sorted_ids`` with ``start <= id < end`` (binary search, no full scan)."""
    low = bisect_left(sorted_ids, start)
    high = bisect_left(sorted_ids, end)
    return list(sorted_ids[low:high])
