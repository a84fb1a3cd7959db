# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subordinate ID files: parser, overlaps, allocator, plans and rewrites (pure logic)."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._classes.subid_fix import (
    apply_range_changes,
    plan_user,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import strtoul
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import (
    BLANK,
    COMMENT,
    ENTRY,
    MALFORMED,
    SUBGID,
    SUBUID,
    IdBounds,
    SubidError,
    SubidFile,
    SubRange,
    bounds_from_login_defs,
    capabilities_from_xattr,
    find_overlaps,
    first_free,
    is_free,
    merge_intervals,
    nss_source,
    parse_getsubids,
    parse_subid,
    parse_subid_line,
    render,
    union_size,
)

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "app:x:1001:1001::/home/app:/bin/bash\n"
    "bob:x:1002:1002::/home/bob:/bin/bash\n"
    "high:x:250000:250000::/home/high:/bin/bash\n"
)
GROUP = "root:x:0:\napp:x:1001:\nbob:x:1002:\nhighgrp:x:270000:\n"
BOUNDS = {kind: IdBounds(100000, 600100000, 65536) for kind in (SUBUID, SUBGID)}


def accounts() -> AccountDatabase:
    return AccountDatabase.from_text(PASSWD, GROUP)


def subid_file(kind: str, text: str) -> SubidFile:
    return SubidFile(kind, f"/etc/{kind}", True, parse_subid(text))


# --- parser --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "owner", "rng", "problem"),
    [
        ("app:100000:65536", ENTRY, "app", SubRange(100000, 65536), None),
        ("1001:100000:65536", ENTRY, "1001", SubRange(100000, 65536), None),
        ("app:0:1", ENTRY, "app", SubRange(0, 1), None),
        ("# app:100000:65536", COMMENT, None, None, None),
        ("   # indented comment", COMMENT, None, None, None),
        ("", BLANK, None, None, None),
        ("  \t ", BLANK, None, None, None),
        ("app:100000:65536\r", MALFORMED, "app", SubRange(100000, 65536), "carriage return"),
        ("app:100000", MALFORMED, "app", None, "expected USER:START:COUNT"),
        ("app", MALFORMED, "app", None, "expected USER:START:COUNT"),
        ("app::65536", MALFORMED, "app", None, "a field is empty"),
        (":100000:65536", MALFORMED, None, SubRange(100000, 65536), "a field is empty"),
        ("app:abc:65536", MALFORMED, "app", None, "the start 'abc' is not a number"),
        ("app:100000:lots", MALFORMED, "app", None, "the count 'lots' is not a number"),
        ("app:100000 :65536", MALFORMED, "app", SubRange(100000, 65536), "the start '100000 ' is not a number"),
        ("app:08:1", MALFORMED, "app", SubRange(8, 1), "the start '08' is not a number"),
        ("app:1:99999999999999999999999", MALFORMED, "app", SubRange(1, 99999999999999999999999), "not a number"),
        ("app: 100000:65536", ENTRY, "app", SubRange(100000, 65536), "is read as 100000"),
        ("app:100000:010", ENTRY, "app", SubRange(100000, 8), "is read as 8"),
        ("app:0x186a0:65536", ENTRY, "app", SubRange(100000, 65536), "is read as 100000"),
        ("app:100000:+5", ENTRY, "app", SubRange(100000, 5), "is read as 5"),
        ("app:100000:0", ENTRY, "app", SubRange(100000, 0), "empty"),
        ("app:100000:65536:extra", ENTRY, "app", SubRange(100000, 65536), "after the count"),
        (" app:100000:65536", ENTRY, " app", SubRange(100000, 65536), "white space"),
        ("app:4294967290:100", ENTRY, "app", SubRange(4294967290, 100), "past the highest ID"),
        ("app:-1:1", ENTRY, "app", SubRange(2**64 - 1, 1), "is read as 18446744073709551615"),
    ],
)
def test_each_line_is_read_as_shadow_utils_reads_it(text, kind, owner, rng, problem) -> None:
    line = parse_subid_line(7, text)
    assert (line.number, line.kind, line.owner, line.range) == (7, kind, owner, rng)
    if problem is None:
        assert line.problem is None
    else:
        assert problem in line.problem
    assert line.canonical == (kind == ENTRY and problem is None)


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("10", 10), ("010", 8), ("0x10", 16), ("0X1f", 31), (" \t7", 7), ("+3", 3),
     ("-5", 2**64 - 5), ("18446744073709551615", 2**64 - 1), ("18446744073709551616", None),
     ("7 ", None), ("", None), ("x", None), ("0x", None), ("09", None), ("1e3", None)],
)
def test_strtoul(text: str, value) -> None:
    assert strtoul(text) == value


def test_a_file_with_everything_round_trips_and_keeps_line_numbers() -> None:
    text = "# header\n\napp:100000:65536\r\nbob:165536:65536\n1001:300000:10\ngarbage line\nlast:1:1"
    lines = parse_subid(text)
    assert render(lines) == text
    assert [line.kind for line in lines] == [COMMENT, BLANK, MALFORMED, ENTRY, ENTRY, MALFORMED, ENTRY]
    assert [line.number for line in lines] == [1, 2, 3, 4, 5, 6, 7]
    assert lines[-1].newline is False
    assert lines[0].newline is True


def test_a_crlf_file_is_read_line_by_line_with_every_entry_ignored() -> None:
    text = "app:100000:65536\r\nbob:165536:65536\r\n"
    lines = parse_subid(text)
    assert [line.kind for line in lines] == [MALFORMED, MALFORMED]
    assert render(lines) == text


def test_numeric_owners_belong_to_the_user_with_that_uid() -> None:
    db = accounts()
    found = subid_file(SUBUID, "app:100000:10\n1001:200000:10\nbob:300000:10\n1002:400000:10\n").lines_of(
        db.user("app"), db
    )
    assert [line.range.start for line in found] == [100000, 200000]


def test_a_ten_thousand_user_file_parses_exactly() -> None:
    text = "".join(f"user{i}:{100000 + i * 65536}:65536\n" for i in range(10000))
    lines = parse_subid(text)
    overlaps = find_overlaps([line for line in lines if line.is_entry], lambda line: line.owner)
    assert len(lines) == 10000
    assert all(line.canonical for line in lines)
    assert lines[9999].owner == "user9999"
    assert lines[9999].range == SubRange(100000 + 9999 * 65536, 65536)
    assert render(lines) == text
    assert overlaps == []


def test_ten_thousand_users_sharing_one_range_are_each_reported_once() -> None:
    # the hand-made lineinfile role: every user gets the same range
    lines = parse_subid("".join(f"user{i}:100000:65536\n" for i in range(10000)))
    overlaps = find_overlaps(lines, lambda line: line.owner)
    assert len(overlaps) == 10000
    assert {overlap.total for overlap in overlaps} == {9999}
    assert all(1 <= len(overlap.examples) <= 10 for overlap in overlaps)
    assert all(example.owner != overlap.line.owner for overlap in overlaps for example in overlap.examples)


# --- overlaps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:100:10\nb:110:10\n", {}),  # touching is not overlapping
        ("a:100:10\nb:109:10\n", {1: 1, 2: 1}),
        ("a:100:100\nb:120:10\nc:150:10\n", {1: 2, 2: 1, 3: 1}),
        ("a:100:10\na:105:10\n", {}),  # one user's own ranges
        ("a:100:10\nb:100:0\n", {}),  # an empty range holds nothing
        ("a:100:10\nb:50:100\nc:0:1\n", {1: 1, 2: 1}),
        ("a:100:10\n1001:105:10\n", {}),  # keys say these are the same user
    ],
)
def test_overlaps(text: str, expected: dict) -> None:
    keys = {"1001": "a"}
    found = find_overlaps(parse_subid(text), lambda line: keys.get(line.owner, line.owner))
    assert {overlap.line.number: overlap.total for overlap in found} == expected


def test_a_huge_range_over_many_small_ones_names_itself_as_the_example() -> None:
    text = "huge:0:100000000\n" + "".join(f"u{i}:{1000 + i * 10}:5\n" for i in range(2000))
    found = {overlap.line.number: overlap for overlap in find_overlaps(parse_subid(text), lambda line: line.owner)}
    assert found[1].total == 2000
    assert len(found[1].examples) == 10
    assert all(found[n].total == 1 and found[n].examples[0].owner == "huge" for n in range(2, 2002))


# --- allocator -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("occupied", "count", "low", "high", "expected"),
    [
        ([], 10, 100, 1000, 100),
        ([(100, 110)], 10, 100, 1000, 110),
        ([(50, 105)], 10, 100, 1000, 105),
        ([(100, 110), (115, 200)], 10, 100, 1000, 200),
        ([(100, 110), (120, 200)], 10, 100, 1000, 110),
        ([(0, 995)], 10, 100, 1000, None),
        ([(0, 991)], 10, 100, 1000, 991),
        ([], 1001, 0, 1000, 0),
        ([], 1002, 0, 1000, None),
        ([(2000, 3000)], 10, 100, 1000, 100),
    ],
)
def test_first_free(occupied, count, low, high, expected) -> None:
    assert first_free(merge_intervals(occupied), count, low, high) == expected


@pytest.mark.parametrize(
    ("occupied", "start", "count", "expected"),
    [([], 5, 5, True), ([(0, 5)], 5, 5, True), ([(0, 6)], 5, 5, False), ([(10, 11)], 5, 5, True),
     ([(9, 11)], 5, 5, False), ([(6, 7)], 5, 5, False)],
)
def test_is_free(occupied, start, count, expected) -> None:
    assert is_free(merge_intervals(occupied), start, count) is expected


def test_merge_intervals_joins_touching_and_drops_empty() -> None:
    assert merge_intervals([(5, 10), (0, 5), (20, 20), (12, 15), (14, 30)]) == [(0, 10), (12, 30)]
    assert union_size([SubRange(0, 10), SubRange(5, 10), SubRange(100, 0)]) == 15


def test_bounds_come_from_login_defs() -> None:
    bounds = bounds_from_login_defs({"SUB_UID_MIN": "200000", "SUB_GID_COUNT": "1000"})
    assert bounds[SUBUID] == IdBounds(200000, 600100000, 65536)
    assert bounds[SUBGID] == IdBounds(100000, 600100000, 1000)


# --- plans ---------------------------------------------------------------------------------


def plan_files(subuid: str, subgid: str, user: str = "app", count: int = 65536, bounds=BOUNDS):
    """The files as parsed and the plan for the user."""
    db = accounts()
    files = {SUBUID: subid_file(SUBUID, subuid), SUBGID: subid_file(SUBGID, subgid)}
    return files, plan_user(files, db, db.user(user), {SUBUID: count, SUBGID: count}, bounds)


def plan(subuid: str, subgid: str, user: str = "app", count: int = 65536, bounds=BOUNDS) -> dict:
    """The plan for the user as (action, start, count, line) tuples per kind."""
    result = plan_files(subuid, subgid, user, count, bounds)[1]
    return {
        kind: [(c.action, c.after.start, c.after.count, c.line) for c in changes] for kind, changes in result.items()
    }


def test_a_short_range_with_free_space_after_it_is_widened_in_place() -> None:
    got = plan("# c\napp:100000:1000\n", "app:100000:1000\n")
    assert got == {SUBUID: [("widen", 100000, 65536, 2)], SUBGID: [("widen", 100000, 65536, 1)]}


def test_a_short_range_followed_by_another_users_range_gets_a_second_range() -> None:
    got = plan("app:100000:1000\nbob:101000:65536\n", "app:100000:1000\nbob:101000:65536\n")
    # the first free block after app's and bob's ranges
    assert got == {SUBUID: [("add", 166536, 64536, None)], SUBGID: [("add", 166536, 64536, None)]}


def test_no_entry_allocates_like_useradd_the_first_free_block() -> None:
    got = plan("bob:100000:65536\n", "bob:100000:65536\n")
    assert got[SUBUID] == got[SUBGID] == [("add", 165536, 65536, None)]


def test_new_blocks_keep_clear_of_account_ids() -> None:
    got = plan("bob:100000:150000\n", "bob:100000:150000\n")
    # 250000 is the uid of "high" (and its primary gid), 270000 the gid of "highgrp"
    assert got == {SUBUID: [("add", 270001, 65536, None)], SUBGID: [("add", 270001, 65536, None)]}


def test_uid_and_gid_blocks_line_up_when_both_files_allow_it() -> None:
    got = plan("bob:130000:65536\n", "")
    # alone, subgid would start at 100000 and subuid at 250001 (after bob's range and uid
    # 250000); a start free in both files (and clear of gid 270000) is preferred
    assert got[SUBUID] == got[SUBGID] == [("add", 270001, 65536, None)]


def test_enough_ids_means_no_change_even_over_several_ranges() -> None:
    got = plan("app:100000:30000\napp:200000:35536\n", "1001:300000:65536\n")
    assert got == {SUBUID: [], SUBGID: []}


def test_overlapping_own_ranges_count_once() -> None:
    got = plan("app:200000:65536\napp:200000:65536\napp:210000:100\n", "app:200000:65536\n", count=65537)
    assert got[SUBUID] == [("widen", 200000, 65537, 1)]


def test_a_malformed_range_is_kept_clear_of_and_never_widened() -> None:
    got = plan("app:100000:1000\r\n", "app:100000:010\n")
    # the CRLF line counts for nothing but its IDs stay reserved; the octal count is not widened
    assert got[SUBUID] == [("add", 101000, 65536, None)]
    assert got[SUBGID] == [("add", 100008, 65528, None)]


def test_widening_stays_within_sub_uid_max() -> None:
    bounds = {kind: IdBounds(100000, 101500, 65536) for kind in (SUBUID, SUBGID)}
    with pytest.raises(SubidError, match="no block of 1000 free subordinate UIDs .* SUB_UID_MAX 101500"):
        plan("app:100000:1000\n", "app:100000:2000\n", count=2000, bounds=bounds)


def test_a_range_below_sub_uid_min_is_not_widened_below_it() -> None:
    got = plan("app:10000:1000\n", "app:10000:1000\n", count=2000)
    assert got[SUBUID] == [("add", 100000, 1000, None)]


def test_apply_changes_rewrites_only_the_widened_line_and_appends() -> None:
    text = "# keep me\r\n\nbob:50:5\ngarbage\napp:100000:1000\nzed:1:1"
    files, result = plan_files(text, "")
    new = apply_range_changes(files[SUBUID], "app", result[SUBUID])
    assert new == "# keep me\r\n\nbob:50:5\ngarbage\napp:100000:65536\nzed:1:1"
    files, result = plan_files("bob:100000:65536\nzed:1:1", "")
    assert apply_range_changes(files[SUBUID], "app", result[SUBUID]) == "bob:100000:65536\nzed:1:1\napp:165536:65536\n"


def test_a_numeric_owner_keeps_its_form_when_widened() -> None:
    files, result = plan_files("1001:100000:1000\n", "")
    assert apply_range_changes(files[SUBUID], "app", result[SUBUID]) == "1001:100000:65536\n"


# --- sources and helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "source"),
    [
        (None, "files"),
        ("passwd: files\n", "files"),
        ("subid: files\n", "files"),
        ("subid:   sss files\n", "sss"),
        ("# subid: sss\n", "files"),
        ("subid:\n", "files"),
        ("passwd: files\nsubid: freeipa # comment\n", "freeipa"),
    ],
)
def test_nss_source(text, source) -> None:
    assert nss_source(text) == source


def test_getsubids_output() -> None:
    assert parse_getsubids("0: app 100000 65536\n1: app 300000 10\n") == [SubRange(100000, 65536), SubRange(300000, 10)]
    assert parse_getsubids("Error fetching ranges\n") == []


@pytest.mark.parametrize(
    ("data", "caps"),
    [
        (struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0), {7}),
        (struct.pack("<IIIIII", 0x03000001, (1 << 6) | (1 << 7), 0, 1, 0, 0), {6, 7, 32}),
        (struct.pack("<III", 0x01000000, 1 << 6, 0), {6}),
        (b"\x00", set()),
    ],
)
def test_file_capabilities(data: bytes, caps: set) -> None:
    assert capabilities_from_xattr(data) == caps


def test_the_index_matches_lines_of_for_every_user() -> None:
    db = accounts()
    text = "app:1:1\n1001:2:2\nbob:3:3\n1002:4:4\nghost:5:5\n250000:6:6\n4242:7:7\nhigh:8:8\n"
    subid = subid_file(SUBUID, text)
    index = subid.index(db)
    for user in db.users:
        assert index.get(user.uid, []) == subid.lines_of(user, db), user.name
    assert [line.number for line in index[4242]] == [7]  # a number without an account


# --- usermod's read-back ------------------------------------------------------------------


class FakeUsermod:
    """Plays usermod on temporary files: appends the user's ranges, and (to act out a race) a
    range another program wrote at the same moment."""

    def __init__(self, path: str, intruder: str) -> None:
        self.path = path
        self.intruder = intruder
        self.calls: list = []

    def __call__(self, argv, cwd):
        self.calls.append(list(argv))
        if "--add-subuids" in argv:
            first, last = argv[argv.index("--add-subuids") + 1].split("-")
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(self.intruder)
                handle.write(f"{argv[-1]}:{first}:{int(last) - int(first) + 1}\n")
        return 0, "", ""


def usermod_plan(tmp_path):
    """A snapshot of bob's range in files under ``tmp_path`` and the plan that gives app 65536 UIDs."""
    from ansible_collections.permfix.containers.plugins.module_utils._classes.subid_fix import _result
    from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import Snapshot, SubidPaths

    (tmp_path / "subuid").write_text("bob:100000:65536\n")
    (tmp_path / "subgid").write_text("")
    paths = SubidPaths(subuid=str(tmp_path / "subuid"), subgid=str(tmp_path / "subgid"))
    db = accounts()
    files = {SUBUID: subid_file(SUBUID, "bob:100000:65536\n"), SUBGID: subid_file(SUBGID, "")}
    snap = Snapshot(paths, files, db, BOUNDS, "files")
    plan_result = plan_user(files, db, db.user("app"), {SUBUID: 65536, SUBGID: 0}, BOUNDS)
    return snap, _result(snap, db.user("app"), {SUBUID: 65536, SUBGID: 0}, plan_result)


def test_a_range_taken_by_another_program_at_the_same_moment_is_removed_again(tmp_path) -> None:
    from ansible_collections.permfix.containers.plugins.module_utils._classes.subid_fix import _run_usermod

    snap, result = usermod_plan(tmp_path)
    runner = FakeUsermod(str(tmp_path / "subuid"), "carol:170000:10\n")
    with pytest.raises(
        SubidError, match=r"another program added carol's 170000-170009 .* they were removed again\. Run again\."
    ):
        _run_usermod(snap, result, "/usr/sbin/usermod", runner, None)
    assert runner.calls == [
        ["/usr/sbin/usermod", "--add-subuids", "165536-231071", "app"],
        ["/usr/sbin/usermod", "--del-subuids", "165536-231071", "app"],
    ]


def test_usermod_read_back_without_a_race_keeps_the_new_text(tmp_path) -> None:
    from ansible_collections.permfix.containers.plugins.module_utils._classes.subid_fix import _run_usermod

    snap, result = usermod_plan(tmp_path)
    _run_usermod(snap, result, "/usr/sbin/usermod", FakeUsermod(str(tmp_path / "subuid"), ""), None)
    assert result.after[SUBUID] == "bob:100000:65536\napp:165536:65536\n"
