# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Accounts from text: passwd, group and login.defs, parsed without touching NSS, and the one user model.

:class:`Account` is every user the collection deals with: a passwd line, an NSS entry, a
rootless podman user.

Everything here works on text so the same code reads the host's files and the /etc/passwd and
/etc/group of a container image (copied out as text). ``AccountDatabase.from_files`` adds the
file reading and, for the host's own files, an optional fallback to the NSS databases (LDAP and
SSSD users are not in /etc/passwd).
"""

from __future__ import annotations

import grp
import pwd
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import parse_c_number

DEFAULT_PASSWD = "/etc/passwd"
DEFAULT_GROUP = "/etc/group"
DEFAULT_LOGIN_DEFS = "/etc/login.defs"


_T = TypeVar("_T")


class AccountsError(PermfixError):
    """An account file could not be read."""


@dataclass(frozen=True)
class Account:
    """A user: one line of a passwd file, an NSS entry, or an account podman runs as.

    Two accounts are equal when name, uid, gid and home are; ``gecos``, ``shell`` and the
    passwd ``line`` (0 when the entry did not come from a file) are carried along.
    """

    name: str
    uid: int
    gid: int
    home: str
    gecos: str = field(default="", compare=False)
    shell: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)

    @classmethod
    def from_pwd(cls, entry: pwd.struct_passwd) -> Account:
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_gecos, entry.pw_shell)

    @classmethod
    def lookup(cls, name_or_uid: str) -> Account:
        """Find an account by name or numeric uid in the NSS databases; KeyError when there is none."""
        if name_or_uid.isdigit():
            return cls.from_pwd(pwd.getpwuid(int(name_or_uid)))
        return cls.from_pwd(pwd.getpwnam(name_or_uid))


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


def _skip(line: str) -> bool:
    stripped = line.strip()
    # Comments, blank lines and NIS compat entries (+user, -user, +@netgroup) are not accounts.
    return not stripped or stripped.startswith("#") or stripped[0] in "+-"


def _id(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _records(text: str, count: int) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of every line with ``count`` fields and a name (comments, blank
    lines and NIS compat entries skipped; a DOS line ending ignored)."""
    for number, line in enumerate(split_lines(text), start=1):
        line = line.rstrip("\r")
        if _skip(line):
            continue
        fields = line.split(":")
        if len(fields) == count and fields[0]:
            yield number, fields


def parse_passwd(text: str) -> list[Account]:
    """The well-formed entries of a passwd file (7 fields, numeric uid and gid), in order."""
    entries = []
    for number, fields in _records(text, 7):
        uid, gid = _id(fields[2]), _id(fields[3])
        if uid is not None and gid is not None:
            entries.append(Account(fields[0], uid, gid, fields[5], fields[4], fields[6], number))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """The well-formed entries of a group file (4 fields, numeric gid), in order."""
    entries = []
    for number, fields in _records(text, 4):
        gid = _id(fields[2])
        if gid is not None:
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
        users: Iterable[Account] = (),
        groups: Iterable[GroupEntry] = (),
        *,
        nss_fallback: bool = False,
    ) -> None:
        self.users: list[Account] = list(users)
        self.groups: list[GroupEntry] = list(groups)
        self.nss_fallback = nss_fallback
        self._by_name: dict[str, Account] = {}
        self._by_uid: dict[int, Account] = {}
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
        nss_fallback: bool | None = None,
    ) -> AccountDatabase:
        """Read both files; ``nss_fallback`` defaults to True when both are the host's own."""
        if nss_fallback is None:
            nss_fallback = passwd_path == DEFAULT_PASSWD and group_path == DEFAULT_GROUP
        return cls.from_text(read_text(passwd_path), read_text(group_path), nss_fallback=nss_fallback)

    def _nss(self, found: _T | None, lookup: Callable[[], _T]) -> _T | None:
        """``found``, else (with ``nss_fallback``) what the NSS lookup answers, None when it knows nothing."""
        if found is not None or not self.nss_fallback:
            return found
        try:
            return lookup()
        except (KeyError, UnicodeError, OverflowError, ValueError):  # ValueError: a NUL byte in the name
            return None

    def user(self, name: str) -> Account | None:
        """The user called ``name``."""
        return self._nss(self._by_name.get(name), lambda: Account.from_pwd(pwd.getpwnam(name)))

    def user_by_uid(self, uid: int) -> Account | None:
        """The first user with ``uid``."""
        return self._nss(self._by_uid.get(uid), lambda: Account.from_pwd(pwd.getpwuid(uid)))

    def resolve_user(self, name_or_uid: str) -> Account | None:
        """A user by name, else (for a number) by uid, as shadow-utils and podman resolve one."""
        entry = self.user(name_or_uid)
        if entry is None and name_or_uid.isdigit():
            entry = self.user_by_uid(int(name_or_uid))
        return entry

    def group(self, name: str) -> GroupEntry | None:
        """The group called ``name``."""
        return self._nss(self._group_by_name.get(name), lambda: _from_grp(grp.getgrnam(name)))

    def group_by_gid(self, gid: int) -> GroupEntry | None:
        """The first group with ``gid``."""
        return self._nss(self._group_by_gid.get(gid), lambda: _from_grp(grp.getgrgid(gid)))

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


def _from_grp(entry: grp.struct_group) -> GroupEntry:
    return GroupEntry(entry.gr_name, entry.gr_gid, tuple(entry.gr_mem), 0)


def ids_within(sorted_ids: Sequence[int], start: int, end: int) -> list[int]:
    """The ids of ``sorted_ids`` with ``start <= id < end`` (binary search, no full scan)."""
    low = bisect_left(sorted_ids, start)
    high = bisect_left(sorted_ids, end)
    return list(sorted_ids[low:high])
