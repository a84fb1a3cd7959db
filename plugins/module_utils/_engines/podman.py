# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Podman through its CLI's JSON output, as root or as a rootless user.

Modules run as root; rootless podman state belongs to each user, so commands for a user run
with that user's uid, gid and groups and a login-like environment (HOME, USER, LOGNAME,
PATH and XDG_RUNTIME_DIR when /run/user/UID exists), from the user's home directory.

Commands run through a Runner (``module_runner(module)`` wraps ``AnsibleModule.run_command``),
so module_utils never start processes themselves and unit tests can pass a fake.


Also here: which users have rootless podman (:func:`rootless_users`: state in their home or a
running pause process) and a rootless user's namespace (:func:`rootless_namespace`).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from collections.abc import Sequence
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import CommandResult, Runner, proc_by_comm
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account, AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import IdMap, parse_proc_map, rootless_map
from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import SubidError, read_subid_file

# Where rootless podman keeps state for a user, relative to the home directory.
ROOTLESS_STATE_DIRS: tuple[str, ...] = (".local/share/containers", ".config/containers")
PAUSE_PROCESS_NAME = "podman pause"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PodmanError(PermfixError):
    """A podman command failed or printed something that is not the JSON we asked for."""


def podman_path() -> str | None:
    """The podman executable on PATH (or the usual places), None when podman is absent."""
    return shutil.which("podman") or shutil.which("podman", path=DEFAULT_PATH)


def user_environment(account: Account) -> dict[str, str]:
    """A login-like environment for ``account``, as podman expects for a rootless user."""
    env = {
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
    }
    runtime_dir = f"/run/user/{account.uid}"
    if os.path.isdir(runtime_dir):
        env["XDG_RUNTIME_DIR"] = runtime_dir
    return env


"""Runs argv with a working directory and returns (rc, stdout, stderr): see module_runner."""


def as_user_argv(account: Account, argv: Sequence[str]) -> list[str]:
    """Wrap ``argv`` so it runs as ``account`` with its groups and a login-like environment.

    Uses util-linux's setpriv (no PAM session, nothing else inherited) and ``env -i``.
    """
    environment = [f"{key}={value}" for key, value in sorted(user_environment(account).items())]
    return [
        "setpriv", f"--reuid={account.uid}", f"--regid={account.gid}", "--init-groups", "--",
        "env", "-i", *environment, *argv,
    ]


def run_podman(
    runner: Runner,
    args: Sequence[str],
    account: Account | None = None,
    *,
    check: bool = True,
) -> CommandResult:
    """Run ``podman ARGS`` as root (``account`` None) or as ``account``.

    Raises PodmanError when podman is missing or (with ``check``) exits non-zero.
    """
    executable = podman_path()
    if executable is None:
        raise PodmanError("podman is not installed on this host (no podman on PATH)")
    argv: tuple[str, ...] = (executable,) + tuple(args)
    cwd = "/"
    command = list(argv)
    if account is not None and account.uid != os.geteuid():
        command = as_user_argv(account, argv)
        cwd = account.home if os.path.isdir(account.home) else "/"
    try:
        rc, stdout, stderr = runner(command, cwd)
    except OSError as exc:
        raise PodmanError(f"could not run '{' '.join(argv)}'{_as(account)}: {exc}") from exc
    result = CommandResult(argv, rc, stdout, stderr)
    if check and rc != 0:
        raise PodmanError(f"'{' '.join(argv)}'{_as(account)} failed with exit code {rc}: {stderr.strip()}")
    return result


def podman_json(runner: Runner, args: Sequence[str], account: Account | None = None) -> Any:
    """Run a podman command that prints JSON (pass ``--format json`` in ``args``) and parse it."""
    result = run_podman(runner, args, account)
    text = result.stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PodmanError(
            f"'{' '.join(result.argv)}'{_as(account)} printed something that is not JSON: {text[:200]}"
        ) from exc


def podman_version(runner: Runner, account: Account | None = None) -> str | None:
    """The podman client version, or None when podman is not installed."""
    if podman_path() is None:
        return None
    data = podman_json(runner, ["version", "--format", "json"], account)
    if isinstance(data, dict):
        client = data.get("Client") or {}
        version = client.get("Version") or data.get("Version")
        if version:
            return str(version)
    raise PodmanError("'podman version --format json' did not report a client version")


def pause_process_uids(proc_root: str = "/proc") -> set[int]:
    """The uids (other than root) of running rootless podman pause processes."""
    return {process.uid for process in proc_by_comm(PAUSE_PROCESS_NAME, proc_root) if process.uid != 0}


def has_rootless_state(account: Account) -> bool:
    """Whether ``account`` has rootless podman storage or configuration in its home."""
    if account.uid == 0 or not account.home or account.home == "/":
        return False
    return any(os.path.isdir(os.path.join(account.home, rel)) for rel in ROOTLESS_STATE_DIRS)


def rootless_users(accounts: AccountDatabase | None = None, proc_root: str = "/proc") -> list[Account]:
    """Accounts other than root that have rootless podman state or a running pause process.

    Sorted by uid. ``accounts`` defaults to the host's passwd database (NSS); a pause process
    of a uid the accounts do not list is looked up by uid.
    """
    if accounts is None:
        accounts = AccountDatabase([Account.from_pwd(entry) for entry in pwd.getpwall()], nss_fallback=True)
    running = pause_process_uids(proc_root)
    found: dict[int, Account] = {}
    for account in accounts.users:
        if account.uid == 0 or account.uid in found:
            continue
        if account.uid in running or has_rootless_state(account):
            found[account.uid] = account
    for uid in running - set(found):
        entry = accounts.user_by_uid(uid)
        if entry is not None:
            found[uid] = entry
    return [found[uid] for uid in sorted(found)]


def _as(account: Account | None) -> str:
    return "" if account is None else f" as user {account.name}"


def subid_namespace(account: Account, accounts: AccountDatabase | None = None) -> tuple[IdMap, IdMap]:
    """A rootless user's namespace computed from /etc/subuid and /etc/subgid (0 is the user).

    Raises SubidError when the files cannot be read.
    """
    accounts = accounts or AccountDatabase.from_files()
    entry = accounts.user_by_uid(account.uid) or account
    maps = []
    for kind, path, host_id in (("subuid", "/etc/subuid", account.uid), ("subgid", "/etc/subgid", account.gid)):
        subid = read_subid_file(kind, path)
        ranges = [(line.range.start, line.range.count) for line in subid.lines_of(entry, accounts) if line.range]
        maps.append(rootless_map(host_id, ranges))
    return maps[0], maps[1]


MAP_FILES: tuple[str, str] = ("/proc/self/uid_map", "/proc/self/gid_map")


def _split_head(result: CommandResult) -> tuple[str, str] | None:
    """The two files of ``head FILE1 FILE2`` (headers ``==> FILE <==``), None when it is not that."""
    if result.rc != 0:
        return None
    texts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in result.stdout.splitlines():
        name = line[4:-4] if line.startswith("==> ") and line.endswith(" <==") else None
        if name is not None:
            current = texts.setdefault(name, [])
        elif current is not None:
            current.append(line)
    if set(texts) != set(MAP_FILES):
        return None
    return "\n".join(texts[MAP_FILES[0]]), "\n".join(texts[MAP_FILES[1]])


def rootless_namespace(runner: Runner, account: Account) -> tuple[tuple[IdMap, IdMap], str]:
    """The user's rootless namespace as podman sets it up, and where it was learnt.

    Asks ``podman unshare cat /proc/self/uid_map`` (what podman really uses); falls back to
    /etc/subuid and /etc/subgid. Raises PodmanError when neither works.
    """
    try:
        both = _split_head(run_podman(runner, ["unshare", "head", "-n", "340", *MAP_FILES], account, check=False))
        if both is None:  # no head that prints its file names: one call per file
            both = (run_podman(runner, ["unshare", "cat", MAP_FILES[0]], account).stdout,
                    run_podman(runner, ["unshare", "cat", MAP_FILES[1]], account).stdout)
        uid_map, gid_map = parse_proc_map(both[0]), parse_proc_map(both[1])
        if uid_map.ranges and gid_map.ranges:
            return (uid_map, gid_map), "podman unshare"
    except PodmanError:
        pass
    try:
        return subid_namespace(account), "/etc/subuid"
    except SubidError as exc:
        raise PodmanError(f"the rootless namespace of {account.name} is unknown: {exc}") from exc
