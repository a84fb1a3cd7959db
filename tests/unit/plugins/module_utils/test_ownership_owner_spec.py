# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of owner and group parsing (names, numbers, chown --from syntax)."""

from __future__ import annotations

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX
from ansible_collections.permfix.containers.plugins.module_utils._host.owner_spec import (
    OwnerSpecError,
    parse_from,
    parse_id,
)

USERS = {"app": 1000, "www-data": 33, "root": 0}
GROUPS = {"app": 1000, "staff": 50}


def users(name: str) -> int:
    return USERS[name]


def groups(name: str) -> int:
    return GROUPS[name]


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (None, "user", None),
        ("", "user", None),
        ("  ", "group", None),
        ("1000", "user", 1000),
        (" 1000 ", "user", 1000),
        ("+7", "user", 7),
        (0, "user", 0),
        ("0", "group", 0),
        (ID_MAX, "user", ID_MAX),
        (str(ID_MAX), "group", ID_MAX),
        ("app", "user", 1000),
        ("www-data", "user", 33),
        ("staff", "group", 50),
        ("007", "user", 7),
    ],
)
def test_parse_id(value, kind: str, expected: int | None) -> None:
    assert parse_id(value, kind, users if kind == "user" else groups) == expected


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("nosuch", "user", "user 'nosuch' does not exist on this host"),
        ("nosuch", "group", "group 'nosuch' does not exist on this host"),
        ("-1", "user", "user id -1 is out of range"),
        (-5, "group", "group id -5 is out of range"),
        (str(ID_MAX + 1), "user", "user id 4294967295 is out of range"),
        ("99999999999", "user", "out of range: a user id is a number from 0 to 4294967294"),
        (True, "user", "must be a name or a number"),
    ],
)
def test_parse_id_errors(value, kind: str, message: str) -> None:
    with pytest.raises(OwnerSpecError, match=message.replace("(", r"\(")):
        parse_id(value, kind, users if kind == "user" else groups)


def test_parse_id_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError):
        parse_id("1", "other")


def test_parse_id_uses_the_host_database_by_default() -> None:
    assert parse_id("root", "user") == 0
    assert parse_id("root", "group") == 0


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, (None, None)),
        ("", (None, None)),
        ("999", (999, None)),
        (999, (999, None)),
        ("999:998", (999, 998)),
        (":998", (None, 998)),
        ("999:", (999, None)),
        ("app:staff", (1000, 50)),
        ("root:app", (0, 1000)),
    ],
)
def test_parse_from(spec, expected: tuple) -> None:
    assert parse_from(spec, users, groups) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (":", "names neither an owner nor a group"),
        ("1:2:3", "more than one ':'"),
        ("nosuch:1", "user 'nosuch' does not exist"),
        ("1:nosuch", "group 'nosuch' does not exist"),
        ("1:-2", "group id -2 is out of range"),
    ],
)
def test_parse_from_errors(spec: str, message: str) -> None:
    with pytest.raises(OwnerSpecError, match=message):
        parse_from(spec, users, groups)
