# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Podman through its CLI's JSON output, as root or as a rootless user.

Modules run as root; rootless podman state belongs to each user, so commands for a user run
with that user's uid, gid and groups and a login-like environment (HOME, USER, LOGNAME,
PATH and XDG_RUNTIME_DIR when /run/user/UID exists), from the user's home directory.

Commands run through a Runner (``module_runner(module)`` wraps ``AnsibleModule.run_command``),
so module_utils never start processes themselves and unit tests can pass a fake.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

# Where rootless podman keeps state for a user, relative to the home directory.
ROOTLESS_STATE_DIRS: tuple[str, ...] = (".local/share/containers", ".config/containers")
PAUSE_PROCESS_NAME = "podman pause"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PodmanError(Exception):
    """A podman command failed or printed something that is not the JSON we asked for."""


@dataclass(frozen=True)
class Account:
    """A local account podman can run as."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def from_pwd(cls, entry: pwd.struct_passwd) -> Account:
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    @classmethod
    def lookup(cls, name_or_uid: str) -> Account:
        """Find an account by name or numeric uid; KeyError when there is none."""
        if name_or_uid.isdigit():
            return cls.from_pwd(pwd.getpwuid(int(name_or_uid)))
        return cls.from_pwd(pwd.getpwnam(name_or_uid))


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str


def podman_path() -> Optional[str]:
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


Runner = Callable[[Sequence[str], Optional[str]], Tuple[int, str, str]]
"""Runs argv with a working directory and returns (rc, stdout, stderr): see module_runner."""


def module_runner(module: Any) -> Runner:
    """A Runner backed by ``AnsibleModule.run_command`` (what every module passes in)."""

    def run(argv: Sequence[str], cwd: Optional[str]) -> tuple[int, str, str]:
        rc, stdout, stderr = module.run_command(list(argv), cwd=cwd)
        return rc, stdout, stderr

    return run


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
    account: Optional[Account] = None,
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


def podman_json(runner: Runner, args: Sequence[str], account: Optional[Account] = None) -> Any:
    """Run a podman command that prints JSON (pass ``--format json`` in ``args``) and parse it."""
    result = run_podman(runner, args, account)
    text = result.stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PodmanError(f"'{' '.join(result.argv)}'{_as(account)} printed something that is not JSON: {text[:200]}") from exc


def podman_version(runner: Runner, account: Optional[Account] = None) -> Optional[str]:
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
    """The uids of running rootless podman pause processes."""
    uids: set[int] = set()
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return uids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc_root, entry, "comm"), encoding="utf-8", errors="replace") as handle:
                if handle.read().strip() != PAUSE_PROCESS_NAME:
                    continue
            uid = os.stat(os.path.join(proc_root, entry)).st_uid
        except OSError:
            continue
        if uid != 0:
            uids.add(uid)
    return uids


def has_rootless_state(account: Account) -> bool:
    """Whether ``account`` has rootless podman storage or configuration in its home."""
    if account.uid == 0 or not account.home or account.home == "/":
        return False
    return any(os.path.isdir(os.path.join(account.home, rel)) for rel in ROOTLESS_STATE_DIRS)


def rootless_users(accounts: Optional[Iterable[Account]] = None, proc_root: str = "/proc") -> list[Account]:
    """Accounts other than root that have rootless podman state or a running pause process.

    Sorted by uid. ``accounts`` defaults to every entry of the passwd database.
    """
    if accounts is None:
        accounts = [Account.from_pwd(entry) for entry in pwd.getpwall()]
    running = pause_process_uids(proc_root)
    found: dict[int, Account] = {}
    for account in accounts:
        if account.uid == 0 or account.uid in found:
            continue
        if account.uid in running or has_rootless_state(account):
            found[account.uid] = account
    return [found[uid] for uid in sorted(found)]


def _as(account: Optional[Account]) -> str:
    return "" if account is None else f" as user {account.name}"
