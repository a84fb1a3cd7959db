# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared helpers for the integration, molecule and tier tests.

Everything here drives real programs: ansible-playbook, useradd, podman, the Docker daemon.
The test bed (tests/setup/prepare.sh) has already installed and started them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("PERMFIX_CACHE", "/var/cache/permfix-tests"))
VENV_BIN = REPO_ROOT / ".venv" / "bin"

# Local images built by tests/setup/images.sh (never pulled).
IMAGE_BOOKWORM = "permfix-test/bookworm:latest"
IMAGE_PODMAN = "permfix-test/podman:latest"
IMAGE_BUSYBOX = "permfix-test/busybox:latest"
BUSYBOX_TARBALL = CACHE_DIR / "busybox-rootfs.tar"

# Rootful podman on this kind of machine cannot raise resource limits: pass these.
PODMAN_ROOTFUL_LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def collections_dir() -> Path:
    """The directory that holds ansible_collections/permfix/containers -> this checkout."""
    digest = hashlib.sha1(str(REPO_ROOT).encode()).hexdigest()[:10]
    base = Path(os.environ.get("PERMFIX_COLLECTIONS_DIR", f"/tmp/permfix-collections-{digest}"))
    link = base / "ansible_collections" / "permfix" / "containers"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".containers-{os.getpid()}")
        tmp.symlink_to(REPO_ROOT)
        os.replace(tmp, link)
    return base


def ansible_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for ansible-playbook and friends: this checkout as permfix.containers."""
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_COLLECTIONS_PATH": str(collections_dir()),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        }
    )
    if extra:
        env.update(extra)
    return env


def python_versions_path() -> str:
    """PATH entries for every pyenv Python 3.9+ on the machine (sanity tests each version)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    entries = []
    for version_dir in sorted(root.glob("3.*")):
        parts = version_dir.name.split(".")
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) >= 9 and (version_dir / "bin").is_dir():
            entries.append(str(version_dir / "bin"))
    return os.pathsep.join(entries)


@dataclass
class PlaybookResult:
    """What one ansible-playbook run printed, with the json callback's output parsed."""

    rc: int
    stdout: str
    stderr: str
    data: dict[str, Any] = field(default_factory=dict)

    def tasks(self, host: str = "localhost") -> list[dict[str, Any]]:
        """Every task result for ``host``, in order, each with ``_task`` (the task name)."""
        results = []
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                result = task.get("hosts", {}).get(host)
                if result is not None:
                    results.append(dict(result, _task=task["task"]["name"]))
        return results

    def task(self, name: str, host: str = "localhost") -> dict[str, Any]:
        """The result of the last task called ``name`` on ``host``."""
        matches = [result for result in self.tasks(host) if result["_task"] == name]
        if not matches:
            raise KeyError(f"no task named {name!r} ran on {host}; output:\n{self.stdout}\n{self.stderr}")
        return matches[-1]

    @property
    def stats(self) -> dict[str, Any]:
        return self.data.get("stats", {})


@contextlib.contextmanager
def scratch_dir(prefix: str, mode: int = 0o755, parent: str = "/var/tmp") -> Generator[str, None, None]:
    """A new directory (``mode``) below ``parent``, removed with everything in it afterwards."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(path, mode)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def socket_and_file(directory: str, sock_name: str, file_name: str, text: str = "x") -> tuple[socket.socket, str, str]:
    """A bound unix socket and a regular file in ``directory``, both mode 0600: bind-mount sources
    that are not directories. Close the socket when done."""
    sock_path = os.path.join(directory, sock_name)
    server = socket.socket(socket.AF_UNIX)
    server.bind(sock_path)
    os.chmod(sock_path, 0o600)
    single = os.path.join(directory, file_name)
    with open(single, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(single, 0o600)
    return server, sock_path, single


class RoleRun:
    """One role of the collection run on localhost, and what it reports: the role tests' steps.

    Every role records ``<role>_result`` (``changed``, ``fixed``, ``skipped``, ``notes``, ``findings``;
    docs/roles/) in its task "Record what was fixed and what was left alone"; ``result`` returns it.
    """

    def __init__(self, role: str, fix_task: str, result_fact: str) -> None:
        self.role = role
        self.fix_task = f"{role} : {fix_task}"
        self.record_task = f"{role} : Record what was fixed and what was left alone"
        self.result_fact = result_fact

    def helpers(self) -> tuple[Any, ...]:
        """``fix_task, play, run, changed, result, rhythm``: what a role test module names at its top."""
        return self.fix_task, self.play, self.run, self.changed, self.result, self.rhythm

    def play(self, **role_vars: Any) -> list[dict[str, Any]]:
        return [{"hosts": "localhost", "gather_facts": False, "roles": [{"role": self.role, "vars": role_vars}]}]

    def run(self, check: bool, **role_vars: Any) -> PlaybookResult:
        result = run_playbook(self.play(**role_vars), check=check, diff=True)
        assert result.rc == 0, f"{result.stdout}\n{result.stderr}"
        return result

    @staticmethod
    def changed(result: PlaybookResult) -> int:
        return result.stats["localhost"]["changed"]

    def result(self, result: PlaybookResult) -> dict[str, Any]:
        """The role's ``<role>_result`` (the common shape) as the run recorded it."""
        return result.task(self.record_task)["ansible_facts"][self.result_fact]

    def rhythm(self, on_second_apply: Any = None, **role_vars: Any) -> list[PlaybookResult]:
        """Check mode, apply, check mode again, apply again; asserts what each must report.

        ``on_second_apply(mark)`` is called after the second apply with the time (ns) it began.
        """
        first_check = self.run(True, **role_vars)
        assert self.changed(first_check) == 1, first_check.stdout
        assert first_check.task(self.fix_task)["changed"] is True
        applied = self.run(False, **role_vars)
        assert self.changed(applied) == 1, applied.stdout
        second_check = self.run(True, **role_vars)
        assert self.changed(second_check) == 0, second_check.stdout
        mark = time.time_ns()
        again = self.run(False, **role_vars)
        assert self.changed(again) == 0, again.stdout
        assert self.result(again)["findings"] == []
        if on_second_apply is not None:
            on_second_apply(mark)
        return [first_check, applied, second_check, again]


def run_playbook(
    playbook: str | Path | Sequence[Mapping[str, Any]],
    *,
    extra_vars: Mapping[str, Any] | None = None,
    check: bool = False,
    diff: bool = False,
    inventory: str | Path | None = None,
    json_output: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: int = 900,
    args: Sequence[str] = (),
) -> PlaybookResult:
    """Run ansible-playbook on a path, a playbook name (ns.coll.name) or a list of plays."""
    with tempfile.TemporaryDirectory(prefix="permfix-play-") as tmp:
        if isinstance(playbook, (str, Path)):
            target = str(playbook)
        else:
            target = os.path.join(tmp, "play.yml")
            with open(target, "w", encoding="utf-8") as handle:
                json.dump(list(playbook), handle)
        command = [str(VENV_BIN / "ansible-playbook"), target]
        if inventory is not None:
            command += ["-i", str(inventory)]
        if extra_vars:
            vars_file = os.path.join(tmp, "extra_vars.json")
            with open(vars_file, "w", encoding="utf-8") as handle:
                json.dump(dict(extra_vars), handle)
            command += ["-e", f"@{vars_file}"]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        command += list(args)
        run_env = dict(env or {})
        if json_output:
            run_env.setdefault("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json")
            run_env.setdefault("ANSIBLE_LOAD_CALLBACK_PLUGINS", "1")
        proc = subprocess.run(
            command,
            env=ansible_env(run_env),
            cwd=str(cwd or tmp),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    data: dict[str, Any] = {}
    if json_output and proc.stdout.strip():
        start = proc.stdout.find("{")
        if start >= 0:
            try:
                data = json.loads(proc.stdout[start:])
            except json.JSONDecodeError:
                data = {}
    return PlaybookResult(proc.returncode, proc.stdout, proc.stderr, data)


def run_module(
    module: str,
    module_args: Mapping[str, Any] | None = None,
    *,
    check: bool = False,
    diff: bool = False,
    become_user: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run one module on localhost through ansible-playbook and return its result.

    ``module`` may be short (``subid_info``) or fully qualified. The result carries
    ``failed``, ``changed``, ``msg`` and the module's return values, as a task sees them.
    """
    name = module if "." in module else f"permfix.containers.{module}"
    task: dict[str, Any] = {"name": "module under test", name: dict(module_args or {}), "ignore_errors": True}
    if environment:
        task["environment"] = dict(environment)
    play: dict[str, Any] = {"hosts": "localhost", "gather_facts": False, "tasks": [task]}
    if become_user:
        # the user cannot read the venv: run the module with the system Python
        play.update({"become": True, "become_user": become_user, "become_method": "ansible.builtin.su",
                     "vars": {"ansible_python_interpreter": "/usr/bin/python3"}})
    result = run_playbook([play], check=check, diff=diff)
    try:
        return result.task("module under test")
    except KeyError as exc:
        raise AssertionError(f"{name} did not run: rc={result.rc}\n{result.stdout}\n{result.stderr}") from exc


@dataclass
class User:
    """A real local account made for one test."""

    name: str
    uid: int
    gid: int
    home: str


def random_name(prefix: str = "pf") -> str:
    """A short random name usable as a user, container, volume or directory name."""
    return f"{prefix}{secrets.token_hex(4)}"


def create_user(prefix: str = "pft", *, subids: bool = False) -> User:
    """Create a real user with a home directory.

    With ``subids=False`` (the default) no /etc/subuid or /etc/subgid entry is added, so a
    test controls them itself; shadow's useradd would otherwise allocate 65536 of each.
    """
    name = random_name(prefix)
    command = ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group"]
    if not subids:
        command += ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
    subprocess.run(command + [name], check=True, capture_output=True, text=True)
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def delete_user(user: User) -> None:
    """Stop everything the user runs, remove its podman state, its account and home.

    Lines for the user in /etc/subuid and /etc/subgid are removed by userdel itself.
    """
    subprocess.run(["pkill", "-KILL", "-u", user.name], capture_output=True, check=False)
    subprocess.run(["userdel", "--remove", "--force", user.name], capture_output=True, check=False)
    shutil.rmtree(user.home, ignore_errors=True)
    shutil.rmtree(f"/tmp/podman-run-{user.uid}", ignore_errors=True)
    shutil.rmtree(f"/run/user/{user.uid}", ignore_errors=True)


def user_env(user: User) -> dict[str, str]:
    """A login-like environment for ``user`` (what podman needs when run as that user)."""
    runtime_dir = f"/run/user/{user.uid}"
    if not os.path.isdir(runtime_dir):
        os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
        os.chown(runtime_dir, user.uid, user.gid)
    return {
        "HOME": user.home,
        "USER": user.name,
        "LOGNAME": user.name,
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "XDG_RUNTIME_DIR": runtime_dir,
        "LANG": "C.UTF-8",
    }


def run_as(
    user: User, argv: Sequence[str], *, check: bool = True, timeout: int = 300, input_text: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``argv`` as ``user`` from its home directory with a login-like environment."""
    command = ["runuser", "-u", user.name, "--", "env", "-i"]
    command += [f"{key}={value}" for key, value in user_env(user).items()]
    command += list(argv)
    return subprocess.run(
        command, cwd=user.home, capture_output=True, text=True, check=check, timeout=timeout, input=input_text
    )


def podman_import_busybox(user: User | None = None, name: str = IMAGE_BUSYBOX) -> str:
    """Import the busybox image into root's or ``user``'s podman storage (no registry)."""
    argv = ["podman", "import", "--change", 'CMD ["sh"]', str(BUSYBOX_TARBALL), name]
    if user is None:
        subprocess.run(argv, check=True, capture_output=True, text=True)
    else:
        os.chmod(BUSYBOX_TARBALL, 0o644)
        run_as(user, argv)
    return name


def sh(*argv: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a command as root and capture its output as text."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


def staged_collection() -> Path:
    """A copy of this checkout at .../ansible_collections/permfix/containers (for ansible-test).

    ansible-test resolves the working directory, so a symlink will not do. The copy holds the
    files git tracks plus the untracked ones it does not ignore, and is refreshed in place.
    """
    base = CACHE_DIR / "stage" / hashlib.sha1(str(REPO_ROOT).encode()).hexdigest()[:10]
    target = base / "ansible_collections" / "permfix" / "containers"
    target.mkdir(parents=True, exist_ok=True)
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout
    files = [name for name in listing.decode().split("\0") if name and (REPO_ROOT / name).exists()]
    with tempfile.NamedTemporaryFile("w", delete=False, prefix="permfix-stage-") as handle:
        handle.write("\n".join(files) + "\n")
        list_file = handle.name
    try:
        subprocess.run(
            ["rsync", "-a", "--delete", "--delete-excluded", "--exclude", "tests/output",
             f"--files-from={list_file}", f"{REPO_ROOT}/", f"{target}/"],
            check=True, capture_output=True,
        )
        # --files-from does not delete files that vanished from the checkout: prune them.
        wanted = set(files)
        for path in sorted(target.rglob("*"), reverse=True):
            rel = path.relative_to(target).as_posix()
            if rel.startswith("tests/output") or path.is_dir():
                continue
            if rel not in wanted:
                path.unlink()
    finally:
        os.unlink(list_file)
    return target


# --- the report schema ---------------------------------------------------------------------

REPORT_SCHEMA = REPO_ROOT / "meta" / "report.schema.json"


def report_schema_errors(report: Any) -> list[str]:
    """Every way ``report`` (a dict) breaks meta/report.schema.json, as ``at PATH: message`` lines."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(REPORT_SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(report), key=lambda error: list(map(str, error.absolute_path)))
    return [f"at {'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}" for error in errors]


def validate_report(report: Any, where: str = "the report") -> None:
    """Fail (AssertionError) when ``report`` (a dict, or the path of a report.json) does not match
    the schema the collection ships, with every error in the message."""
    if isinstance(report, (str, Path)):
        where = str(report)
        report = json.loads(Path(report).read_text())
    errors = report_schema_errors(report)
    if errors:
        raise AssertionError(
            f"{where} does not match meta/report.schema.json ({len(errors)} errors):\n  " + "\n  ".join(errors[:20])
        )


def report_files(directory: Path) -> list[Path]:
    """Every report.json under ``directory`` (symlinks not followed)."""
    found = []
    for root, _dirs, files in os.walk(directory):
        if "report.json" in files:
            found.append(Path(root) / "report.json")
    return sorted(found)
