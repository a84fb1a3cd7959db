# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration: unprivileged_port(_info) in private network namespaces, with real users and sysctl.

The machine's own net.ipv4.ip_unprivileged_port_start is never changed: every run that may
write it happens in a network namespace of its own (``unshare -n``), entered with nsenter, and
the sysctl configuration is a temporary tree passed through the modules' path options. What
that tree means at boot is checked with the real ``sysctl --system`` in a fresh mount and
network namespace with the tree bind-mounted over the system directories.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import permfix_testlib as lib

KEY = "net.ipv4.ip_unprivileged_port_start"
PROC = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
SYSTEM_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
DROPIN = "99-permfix-unprivileged-port.conf"
BIND_80 = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 80)); print('bound')"


def host_value() -> str:
    return Path(PROC).read_text().strip()


@pytest.fixture(autouse=True)
def machine_value_is_untouched() -> Iterator[None]:
    before = host_value()
    yield
    assert host_value() == before, "the machine's own network namespace value changed"


class Namespace:
    """A long-lived private network namespace (optionally a mount namespace with /proc/sys read-only)."""

    def __init__(self, read_only_proc: bool = False) -> None:
        self.mount = read_only_proc
        script = "ip link set lo up && "
        if read_only_proc:
            script += "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
        script += "echo ready && exec sleep infinity"
        argv = ["unshare", "-n"] + (["-m", "--propagation", "private"] if read_only_proc else []) + ["sh", "-c", script]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        assert os.readlink(f"/proc/{self.proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")

    def prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.proc.pid), "-n"] + (["-m"] if self.mount else []) + ["--"]

    def run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(self.prefix() + list(argv), capture_output=True, text=True, check=check, timeout=300)

    def value(self) -> int:
        return int(self.run(["cat", PROC]).stdout)

    def set_value(self, value: int) -> None:
        self.run(["sh", "-c", f"echo {value} > {PROC}"])

    def user_can_bind_80(self, user: lib.User) -> bool:
        proc = self.run(
            [
                "setpriv",
                f"--reuid={user.uid}",
                f"--regid={user.gid}",
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                BIND_80,
            ],
            check=False,
        )
        if proc.returncode != 0:
            assert "PermissionError" in proc.stderr, proc.stderr
        return proc.returncode == 0

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def netns() -> Iterator[Namespace]:
    ns = Namespace()
    try:
        yield ns
    finally:
        ns.close()


class Tree:
    """A sysctl configuration tree like Debian's, under a temporary root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for directory in SYSTEM_DIRS:
            if directory != "/lib/sysctl.d":
                (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (root / "lib").symlink_to("usr/lib")
        self.write("etc/sysctl.conf", "#\n# /etc/sysctl.conf - Configuration file for setting system variables\n#\n")
        (root / "etc/sysctl.d/99-sysctl.conf").symlink_to("../sysctl.conf")

    @property
    def dirs(self) -> list[str]:
        return [str(self.root / d.lstrip("/")) for d in SYSTEM_DIRS]

    @property
    def conf(self) -> str:
        return str(self.root / "etc/sysctl.conf")

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write(self, relative: str, text: str) -> None:
        self.path(relative).write_bytes(text.encode())

    def snapshot(self) -> dict[str, bytes]:
        found = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(self.root))] = path.read_bytes()
        return found

    def args(self) -> dict[str, Any]:
        return {"sysctl_dirs": self.dirs, "sysctl_conf": self.conf}

    def boot_value(self) -> int:
        """What the real sysctl --system sets, in a fresh namespace, with this tree as the configuration."""
        mounts = []
        for directory in SYSTEM_DIRS:
            real = os.path.realpath(directory)
            if os.path.isdir(real) and (directory == real or not os.path.islink(os.path.dirname(directory))):
                mounts.append(f"mount --bind {shlex.quote(str(self.root / directory.lstrip('/')))} {shlex.quote(real)}")
        mounts.append(f"mount --bind {shlex.quote(self.conf)} /etc/sysctl.conf")
        script = " && ".join(
            mounts + [f"sysctl --system --pattern ip_unprivileged_port_start >&2; cat {PROC}"]
        )
        proc = subprocess.run(
            ["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script],
            capture_output=True, text=True, timeout=120, check=True,
        )
        return int(proc.stdout)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def run_in(
    ns: Namespace, module: str, args: Mapping[str, Any], *, check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """Run one module with ansible-playbook inside ``ns`` (every task forks inside it)."""
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{"name": "module under test", f"permfix.containers.{module}": dict(args), "ignore_errors": True}],
    }
    with tempfile.TemporaryDirectory(prefix="permfix-play-") as tmp:
        path = os.path.join(tmp, "play.yml")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump([play], handle)
        command = (
            ns.prefix()
            + [str(lib.VENV_BIN / "ansible-playbook"), path]
            + (["--check"] if check else [])
            + (["--diff"] if diff else [])
        )
        env = lib.ansible_env({"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"})
        proc = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True, timeout=600, check=False)
    data = json.loads(proc.stdout[proc.stdout.find("{"):]) if "{" in proc.stdout else {}
    return lib.PlaybookResult(proc.returncode, proc.stdout, proc.stderr, data).task("module under test")


def rhythm(ns: Namespace, args: Mapping[str, Any]) -> list[dict[str, Any]]:
    """check (predicts a change), apply (changes), check again, apply again (no change)."""
    results = []
    for check in (True, False, True, False):
        result = run_in(ns, "unprivileged_port", args, check=check, diff=True)
        assert not result.get("failed"), result.get("msg")
        results.append(result)
    assert [r["changed"] for r in results] == [True, True, False, False], [r.get("actions") for r in results]
    assert results[0]["actions"] == results[1]["actions"], "check mode did not predict the real run"
    return results


# ------------------------------------------------------------------ the fix, for real


def test_dropin_lets_an_ordinary_user_bind_80_and_wins_at_boot(netns: Namespace, tree: Tree, make_user) -> None:
    user = make_user("pfup")
    tree.write("usr/lib/sysctl.d/99-zzz-vendor.conf", f"# vendor default\n{KEY} = 1024\n")
    tree.write("usr/lib/sysctl.d/50-other.conf", "net.ipv4.ping_group_range = 1 0\n")
    assert netns.value() == 1024
    assert not netns.user_can_bind_80(user)
    assert tree.boot_value() == 1024
    before = tree.snapshot()

    results = rhythm(netns, {"ports": [80, 8080], "discover": False, **tree.args()})

    check, applied = results[0], results[1]
    assert check["runtime"] == {"path": PROC, "before": 1024, "after": 80, "writable": True}
    dropin = "99-zzz-vendor.permfix-unprivileged-port.conf"
    assert [(Path(c["path"]).name, c["action"]) for c in check["file_changes"]] == [(dropin, "created")]
    assert check["diff"][0]["before"] == "1024\n" and check["diff"][0]["after"] == "80\n"
    assert f"{KEY} = 80" in check["diff"][1]["after"]
    assert applied["persisted"]["before"] == 1024 and applied["persisted"]["after"] == 80
    assert applied["persisted"]["path"].endswith("usr/lib/sysctl.d/99-zzz-vendor.conf")

    assert netns.value() == 80
    assert netns.user_can_bind_80(user)
    assert tree.boot_value() == 80
    after = tree.snapshot()
    assert {k: v for k, v in after.items() if not k.endswith(dropin)} == before, "another file changed"
    assert results[3]["runtime"] == {"path": PROC, "before": 80, "after": 80, "writable": True}


def test_a_later_file_setting_1024_is_found_and_beaten(netns: Namespace, tree: Tree) -> None:
    args = {"ports": [443], "discover": False, **tree.args()}
    first = run_in(netns, "unprivileged_port", args)
    assert first["changed"] and [Path(c["path"]).name for c in first["file_changes"]] == [DROPIN]
    assert tree.boot_value() == 443

    tree.write("etc/sysctl.d/99-zz-hardening.conf", f"{KEY}=1024\n")
    netns.set_value(1024)  # what the next boot would do
    assert tree.boot_value() == 1024
    info = run_in(netns, "unprivileged_port_info", args)
    assert info["persisted"]["path"].endswith("99-zz-hardening.conf") and info["persisted"]["value"] == 1024
    assert [a["winner"] for a in info["assignments"]] == [False, True]
    assert any(f["severity"] == "error" and f["observed"] == {"value": 1024, "port": 443} for f in info["findings"])

    results = rhythm(netns, args)
    assert [(Path(c["path"]).name, c["action"]) for c in results[1]["file_changes"]] == [
        ("99-zz-hardening.permfix-unprivileged-port.conf", "created"),
        (DROPIN, "removed"),
    ]
    assert tree.boot_value() == 443
    assert netns.value() == 443
    assert run_in(netns, "unprivileged_port_info", args)["findings"] == []


def test_in_place_changes_only_the_line_of_sysctl_conf(netns: Namespace, tree: Tree, make_user) -> None:
    user = make_user("pfup")
    original = "# local settings\r\nnet.ipv4.ping_group_range = 1 0\n" f"  {KEY}\t=\t1024   # web wants 80\n# end\n"
    tree.write("etc/sysctl.conf", original)
    snapshot = tree.snapshot()

    refused = run_in(netns, "unprivileged_port", {"ports": [80], "discover": False, **tree.args()})
    assert refused["failed"] and "persist_mode to in_place" in refused["msg"]
    assert tree.snapshot() == snapshot and netns.value() == 1024, "a refused run changed something"

    rhythm(netns, {"ports": [80], "discover": False, "persist_mode": "in_place", **tree.args()})
    assert tree.path("etc/sysctl.conf").read_bytes() == original.replace("\t=\t1024   #", "\t=\t80   #").encode()
    assert tree.path("etc/sysctl.d/99-sysctl.conf").is_symlink()
    assert sorted(tree.snapshot()) == sorted(snapshot)
    assert tree.boot_value() == 80
    assert netns.user_can_bind_80(user)


def test_a_lower_value_is_not_raised_unless_allowed(netns: Namespace, tree: Tree) -> None:
    netns.set_value(22)
    tree.write("etc/sysctl.d/10-ssh.conf", f"{KEY} = 22\n")
    kept = run_in(netns, "unprivileged_port", {"ports": [80], "discover": False, **tree.args()})
    assert not kept["changed"] and netns.value() == 22
    assert any("not raised" in note for note in kept["notes"])
    results = rhythm(netns, {"ports": [80], "discover": False, "allow_raise": True, **tree.args()})
    assert results[1]["runtime"]["after"] == 80 and netns.value() == 80 and tree.boot_value() == 80


def test_read_only_proc_sys_persists_only_and_says_so(tree: Tree) -> None:
    ns = Namespace(read_only_proc=True)
    try:
        assert ns.run(["sh", "-c", f"echo 80 > {PROC}"], check=False).returncode != 0, "/proc/sys is not read-only"
        info = run_in(ns, "unprivileged_port_info", {"ports": [80], "discover": False, **tree.args()})
        assert info["runtime"]["writable"] is False
        assert any(f["id"].startswith("unprivileged_port:read_only") for f in info["findings"])
        results = rhythm(ns, {"ports": [80], "discover": False, **tree.args()})
        assert results[1]["runtime"] == {"path": PROC, "before": 1024, "after": 1024, "writable": False}
        assert any("read-only" in note for note in results[1]["notes"])
        assert ns.value() == 1024
        assert tree.boot_value() == 80
    finally:
        ns.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"value": 70000}, "value must be a number from 0 to 65535"),
        ({"value": "eighty"}, "'value' is of type"),
        ({"value": 40000}, "would overlap net.ipv4.ip_local_port_range"),
        ({"ports": [80, 0]}, "ports must be port numbers from 1 to 65535"),
        ({"ports": ["http"]}, "'ports'"),
        (
            {"ports": [80], "proc_path": "/proc/sys/net/ipv4/no_such_key"},
            "this kernel has no net.ipv4.ip_unprivileged_port_start",
        ),
        ({"ports": [80], "dropin_name": "../../evil.conf"}, "dropin_name must be a plain file name"),
    ],
)
def test_bad_input_gets_a_clear_message_and_changes_nothing(
    netns: Namespace, tree: Tree, args: dict[str, Any], message: str
) -> None:
    tree.write("usr/lib/sysctl.d/50-vendor.conf", f"{KEY} = 1024\n")
    snapshot = tree.snapshot()
    result = run_in(netns, "unprivileged_port", {"discover": False, **tree.args(), **args})
    assert result["failed"], result
    assert message in result["msg"]
    assert "Traceback" not in result.get("module_stderr", "") + str(result.get("exception", ""))
    assert tree.snapshot() == snapshot and netns.value() == 1024


def test_invalid_value_in_a_file_is_reported(tree: Tree) -> None:
    tree.write("etc/sysctl.d/50-local.conf", f"{KEY} = eighty\n")
    result = lib.run_module("unprivileged_port_info", {"discover": False, **tree.args()})
    assert not result.get("failed"), result.get("msg")
    assert [f["id"].split(":")[1] for f in result["findings"]] == ["invalid"]
    assert result["assignments"][0]["valid"] is False and result["persisted"]["default"] is True


# ------------------------------------------------------------------ discovery of real rootless containers


def test_discovers_a_stopped_rootless_podman_container_and_fixes_for_it(
    netns: Namespace, tree: Tree, make_user
) -> None:
    user = make_user("pfup", subids=True)
    lib.podman_import_busybox(user)
    name = lib.random_name("pfweb")
    lib.run_as(
        user, ["podman", "create", "--name", name, "-p", "80:8080", "-p", "8443:8443", lib.IMAGE_BUSYBOX, "sleep", "60"]
    )

    info = lib.run_module("unprivileged_port_info", {**tree.args()})
    assert not info.get("failed"), info.get("msg")
    mine = [p for p in info["needed"]["ports"] if p["user"] == user.name]
    assert sorted((p["container"], p["port"], p["engine"]) for p in mine) == [
        (name, 80, "podman"),
        (name, 8443, "podman"),
    ]
    assert info["needed"]["value"] is not None and info["needed"]["value"] <= 80
    blocked = [(f["severity"], f["user"], f["observed"]["port"]) for f in info["findings"] if f["container"] == name]
    assert blocked == ([("error", user.name, 80)] if info["runtime"]["value"] > 80 else [])

    fixed = run_in(netns, "unprivileged_port", {**tree.args()})
    assert fixed["changed"] and not fixed.get("failed"), fixed.get("msg")
    assert fixed["value"] == fixed["needed"]["value"] <= 80
    assert netns.value() == fixed["value"]
    assert netns.user_can_bind_80(lib.User(user.name, user.uid, user.gid, user.home))
    assert tree.boot_value() == fixed["value"]


# ------------------------------------------------------------------ documentation


@pytest.mark.parametrize("module", ["unprivileged_port", "unprivileged_port_info"])
def test_ansible_doc_shows_the_module_with_examples(module: str) -> None:
    proc = subprocess.run(
        [str(lib.VENV_BIN / "ansible-doc"), "--json", f"permfix.containers.{module}"],
        env=lib.ansible_env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)[f"permfix.containers.{module}"]
    assert f"permfix.containers.{module}:" in doc["examples"]
    assert doc["doc"]["options"] and doc["return"]
