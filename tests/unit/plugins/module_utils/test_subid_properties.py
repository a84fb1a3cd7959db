# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests (hypothesis) of the subid parser, overlap finder and allocator."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.permfix.containers.plugins.module_utils._classes.subid_fix import (
    apply_range_changes,
    plan_user,
)
from ansible_collections.permfix.containers.plugins.module_utils._host import subid_file as sf
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase

OWNERS = ["app", "bob", "carol", "1001", "ghost"]
PASSWD = "".join(
    f"{name}:x:{uid}:{uid}::/home/{name}:/bin/sh\n"
    for name, uid in (("root", 0), ("app", 1001), ("bob", 1002), ("carol", 1003))
)

line_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=30),
    st.builds(lambda o, s, c: f"{o}:{s}:{c}", st.sampled_from(OWNERS), st.integers(0, 10**6), st.integers(0, 10**5)),
)


@given(st.lists(line_text, max_size=30), st.booleans())
def test_any_text_round_trips(lines: list, final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    parsed = sf.parse_subid(text)
    assert sf.render(parsed) == text
    assert [line.number for line in parsed] == list(range(1, len(parsed) + 1))


intervals = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 60)).map(lambda p: (p[0], p[0] + p[1])), max_size=12)


@given(intervals, st.integers(1, 80), st.integers(0, 200), st.integers(0, 400))
def test_first_free_is_free_in_bounds_and_the_lowest(occupied: list, count: int, low: int, high: int) -> None:
    merged = sf.merge_intervals(occupied)
    start = sf.first_free(merged, count, low, high)

    def free(candidate: int) -> bool:
        return all(candidate + count <= a or b <= candidate for a, b in occupied)

    fitting = [s for s in range(low, high - count + 2) if free(s)]
    if start is None:
        assert fitting == []
    else:
        assert low <= start and start + count - 1 <= high
        assert free(start)
        assert start == fitting[0]


ranges = st.lists(
    st.tuples(st.sampled_from(OWNERS), st.integers(0, 2000), st.integers(0, 300)), min_size=0, max_size=25
)


@given(ranges)
def test_overlap_totals_match_brute_force(entries: list) -> None:
    text = "".join(f"{owner}:{start}:{count}\n" for owner, start, count in entries)
    lines = sf.parse_subid(text)
    key = {"1001": "app"}

    def owner_key(line) -> str:
        return key.get(line.owner, line.owner)

    found = {overlap.line.number: overlap for overlap in sf.find_overlaps(lines, owner_key)}
    for line in lines:
        others = [
            other for other in lines
            if other is not line and owner_key(other) != owner_key(line) and line.range.overlaps(other.range)
        ]
        if not others:
            assert line.number not in found
            continue
        overlap = found[line.number]
        assert overlap.total == len(others)
        assert 1 <= len(overlap.examples) <= 10
        assert all(example in others for example in overlap.examples)


files_text = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(OWNERS), st.integers(90000, 400000), st.integers(1, 70000)).map(
            lambda t: f"{t[0]}:{t[1]}:{t[2]}"
        ),
        st.sampled_from(["# comment", "", "garbage", "bob:150000:1000\r", "app:120000:010"]),
    ),
    max_size=12,
).map(lambda lines: "".join(line + "\n" for line in lines))

account_lines = st.lists(st.integers(100000, 400000), max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    files_text, files_text, account_lines, st.integers(1, 200000), st.integers(100000, 200000), st.integers(0, 500000)
)
def test_a_plan_never_overlaps_anything_stays_in_bounds_and_is_idempotent(
    subuid: str, subgid: str, extra_ids: list, count: int, low: int, span: int
) -> None:
    passwd = PASSWD + "".join(f"x{i}:x:{uid}:{uid}::/:/bin/sh\n" for i, uid in enumerate(extra_ids))
    db = AccountDatabase.from_text(passwd, "")
    user = db.user("app")
    bounds = {kind: sf.IdBounds(low, low + span, 65536) for kind in sf.KINDS}
    files = {sf.SUBUID: sf.SubidFile(sf.SUBUID, "/etc/subuid", True, sf.parse_subid(subuid)),
             sf.SUBGID: sf.SubidFile(sf.SUBGID, "/etc/subgid", True, sf.parse_subid(subgid))}
    wanted = {sf.SUBUID: count, sf.SUBGID: count}
    try:
        plan = plan_user(files, db, user, wanted, bounds)
    except sf.SubidError as exc:
        assert "no block of" in str(exc)
        return
    account_ids = set(db.uids()) | set(db.gids())
    for kind in sf.KINDS:
        for change in plan[kind]:
            added = change.added
            assert added.count > 0
            assert low <= added.start and added.last <= low + span
            for line in files[kind].lines:
                if line.range is not None and line.range.count > 0 and line.number != change.line:
                    assert not added.overlaps(line.range), (kind, change, line)
            assert not any(added.contains(value) for value in account_ids)
        new_text = apply_range_changes(files[kind], "app", plan[kind])
        new_lines = sf.parse_subid(new_text)
        widened = {change.line for change in plan[kind] if change.action == "widen"}
        # every line but a widened one keeps its exact text
        for old in files[kind].lines:
            if old.number not in widened:
                assert new_lines[old.number - 1].text == old.text
        files[kind] = sf.SubidFile(kind, files[kind].path, True, new_lines)
        mine = [line.range for line in files[kind].lines_of(user, db)]
        assert sf.union_size(mine) >= count
    again = plan_user(files, db, user, wanted, bounds)
    assert again == {sf.SUBUID: [], sf.SUBGID: []}


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60), st.integers(0, 60))
def test_range_overlap_means_shared_ids(a: int, b: int, c: int, d: int) -> None:
    first, second = sf.SubRange(a, b), sf.SubRange(c, d)
    shared = set(range(a, a + b)) & set(range(c, c + d))
    assert first.overlaps(second) == second.overlaps(first) == bool(shared)
