# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the attack suite: scratch areas, fingerprints of what must not change, private
mount namespaces for the walker and for real module runs.

Every attack builds ``tree/`` (what the walk may change) next to ``out/`` (what it must never
change) in a scratch directory under /var/tmp, plants its trap, runs the walker and compares a
fingerprint of ``out/`` (owners, modes and POSIX ACLs of every entry, never following a link)
taken before and after. Mounts are made only inside private mount namespaces, which vanish with
the process that made them: nothing is left mounted on the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shlex
import shutil
import subprocess
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import permfix_testlib as lib

ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")


def fingerprint_entries(top: Path) -> dict[str, tuple]:
    """``rel -> (type and mode, uid, gid, ACL xattrs)`` for ``top`` and everything below it."""
    out: dict[str, tuple] = {"": _state(top)}
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(directory) / name
            out[str(path.relative_to(top))] = _state(path)
    return out


def _state(path: Path) -> tuple:
    st = os.lstat(path)
    acls = []
    if not os.path.islink(path):
        for xattr in ACL_XATTRS:
            try:
                acls.append(os.getxattr(path, xattr, follow_symlinks=False).hex())
            except OSError:
                acls.append("")
    return (st.st_mode, st.st_uid, st.st_gid, tuple(acls))


def fingerprint(top: Path) -> str:
    """One checksum of :func:`fingerprint_entries`."""
    data = json.dumps(sorted(fingerprint_entries(top).items()), default=list).encode()
    return hashlib.sha256(data).hexdigest()


class Area:
    """``tree/`` and ``out/`` in a scratch directory; ``out`` holds files owned by root."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.tree = base / "tree"
        self.out = base / "out"
        self.tree.mkdir()
        self.out.mkdir()
        (self.out / "secret").write_text("s")
        (self.out / "sub").mkdir()
        (self.out / "sub" / "deep").write_text("d")
        self.before = ""

    def seal(self) -> None:
        """Take the fingerprint of ``out`` (after the trap is planted)."""
        self.before = fingerprint(self.out)

    def assert_outside_untouched(self) -> None:
        assert self.before, "seal() was not called"
        now = fingerprint_entries(self.out)
        assert fingerprint(self.out) == self.before, f"something outside the tree changed: {now}"


@pytest.fixture
def area() -> Iterator[Area]:
    with lib.scratch_dir("permfix-attack-") as base:
        made = Area(Path(base))
        yield made
        # the walk must not have changed the scratch directory itself either
        st = os.lstat(base)
        assert (st.st_uid, st.st_gid) == (0, 0)
        subprocess.run(["chattr", "-R", "-i", base], capture_output=True, check=False)
    assert not os.path.exists(made.base)


def in_namespace(function: Callable[[], Any]) -> Any:
    """Run ``function`` in a forked child inside a private mount namespace; return its result
    (exceptions come back as AssertionError with the child's traceback)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's result is what the test checks
        code = 0
        try:
            os.close(read_end)
            os.unshare(os.CLONE_NEWNS)
            subprocess.run(["mount", "--make-rprivate", "/"], check=True)
            try:
                payload = pickle.dumps(("ok", function()))
            except BaseException:  # noqa: BLE001 - sent back to the test
                payload = pickle.dumps(("error", traceback.format_exc()))
            with os.fdopen(write_end, "wb") as handle:
                handle.write(payload)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as handle:
        data = handle.read()
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the namespace child failed"
    kind, value = pickle.loads(data)
    if kind == "error":
        raise AssertionError(f"in the mount namespace:\n{value}")
    return value


def mount_bind(source: Path, target: Path) -> None:
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)


def module_in_namespace(setup: list[list[str]], args: dict[str, Any], check: bool = False,
                        module: str = "path_owner") -> dict[str, Any]:
    """Run ``ansible localhost -m permfix.containers.<module>`` after the ``setup`` commands, all in
    one private mount namespace (``unshare -m --propagation private``); return the module's result."""
    commands = [shlex.join(command) for command in setup]
    ansible = ["ansible", "localhost", "-c", "local", "-m", f"permfix.containers.{module}", "-a", json.dumps(args)]
    if check:
        ansible.append("--check")
    script = " && ".join([*commands, "exec " + shlex.join(ansible)])
    env = lib.ansible_env({"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"})
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    try:
        data = json.loads(proc.stdout)
        return data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"no module result: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}") from exc


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
