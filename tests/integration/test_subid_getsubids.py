# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cross-check of the parser against shadow-utils' own reader (libsubid's getsubids).

getsubids has no file option: each check runs it in a private mount namespace
(``unshare -m``) with the test's files bind-mounted over /etc/subuid and /etc/subgid, so the
machine's own files are never touched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import permfix_testlib as lib
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import (
    SUBGID,
    SUBUID,
    SubidFile,
    SubRange,
    parse_getsubids,
    parse_subid,
)

NAMES = ["alpha", "beta"]  # not accounts: getsubids matches them literally

SCRIPT = r"""
set -e
mount --bind "$1" /etc/subuid
mount --bind "$2" /etc/subgid
shift 2
for owner in "$@"; do
  echo "== subuid $owner"; getsubids "$owner" 2>/dev/null || true
  echo "== subgid $owner"; getsubids -g "$owner" 2>/dev/null || true
done
"""


def getsubids_on(subuid: Path, subgid: Path, owners: list) -> dict:
    """{(kind, owner): [SubRange]} as getsubids reports them for these files."""
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", SCRIPT, "sh", str(subuid), str(subgid), *owners],
        capture_output=True, text=True, check=True, timeout=120,
    )
    sections: dict = {}
    current = None
    for line in proc.stdout.splitlines():
        if line.startswith("== "):
            kind, owner = line.split(" ", 2)[1:]
            current = (kind, owner)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {key: parse_getsubids("\n".join(lines)) for key, lines in sections.items()}


def ours(text: str, kind: str, owner: str, db: AccountDatabase) -> list:
    subid_file = SubidFile(kind, f"/etc/{kind}", True, parse_subid(text))
    user = db.user(owner)
    if user is not None:
        lines = subid_file.lines_of(user, db)
    else:
        lines = [line for line in subid_file.entries if line.owner == owner]
    return [line.range for line in lines]


FIXED = (
    "# comment\n"
    "\n"
    "alpha:100000:65536\n"
    "alpha:200000:10\r\n"
    "alpha: 300000:5\n"
    "alpha:400000 :5\n"
    "alpha:500000:0\n"
    "alpha:600000:+5\n"
    "alpha:700000:0x10\n"
    "alpha:800000:010\n"
    " alpha:900000:1\n"
    "alpha:1000000:1:extra\n"
    "alpha:4294967290:100\n"
    "alpha:-5:10\n"
    "#alpha:1100000:3\n"
    "alpha:1200000\n"
    "alpha::5\n"
    "alpha:08:1\n"
    "beta:1300000:65536\n"
    "{uid}:1400000:7\n"
    "{user}:1500000:9\n"
    "alpha:1600000:2"
)


def test_the_parser_reads_every_odd_line_as_getsubids_does(make_user, tmp_path: Path) -> None:
    user = make_user("pfgsi")
    db = AccountDatabase.from_files()
    text = FIXED.format(uid=user.uid, user=user.name)
    (tmp_path / "subuid").write_bytes(text.encode())
    gid_text = text.replace(f"{user.uid}:1400000:7\n", "")  # getsubids -g matches a number against the group's gid
    (tmp_path / "subgid").write_bytes(gid_text.encode())
    owners = NAMES + [user.name]
    theirs = getsubids_on(tmp_path / "subuid", tmp_path / "subgid", owners)
    for owner in owners:
        assert theirs[("subuid", owner)] == ours(text, SUBUID, owner, db), owner
        assert theirs[("subgid", owner)] == ours(gid_text, SUBGID, owner, db), owner
    # and the interesting ones, spelled out
    assert theirs[("subuid", "alpha")][:3] == [SubRange(100000, 65536), SubRange(300000, 5), SubRange(500000, 0)]
    assert SubRange(2**64 - 5, 10) in theirs[("subuid", "alpha")]
    assert SubRange(800000, 8) in theirs[("subuid", "alpha")]
    assert theirs[("subuid", user.name)] == [SubRange(1400000, 7), SubRange(1500000, 9)]


tokens = st.sampled_from(["alpha", "beta", " alpha", "alpha ", "#alpha", "", "0", "10", "010", "0x1f", "08", "-3",
                          "+4", " 5", "5 ", "65536", "100000", "4294967295", "18446744073709551616", "x", "1e3"])
lines = st.lists(tokens, min_size=1, max_size=5).map(":".join)
endings = st.sampled_from(["\n", "\n", "\n", "\r\n"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(lines, endings), max_size=12), st.booleans())
def test_random_files_are_read_as_getsubids_reads_them(tmp_path: Path, content: list, final_newline: bool) -> None:
    text = "".join(line + ending for line, ending in content)
    if content and not final_newline:
        text = text.rstrip("\n")
    path = tmp_path / "random"
    path.write_bytes(text.encode())
    db = AccountDatabase.from_text("", "")
    theirs = getsubids_on(path, path, NAMES)
    for owner in NAMES:
        assert theirs[("subuid", owner)] == ours(text, SUBUID, owner, db), (owner, text)
        assert theirs[("subgid", owner)] == ours(text, SUBGID, owner, db), (owner, text)


def test_the_module_and_getsubids_agree_on_the_real_files(make_user) -> None:
    users = [make_user("pfgsr"), make_user("pfgsr")]
    for index, user in enumerate(users):
        assert lib.run_module("subid", {"name": user.name, "count": 1000 * (index + 1), "migrate": "never"})["changed"]
    info = lib.run_module("subid_info", {"users": [u.name for u in users], "discover": False})
    for user in users:
        for kind, flag in ((SUBUID, []), (SUBGID, ["-g"])):
            real = parse_getsubids(lib.sh("getsubids", *flag, user.name).stdout)
            assert [SubRange(r["start"], r["count"]) for r in info["users"][user.name][kind]["ranges"]] == real
