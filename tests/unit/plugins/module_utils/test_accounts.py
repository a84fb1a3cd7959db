# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""passwd, group and login.defs parsing from text."""

from __future__ import annotations

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import parse_c_number
from ansible_collections.permfix.containers.plugins.module_utils._host.access import IdentityError, resolve_identity
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import (
    AccountDatabase,
    AccountsError,
    ids_within,
    login_defs_int,
    parse_group,
    parse_login_defs,
    parse_passwd,
    read_text,
    split_lines,
)

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "# a comment\n"
    "\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "+nisuser\n"
    "broken:x:notanumber:1::/:/bin/sh\n"
    "short:x:5\n"
    "app:x:1001:1001:App,,,:/home/app:/bin/bash\r\n"
    "alias:x:1001:1001::/home/alias:/bin/sh\n"
    "nogroup:x:2000:2000::/home/nogroup:/bin/sh"
)
GROUP = "root:x:0:\napp:x:1001:alias,other\nbad:x:x:\nstaff:x:50:\n"


def test_passwd_keeps_only_well_formed_entries_in_order() -> None:
    entries = parse_passwd(PASSWD)
    assert [(e.name, e.uid, e.gid, e.line) for e in entries] == [
        ("root", 0, 0, 1),
        ("daemon", 1, 1, 4),
        ("app", 1001, 1001, 8),
        ("alias", 1001, 1001, 9),
        ("nogroup", 2000, 2000, 10),
    ]
    assert entries[2].shell == "/bin/bash"  # the carriage return is not part of the shell
    assert entries[2].home == "/home/app"
    assert entries[2].gecos == "App,,,"


def test_group_members_and_malformed_lines() -> None:
    groups = parse_group(GROUP)
    assert [(g.name, g.gid, g.members) for g in groups] == [
        ("root", 0, ()),
        ("app", 1001, ("alias", "other")),
        ("staff", 50, ()),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", 10),
        ("010", 8),
        ("0x1F", 31),
        ("  42", 42),
        ("-3", -3),
        ("+7", 7),
        ("0", 0),
        ("08", None),
        ("42 ", None),
        ("", None),
        ("0x", None),
        ("ten", None),
    ],
)
def test_c_numbers(text: str, expected) -> None:
    assert parse_c_number(text) == expected


def test_login_defs_values_and_defaults() -> None:
    values = parse_login_defs(
        "# SUB_UID_MIN 1\nSUB_UID_MIN\t\t   200000\nSUB_UID_COUNT 0x10000\nUMASK 022\n"
        'ENCRYPT_METHOD "SHA512"\nEMPTY\nSUB_UID_MIN 300000\n'
    )
    assert values["SUB_UID_MIN"] == "300000"  # the last one wins
    assert login_defs_int(values, "SUB_UID_MIN", 1) == 300000
    assert login_defs_int(values, "SUB_UID_COUNT", 1) == 65536
    assert login_defs_int(values, "UMASK", 0) == 0o22
    assert login_defs_int(values, "SUB_GID_MAX", 600100000) == 600100000
    assert login_defs_int(values, "ENCRYPT_METHOD", 5) == 5
    assert values["ENCRYPT_METHOD"] == "SHA512"
    assert values["EMPTY"] == ""


def test_split_lines_splits_on_newline_only() -> None:
    assert split_lines("a\rb\x0bc\u2028d\ne\n") == ["a\rb\x0bc\u2028d", "e"]
    assert split_lines("") == []
    assert split_lines("x") == ["x"]


def test_lookups_by_name_uid_and_numbers() -> None:
    db = AccountDatabase.from_text(PASSWD, GROUP)
    assert db.user("app").uid == 1001
    assert db.user_by_uid(1001).name == "app"  # the first of two names
    assert db.resolve_user("1001").name == "app"
    assert db.resolve_user("nosuch") is None
    assert db.resolve_user("4242") is None
    assert db.group("staff").gid == 50
    assert db.group_by_gid(1001).name == "app"
    assert db.uids() == [0, 1, 1001, 2000]
    assert db.gids() == [0, 1, 50, 1001, 2000]
    assert db.names_by_uid()[1001] == ["app", "alias"]
    assert db.names_by_gid()[2000] == ["(primary group of nogroup)"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("app", (1001, 1001)),
        ("1001", (1001, 1001)),
        ("5000", (5000, 0)),
        ("app:staff", (1001, 50)),
        ("app:77", (1001, 77)),
        ("5000:5000", (5000, 5000)),
        ("root:app", (0, 1001)),
    ],
)
def test_container_user_specs(spec: str, expected) -> None:
    identity = resolve_identity(spec, AccountDatabase.from_text(PASSWD, GROUP))
    assert (identity.uid, identity.gid) == expected


@pytest.mark.parametrize("spec", ["nosuch", "app:nosuch"])
def test_unknown_names_in_user_specs(spec: str) -> None:
    with pytest.raises(IdentityError):
        resolve_identity(spec, AccountDatabase.from_text(PASSWD, GROUP))


def test_ids_within_is_half_open() -> None:
    assert ids_within([1, 5, 10, 15], 5, 15) == [5, 10]
    assert ids_within([], 0, 100) == []


def test_unreadable_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(AccountsError, match="cannot read .*nosuch"):
        read_text(str(tmp_path / "nosuch"))


def test_non_utf8_bytes_survive(tmp_path) -> None:
    path = tmp_path / "passwd"
    path.write_bytes(b"caf\xe9:x:1:1::/:/bin/sh\n")
    text = read_text(str(path))
    assert text.encode("utf-8", "surrogateescape") == path.read_bytes()
    assert parse_passwd(text)[0].uid == 1


def test_nss_fallback_finds_root_when_the_text_does_not() -> None:
    assert AccountDatabase.from_text("", "").user("root") is None
    assert AccountDatabase.from_text("", "", nss_fallback=True).user("root").uid == 0
    assert AccountDatabase.from_text("", "", nss_fallback=True).user_by_uid(0).name == "root"
    assert AccountDatabase.from_text("", "", nss_fallback=True).group_by_gid(0).name == "root"
