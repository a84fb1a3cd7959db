# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attacks on the sysctl side of unprivileged_port(_info): malformed files and options, real modules.

Every case builds a Debian-like sysctl tree in a scratch directory and runs the real modules
through ansible-playbook inside a private network namespace (``unshare -n``, entered with
nsenter), so the runtime value they write is the namespace's own. The truth they are held to
is the real ``sysctl --system``, run in a fresh mount and network namespace with the tree
bind-mounted over the system directories: the value the modules call persisted must be the
value it sets, the fix must make it 80, and every file but the chosen drop-in stays byte-identical.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import permfix_testlib as lib

KEY = "net.ipv4.ip_unprivileged_port_start"
PROC = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
SYSTEM_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
DROPIN_SUFFIX = "permfix-unprivileged-port.conf"


@pytest.fixture(autouse=True)
def machine_value_is_untouched() -> Iterator[None]:
    before = Path(PROC).read_text()
    yield
    assert Path(PROC).read_text() == before, "the machine's own network namespace value changed"


class Namespace:
    """A long-lived private network namespace that the modules run in."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["unshare", "-n", "sh", "-c", "echo ready && exec sleep infinity"],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"
        assert os.readlink(f"/proc/{self.proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")

    def prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.proc.pid), "-n", "--"]

    def value(self) -> int:
        return int(subprocess.run(self.prefix() + ["cat", PROC], capture_output=True, text=True, check=True).stdout)

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
    """A sysctl tree like Debian's in a scratch directory."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        for directory in SYSTEM_DIRS:
            if directory != "/lib/sysctl.d":
                (self.root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (self.root / "lib").symlink_to("usr/lib")
        self.write("etc/sysctl.conf", b"#\n# /etc/sysctl.conf - Configuration file for setting system variables\n#\n")
        (self.root / "etc/sysctl.d/99-sysctl.conf").symlink_to("../sysctl.conf")

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write(self, relative: str, data: bytes) -> None:
        self.path(relative).write_bytes(data)

    def args(self) -> dict[str, Any]:
        return {
            "sysctl_dirs": [str(self.root / d.lstrip("/")) for d in SYSTEM_DIRS],
            "sysctl_conf": str(self.root / "etc/sysctl.conf"),
            "discover": False,
        }

    def snapshot(self) -> dict[str, tuple[str, bytes]]:
        """Every entry, byte for byte: a file's bytes, a link's target, or a directory."""
        found: dict[str, tuple[str, bytes]] = {}
        for path in sorted(self.root.rglob("*")):
            name = str(path.relative_to(self.root))
            if path.is_symlink():
                found[name] = ("link", os.fsencode(os.readlink(path)))
            elif path.is_dir():
                found[name] = ("dir", b"")
            else:
                found[name] = ("file", path.read_bytes())
        return found

    def boot_value(self) -> int:
        """What the real sysctl --system sets in a fresh namespace with this tree as the configuration."""
        mounts = []
        for directory in SYSTEM_DIRS:
            real = os.path.realpath(directory)
            if os.path.isdir(real) and (directory == real or not os.path.islink(os.path.dirname(directory))):
                mounts.append(f"mount --bind {shlex.quote(str(self.root / directory.lstrip('/')))} {shlex.quote(real)}")
        mounts.append(f"mount --bind {shlex.quote(str(self.root / 'etc/sysctl.conf'))} /etc/sysctl.conf")
        script = " && ".join(mounts + [f"sysctl -q --system >/dev/null 2>&1; cat {PROC}"])
        proc = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script],
                              capture_output=True, text=True, timeout=120, check=True)
        return int(proc.stdout)


@pytest.fixture
def tree() -> Iterator[Tree]:
    with lib.scratch_dir("pf-attack-sysctl-") as root:
        yield Tree(root)


def run_in(ns: Namespace, module: str, args: Mapping[str, Any], *, check: bool = False,
           diff: bool = False) -> dict[str, Any]:
    """One module run by ansible-playbook inside ``ns``; the working directory is a fresh scratch one."""
    play = {"hosts": "localhost", "gather_facts": False,
            "tasks": [{"name": "module under test", f"permfix.containers.{module}": dict(args), "ignore_errors": True}]}
    with tempfile.TemporaryDirectory(prefix="permfix-play-", dir="/var/tmp") as tmp:
        path = os.path.join(tmp, "play.yml")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump([play], handle)
        command = ns.prefix() + [str(lib.VENV_BIN / "ansible-playbook"), path] + (["--check"] if check else []) + (
            ["--diff"] if diff else [])
        env = lib.ansible_env({"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"})
        proc = subprocess.run(command, env=env, cwd=tmp, capture_output=True, text=True, timeout=600, check=False)
        left = sorted(set(os.listdir(tmp)) - {"play.yml"})
    assert left == [], f"the module wrote into its working directory: {left}"
    data = json.loads(proc.stdout[proc.stdout.find("{"):]) if "{" in proc.stdout else {}
    result = lib.PlaybookResult(proc.returncode, proc.stdout, proc.stderr, data).task("module under test")
    text = json.dumps(result)
    assert "MODULE FAILURE" not in text and "Traceback" not in text, result
    assert result.get("exception") in (None, "(traceback unavailable)"), result
    return result


# ------------------------------------------------------------------ malformed files


def nul_bytes(tree: Tree) -> None:
    tree.write("etc/sysctl.d/50-nul.conf", f"{KEY} = 90\0 = 70\n# x\0\n\0{KEY} = 71\n".encode())


def non_utf8(tree: Tree) -> None:
    tree.write("etc/sysctl.d/50-latin1.conf", b"# caf\xe9 \xff\xfe\n" + f"{KEY} = 91 \xff\n".encode("latin-1")
               + f"{KEY} = 0x5a\xe9\n".encode("latin-1"))


def comment_with_cr(tree: Tree) -> None:  # issue 13 item 7, as reported
    tree.write("etc/sysctl.d/50-ports.conf", f"# old\r{KEY} = 80\n".encode())


def other_breaks(tree: Tree) -> None:
    tree.write("etc/sysctl.d/50-breaks.conf", "".join(
        f"# old{breaker}{KEY} = {70 + index}\n" for index, breaker in enumerate(["\v", "\f", "\x1c", "\u2028"])
    ).encode() + f"{KEY} = 93\u2029{KEY} = 72\n\x0b{KEY}\x0c=\x0b94\r\n".encode())


def very_long_lines(tree: Tree) -> None:
    tree.write("etc/sysctl.d/50-long.conf", b"# " + b"x" * 1_000_000 + b"\n" + f"{KEY} = 95\n".encode()
               + f"{KEY} = {'9' * 100_000}\n".encode() + f"{KEY} = {'0' * 100_000}96\n".encode())


def directory_named_conf(tree: Tree) -> None:
    tree.path("etc/sysctl.d/60-dir.conf").mkdir()
    tree.write("etc/sysctl.d/50-a.conf", f"{KEY} = 97\n".encode())


def link_loop_and_dangling_link(tree: Tree) -> None:
    tree.path("etc/sysctl.d/60-loop.conf").symlink_to("60-loop.conf")
    tree.path("etc/sysctl.d/61-dangling.conf").symlink_to("/nonexistent/permfix.conf")
    # a dangling link in /etc still hides the vendor file of the same name
    tree.write("usr/lib/sysctl.d/61-dangling.conf", f"{KEY} = 70\n".encode())
    tree.write("usr/lib/sysctl.d/50-vendor.conf", f"{KEY} = 98\n".encode())


def link_to_a_vendor_file(tree: Tree) -> None:  # issue 13 item 14
    tree.write("usr/lib/sysctl.d/50-vendor.conf", f"# vendor\n{KEY} = 1024\n".encode())
    tree.path("etc/sysctl.d/50-vendor.conf").symlink_to("../../usr/lib/sysctl.d/50-vendor.conf")


def above_the_local_port_range(tree: Tree) -> None:  # issue 13 item 8
    tree.write("etc/sysctl.d/50-high.conf", f"{KEY} = 40000\n".encode())


CASES: dict[str, Callable[[Tree], None]] = {
    function.__name__: function
    for function in (nul_bytes, non_utf8, comment_with_cr, other_breaks, very_long_lines, directory_named_conf,
                     link_loop_and_dangling_link, link_to_a_vendor_file, above_the_local_port_range)
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_files_are_read_truthfully_and_only_the_dropin_changes(
    netns: Namespace, tree: Tree, case: str
) -> None:
    CASES[case](tree)
    boot = tree.boot_value()
    info = run_in(netns, "unprivileged_port_info", {"ports": [80], **tree.args()})
    assert not info.get("failed"), info.get("msg")
    assert info["persisted"]["value"] == boot, (info["persisted"], info["assignments"])
    before = tree.snapshot()

    mode = "in_place" if case == "link_to_a_vendor_file" else "dropin"
    fixed = run_in(netns, "unprivileged_port", {"ports": [80], "persist_mode": mode, **tree.args()})
    assert not fixed.get("failed"), fixed.get("msg")
    assert fixed["persisted"]["before"] == boot
    assert fixed["changed"] and fixed["persisted"]["after"] == 80
    assert tree.boot_value() == 80, "the module says 80 is persisted, sysctl --system disagrees"
    assert netns.value() == 80
    after = tree.snapshot()
    written = sorted(set(after) - set(before))
    assert len(written) == 1 and written[0].startswith("etc/sysctl.d/") and written[0].endswith(".conf"), written
    assert {name: entry for name, entry in after.items() if name not in written} == before, "another file changed"


def test_a_value_refused_at_boot_is_reported_as_refused(tree: Tree, netns: Namespace) -> None:
    above_the_local_port_range(tree)
    info = run_in(netns, "unprivileged_port_info", {"ports": [80], **tree.args()})
    assert info["persisted"] == {"value": 1024, "path": None, "line": None, "default": True}
    [assignment] = info["assignments"]
    assert assignment["value"] == 40000 and assignment["winner"] is False and "32768" in assignment["refused"]
    assert any(f["id"].startswith("unprivileged_port:refused:") for f in info["findings"]), info["findings"]


# ------------------------------------------------------------------ options naming files


@pytest.mark.parametrize("module", ["unprivileged_port", "unprivileged_port_info"])
@pytest.mark.parametrize(
    ("dirs", "message"),
    [
        (lambda tree: [str(tree.path("etc/sysctl.d")) + "\0x"], "must not contain a NUL byte"),  # item 10
        (lambda tree: [""], "must be an absolute path, not an empty string"),  # item 15
        (lambda tree: ["etc/sysctl.d"], "must be an absolute path (starting with /)"),
        (lambda tree: [str(tree.path("etc/sysctl.d")), {"a": 1}], "sysctl_dirs[1] must be an absolute path"),
    ],
)
def test_bad_sysctl_dirs_are_refused_with_a_sentence(
    netns: Namespace, tree: Tree, module: str, dirs: Callable[[Tree], list[Any]], message: str
) -> None:
    before = tree.snapshot()
    result = run_in(netns, module, {"ports": [80], **tree.args(), "sysctl_dirs": dirs(tree)})
    assert result.get("failed") and message in result["msg"], result
    assert tree.snapshot() == before and netns.value() == 1024


def test_diff_is_returned_only_in_diff_mode(netns: Namespace, tree: Tree) -> None:
    plain = run_in(netns, "unprivileged_port", {"ports": [80], **tree.args()}, check=True)
    assert plain["changed"] and "diff" not in plain, sorted(plain)
    with_diff = run_in(netns, "unprivileged_port", {"ports": [80], **tree.args()}, check=True, diff=True)
    assert with_diff["diff"][0]["after"] == "80\n"
