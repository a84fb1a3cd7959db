# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The subid module against other local users and bad files (issue 13, items 9-13, 15).

Every run of the module happens in a private mount namespace with its own tmpfs on /run (and a
world-writable, sticky one on /run/lock, as on a booted host), so the locks of these tests never
meet those of other runs on the machine. The account and subid files are scratch copies in
/var/tmp; each test checks that no line of them is ever lost.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import permfix_testlib as lib

PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "app:x:1001:1001::/nonexistent/app:/bin/sh\n"
    "bob:x:1002:1002::/nonexistent/bob:/bin/sh\n"
)
GROUP = "root:x:0:\napp:x:1001:\nbob:x:1002:\n"
# comments, a CRLF line, garbage, other users and a last line without a newline: all must survive
SUBUID = "# managed by hand\r\n\nbob:100000:65536\ngarbage here\nzed:900000:5"
SUBGID = "# groups\nbob:100000:65536\n"
LOCK_DIR = "/run/permfix-containers"
LOCK = f"{LOCK_DIR}/subid.lock"
OLD_LOCK = "/run/lock/permfix-subid.lock"  # where the old code locked, in world-writable /run/lock
FAST_LOCK = {"PERMFIX_TEST_SERIAL_LOCK_TIMEOUT": "1"}
RUN_TMPFS = "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/lock && mount -t tmpfs -o mode=1777 tmpfs /run/lock"


@pytest.fixture
def scratch() -> Iterator[Path]:
    with lib.scratch_dir("pfatk-subid-", mode=0o755) as path:
        yield Path(path)


def account_files(
    directory: Path,
    subuid: str = SUBUID,
    subgid: str = SUBGID,
    passwd: bytes | str = PASSWD,
    login_defs: str = "",
) -> dict[str, str]:
    """Scratch account files; the module's path options that name them."""
    texts: dict[str, bytes | str] = {
        "subuid": subuid, "subgid": subgid, "passwd": passwd, "group": GROUP, "login_defs": login_defs,
    }
    paths = {}
    for name, text in texts.items():
        (directory / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        paths[f"{name}_path"] = str(directory / name)
    (directory / "nsswitch.conf").write_text("passwd: files\n")
    paths["nsswitch_path"] = str(directory / "nsswitch.conf")
    return paths


def play(module: str, args: Mapping[str, Any], environment: Mapping[str, str] | None = None) -> list[dict]:
    task: dict[str, Any] = {"name": "module under test", f"permfix.containers.{module}": dict(args),
                            "ignore_errors": True}
    if environment:
        task["environment"] = dict(environment)
    return [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]


def namespaced(
    runs: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    setup: str = RUN_TMPFS,
    teardown: str = "",
    environment: Mapping[str, str] | None = None,
    cwd: str | None = None,
    check: bool = False,
    config: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run each (module, args) at the same time, as ansible-playbook processes in one private mount
    namespace prepared by the shell commands ``setup`` (and ended by ``teardown``, after every
    ansible-playbook has finished); each module's task result, in order."""
    with tempfile.TemporaryDirectory(prefix="pfatk-play-") as tmp:
        lines = ["set -e", setup, "pids="]
        for index, (module, args) in enumerate(runs):
            playbook = os.path.join(tmp, f"play{index}.json")
            with open(playbook, "w", encoding="utf-8") as handle:
                json.dump(play(module, args, environment), handle)
            argv = [str(lib.VENV_BIN / "ansible-playbook"), playbook] + (["--check"] if check else [])
            lines.append(f"{shlex.join(argv)} >{tmp}/out{index} 2>{tmp}/err{index} & pids=\"$pids $!\"")
        lines += ["wait $pids", teardown]
        env = lib.ansible_env(
            {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", **(config or {})}
        )
        proc = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", "\n".join(lines)],
            env=env, cwd=cwd or tmp, capture_output=True, text=True, timeout=600, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        results = []
        for index in range(len(runs)):
            stdout = Path(tmp, f"out{index}").read_text()
            stderr = Path(tmp, f"err{index}").read_text()
            data = json.loads(stdout[stdout.find("{"):]) if "{" in stdout else {}
            results.append(lib.PlaybookResult(0, stdout, stderr, data).task("module under test"))
    return results


def subid(args: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    return namespaced([("subid", args)], **options)[0]


def assert_sentence(result: Mapping[str, Any]) -> None:
    """A failure a person can act on: no traceback, no MODULE FAILURE."""
    assert result["failed"] is True, result
    assert "Traceback" not in json.dumps(result), result
    # ansible-core says "(traceback unavailable)" for every fail_json; a crash has the traceback there
    assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)", result
    assert not result["msg"].startswith(("MODULE FAILURE", "Module failed")), result


def keeps_lines(text: str, original: str) -> bool:
    """Whether ``text`` holds every line of ``original``, in order, byte for byte."""
    lines = text.split("\n")
    position = 0
    for wanted in original.split("\n"):
        if not wanted:
            continue
        while position < len(lines) and lines[position] != wanted:
            position += 1
        if position == len(lines):
            return False
        position += 1
    return True


def read(path: Path) -> str:
    """A file's exact text (no newline translation)."""
    return path.read_bytes().decode("utf-8", "surrogateescape")


def as_nobody(command: str) -> str:
    return f"setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c {shlex.quote(command)}"


# --- item 9: the serial lock -------------------------------------------------------------------


def test_a_lock_file_planted_by_another_user_in_run_lock_does_not_break_subid(scratch: Path) -> None:
    # fs.protected_regular forbids root to O_CREAT-open a file of another user in a sticky
    # world-writable directory: the old lock in /run/lock then failed every run with a traceback
    paths = account_files(scratch)
    planted = f"{RUN_TMPFS} && {as_nobody(f'touch {OLD_LOCK} && chmod 0666 {OLD_LOCK}')}"
    result = subid(dict(paths, name="app", migrate="never"), setup=planted)
    assert not result.get("failed"), result
    assert result["changed"] is True
    assert keeps_lines(read(scratch / "subuid"), SUBUID)
    assert "app:100000:65536" not in read(scratch / "subuid")  # bob holds 100000
    assert [line for line in read(scratch / "subuid").splitlines() if line.startswith("app:")]


def test_a_lock_held_by_another_user_in_run_lock_does_not_block_subid(scratch: Path) -> None:
    # nobody makes the old lock file and holds an flock on it (without fs.protected_regular the
    # old code waited 60 seconds for it, then failed); the fifo says when the flock is taken
    paths = account_files(scratch)
    hold = as_nobody(f"exec 8>>{OLD_LOCK}; flock -x 8; echo >/run/ready; exec sleep 600")
    held = f"{RUN_TMPFS} && mkfifo -m 0666 /run/ready && {{ {hold} & }} && HOLDER=$! && read line </run/ready"
    result = subid(dict(paths, name="app", migrate="never"), setup=held, teardown="kill $HOLDER")
    assert not result.get("failed"), result
    assert result["changed"] is True


def test_a_held_lock_fails_with_a_sentence_after_the_wait(scratch: Path) -> None:
    paths = account_files(scratch)
    # the namespace's shell takes the lock on fd 9 and stays alive as ansible-playbook (exec keeps fd 9)
    held = f"{RUN_TMPFS} && mkdir -m 0700 {LOCK_DIR} && exec 9<>{LOCK} && flock -x 9 && echo $$ >&9"
    result = subid(dict(paths, name="app", migrate="never"), setup=held, environment=FAST_LOCK)
    assert_sentence(result)
    assert result["msg"].startswith("another run of permfix.containers.subid (process ")
    assert result["msg"].endswith(f"held {LOCK} for more than 1 seconds; try again when it has finished")
    assert read(scratch / "subuid") == SUBUID
    assert read(scratch / "subgid") == SUBGID


FOREIGN = {
    "owned by nobody": (f"{as_nobody(f'mkdir -m 0700 {LOCK_DIR}')}", "is owned by uid 65534, not root"),
    "a symlink by nobody": (
        as_nobody(f"mkdir -m 0700 /run/nobody && ln -s /run/nobody {LOCK_DIR}"), "is a symbolic link"
    ),
    "group and world writable": (f"mkdir {LOCK_DIR} && chmod 0777 {LOCK_DIR}", "has mode 0777, writable"),
    "a file": (f"{as_nobody(f'touch {LOCK_DIR}')}", "is not a directory"),
}


@pytest.mark.parametrize("planted", sorted(FOREIGN))
def test_a_lock_directory_someone_else_could_control_is_refused(scratch: Path, planted: str) -> None:
    # a world-writable /run (misconfigured) lets another user plant the lock directory first
    setup, problem = FOREIGN[planted]
    paths = account_files(scratch)
    world = "mount -t tmpfs -o mode=1777 tmpfs /run && " + setup
    result = subid(dict(paths, name="app", migrate="never"), setup=world)
    assert_sentence(result)
    assert result["msg"].startswith(f"the lock directory {LOCK_DIR} "), result["msg"]
    assert problem in result["msg"]
    assert result["msg"].endswith("remove it (as root) and run again")
    assert read(scratch / "subuid") == SUBUID


def test_a_read_only_run_refuses_changes_with_a_sentence_and_allows_no_change_runs(scratch: Path) -> None:
    paths = account_files(scratch, subuid=SUBUID + "\napp:200000:65536\n", subgid=SUBGID + "app:200000:65536\n")
    read_only = "mount -t tmpfs -o mode=0755,ro tmpfs /run"
    done = subid(dict(paths, name="app", migrate="never"), setup=read_only)
    assert not done.get("failed") and done["changed"] is False, done
    needed = subid(dict(paths, name="bob", migrate="never", count=70000), setup=read_only)
    assert_sentence(needed)
    assert needed["msg"] == (
        f"cannot create the lock directory {LOCK_DIR}: Read-only file system; its parent /run must be writable by root"
    )
    assert read(scratch / "subuid") == SUBUID + "\napp:200000:65536\n"


def test_four_concurrent_writers_keep_every_line_in_every_version(scratch: Path) -> None:
    users = [f"user{index}" for index in range(4)]
    passwd = PASSWD + "".join(f"{name}:x:{3000 + i}:{3000 + i}::/nonexistent:/bin/sh\n" for i, name in enumerate(users))
    paths = account_files(scratch, passwd=passwd)
    seen: dict[str, set[str]] = {"subuid": set(), "subgid": set()}
    stop = threading.Event()

    def watch() -> None:
        for _attempt in range(200000):  # bounded by count, not time
            if stop.is_set():
                return
            for kind in seen:
                seen[kind].add((scratch / kind).read_bytes().decode())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = namespaced([("subid", dict(paths, name=name, migrate="never")) for name in users])
    finally:
        stop.set()
        watcher.join()
    assert all(result.get("changed") is True for result in results), results
    for kind, original in (("subuid", SUBUID), ("subgid", SUBGID)):
        assert seen[kind], kind
        lost = [version for version in seen[kind] if not keeps_lines(version, original)]
        assert not lost, lost
        final = read(scratch / kind)
        assert keeps_lines(final, original)
        added = [line for line in final.splitlines() if line.split(":")[0] in users]
        assert sorted(line.split(":")[0] for line in added) == users, final
        ranges = sorted((int(start), int(start) + int(count)) for owner, start, count in
                        (line.split(":") for line in added))
        assert all(a_end <= b_start for (a_start, a_end), (b_start, b_end) in zip(ranges, ranges[1:])), ranges
    assert not [p for p in scratch.iterdir() if p.name in ("subuid.lock", "subgid.lock")], list(scratch.iterdir())


# --- items 10 and 15: file options ---------------------------------------------------------------


BAD_PATHS = {
    "a NUL byte": ("passwd_path", "/etc/pass\x00wd", "passwd_path must not contain a NUL byte: '/etc/pass\\x00wd'"),
    "a dict": ("subgid_path", {"a": 1}, "subgid_path must be an absolute path (starting with /), not \"{'a': 1}\""),
    "a relative path": ("subuid_path", "sub", "subuid_path must be an absolute path (starting with /), not 'sub'"),
    "a number": ("login_defs_path", 5, "login_defs_path must be an absolute path (starting with /), not '5'"),
}


@pytest.mark.parametrize("module", ["subid", "subid_info"])
@pytest.mark.parametrize("bad", sorted(BAD_PATHS))
def test_file_options_must_be_absolute_paths(scratch: Path, module: str, bad: str) -> None:
    option, value, message = BAD_PATHS[bad]
    paths = account_files(scratch)
    work = scratch / "cwd"
    work.mkdir()
    args = dict(paths, **{option: value})
    args.update({"name": "app", "migrate": "never"} if module == "subid" else {"users": ["app"]})
    # ansible logs every option to syslog before the module runs and refuses a NUL byte there
    # itself: without that logging (no_target_syslog, or journald) the module sees the value
    result = namespaced([(module, args)], cwd=str(work), config={"ANSIBLE_NO_TARGET_SYSLOG": "True"})[0]
    assert_sentence(result)
    assert result["msg"] == message
    assert not list(work.iterdir())
    assert read(scratch / "subuid") == SUBUID


def test_a_nul_byte_is_refused_before_the_module_runs_when_ansible_logs_to_syslog(scratch: Path) -> None:
    paths = account_files(scratch)
    result = subid(dict(paths, name="app", migrate="never", passwd_path="/etc/pass\x00wd"))
    assert result["failed"] is True
    assert result["msg"].startswith("Failed to log to syslog (embedded null character)"), result["msg"]
    assert read(scratch / "subuid") == SUBUID and read(scratch / "subgid") == SUBGID


def test_a_plain_run_warns_about_nothing(scratch: Path) -> None:
    paths = account_files(scratch)
    result = subid(dict(paths, name="app", migrate="never"))
    assert result["changed"] is True
    assert not result.get("warnings"), result.get("warnings")
    info = namespaced([("subid_info", dict(paths, users=["app"]))])[0]
    assert not info.get("warnings"), info.get("warnings")


# --- item 11: the highest ID --------------------------------------------------------------------


def test_new_ranges_end_at_the_highest_id_whatever_login_defs_allows(scratch: Path) -> None:
    defs = "SUB_UID_MIN 4294900000\nSUB_UID_MAX 0x1ffffffff\nSUB_GID_MIN 4294900000\nSUB_GID_MAX 8589934591\n"
    paths = account_files(scratch, login_defs=defs)
    too_many = subid(dict(paths, name="app", migrate="never", count=67296))
    assert_sentence(too_many)
    assert too_many["msg"].startswith("no block of 67296 free subordinate UIDs is left between SUB_UID_MIN 4294900000 "
                                      "and SUB_UID_MAX 4294967294")
    assert read(scratch / "subuid") == SUBUID
    fits = subid(dict(paths, name="app", migrate="never", count=67295))
    assert fits["changed"] is True, fits
    assert fits["subuid"]["ranges"] == [{"start": 4294900000, "count": 67295}]  # last ID 4294967294
    assert read(scratch / "subuid") == SUBUID + "\napp:4294900000:67295\n"
    assert read(scratch / "subgid") == SUBGID + "app:4294900000:67295\n"
    assert [w for w in fits["warnings"] if w.startswith("SUB_UID_MAX 8589934591 ")], fits["warnings"]
    assert [w for w in fits["warnings"] if w.startswith("SUB_GID_MAX 8589934591 ")], fits["warnings"]


# --- item 12: symbolic links --------------------------------------------------------------------


def test_a_symlinked_subuid_is_written_through_the_link(scratch: Path) -> None:
    paths = account_files(scratch)
    real = scratch / "shared"
    real.mkdir(mode=0o755)
    os.rename(paths["subuid_path"], real / "subuid")
    os.symlink("shared/subuid", paths["subuid_path"])
    check = subid(dict(paths, name="app", migrate="never"), check=True)
    assert check["changed"] is True, check
    applied = subid(dict(paths, name="app", migrate="never"))
    assert applied["changed"] is True, applied
    assert os.readlink(paths["subuid_path"]) == "shared/subuid"
    text = read(real / "subuid")
    assert keeps_lines(text, SUBUID) and text.endswith("\napp:165536:65536\n"), text
    again = subid(dict(paths, name="app", migrate="never"))
    assert again["changed"] is False, again
    assert sorted(p.name for p in real.iterdir()) == ["subuid"]


LINKS = {
    "dangling": ("missing/subuid", "which does not exist; create the file it points to, or replace the link"),
    "in a world-writable directory": ("open/subuid", "which others can write, so anyone there could swap the file"),
}


@pytest.mark.parametrize("link", sorted(LINKS))
def test_a_symlink_that_leads_nowhere_or_somewhere_odd_is_refused(scratch: Path, link: str) -> None:
    target, problem = LINKS[link]
    paths = account_files(scratch)
    (scratch / "open").mkdir()
    os.chmod(scratch / "open", 0o1777)
    (scratch / "open" / "subuid").write_text(SUBUID)
    os.unlink(paths["subuid_path"])
    os.symlink(target, paths["subuid_path"])
    result = subid(dict(paths, name="app", migrate="never"))
    assert_sentence(result)
    assert problem in result["msg"] and result["msg"].endswith("nothing was changed"), result["msg"]
    assert os.readlink(paths["subuid_path"]) == target
    assert read(scratch / "open" / "subuid") == SUBUID
    assert read(scratch / "subgid") == SUBGID


# --- item 13: the second file cannot be written -------------------------------------------------


def chattr_works(directory: Path) -> bool:
    probe = directory / "probe"
    probe.write_text("")
    try:
        done = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False).returncode == 0
    finally:
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True, check=False)
        probe.unlink()
    return done


def test_an_immutable_subgid_leaves_subuid_as_it_was(scratch: Path) -> None:
    if not chattr_works(scratch):
        # Not a skip: without an immutable file this attack proves nothing, and the test bed's
        # /var/tmp (ext4 here) supports chattr +i.
        pytest.fail(f"chattr +i is not supported on the file system of {scratch}; this test needs one that has it")
    paths = account_files(scratch)
    subprocess.run(["chattr", "+i", paths["subgid_path"]], check=True)
    try:
        result = subid(dict(paths, name="app", migrate="never", backup=True))
    finally:
        subprocess.run(["chattr", "-i", paths["subgid_path"]], check=True)
    assert_sentence(result)
    assert result["changed"] is False
    assert result["msg"].startswith(f"cannot write {paths['subgid_path']}: Operation not permitted (is it immutable?")
    assert result["msg"].endswith(f"{paths['subuid_path']} got its previous text back, so nothing was changed")
    assert read(scratch / "subuid") == SUBUID
    assert read(scratch / "subgid") == SUBGID
    assert not list(scratch.glob(".sub*")), list(scratch.iterdir())


# --- malformed account files --------------------------------------------------------------------


MALFORMED_PASSWD = {
    "NUL bytes": PASSWD.encode() + b"ev\x00il:x:1003:1003::/x:/bin/sh\nnul:x:10\x0004:1004::/x:/bin/sh\n",
    "non-UTF-8": PASSWD.encode() + b"caf\xe9:x:1005:1005::/x:/bin/sh\n\xff\xfe:x:1006:1006::/x:/bin/sh\n",
    "CRLF": PASSWD.replace("\n", "\r\n").encode(),
    "missing fields": PASSWD.encode() + b"short:x:1007\n::::::\nnouid:x::1008::/x:/bin/sh\n",
    "huge ids": PASSWD.encode() + b"huge:x:99999999999999999999:4294967296::/x:/bin/sh\nneg:x:-1:-1::/x:/bin/sh\n",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_PASSWD))
def test_malformed_passwd_files_lose_no_line(scratch: Path, kind: str) -> None:
    paths = account_files(scratch, passwd=MALFORMED_PASSWD[kind])
    result = subid(dict(paths, name="app", migrate="never"))
    assert result.get("changed") is True, result
    for name, original in (("subuid", SUBUID), ("subgid", SUBGID)):
        assert keeps_lines(read(scratch / name), original)
    assert (scratch / "passwd").read_bytes() == MALFORMED_PASSWD[kind]
    info = namespaced([("subid_info", dict(paths, users=["app"]))])[0]
    assert not info.get("failed"), info


MALFORMED_SUBUID = {
    "a NUL byte in an owner": "bob:100000:65536\nev\x00il:300000:65536\n",
    "non-UTF-8 owner": "bob:100000:65536\ncaf\udce9:300000:65536\n",
    "huge numbers": "bob:100000:65536\nbig:99999999999999999999999:1\nwrap:-1:5\n",
    "missing fields": "bob:100000:65536\nhalf:300000\n::\n",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED_SUBUID))
def test_malformed_subuid_files_lose_no_line_with_the_host_accounts(scratch: Path, kind: str) -> None:
    # the host's own passwd and group: owners unknown to the file are looked up through NSS
    text = MALFORMED_SUBUID[kind]
    raw = text.encode("utf-8", "surrogateescape")
    paths = account_files(scratch)
    (scratch / "subuid").write_bytes(raw)
    args = dict(paths, name="nobody", migrate="never")
    del args["passwd_path"], args["group_path"]
    result = subid(args)
    assert result.get("changed") is True, result
    written = (scratch / "subuid").read_bytes()
    assert written.startswith(raw) and written[len(raw):].startswith(b"nobody:"), written
