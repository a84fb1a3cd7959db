# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The permfix.containers benchmark: ownership scan and fix against GNU find, chown -R and
ansible.builtin.file, the overlayfs copy-up of a no-op fix, and the fleet audit against
``ansible -m ping``, all measured in one run on this machine. Writes docs/benchmarks.md.

Run as root from the checkout (about 20 minutes with the defaults, on a quiet machine):

    .venv/bin/python benchmarks/run.py                       # 100,000 and 1,000,000 entries, 3 repeats, fleet 10 and 20
    .venv/bin/python benchmarks/run.py --sizes 100000 --repeats 1 --fleet 2 --no-doc   # a quick try

What is measured (every figure is the median of ``--repeats`` runs, with min and max):

- trees of N entries (100 files per directory: 99 empty files and the directory itself, 100
  directories per group) under /var/tmp/permfix-bench-*, in three states: 0 % of owners wrong,
  1 % wrong (one file in every directory owned by 0:0) and 100 % wrong (everything 0:0);
- detection: the engine's scan (the code bind_mount_info and path_owner's check mode run)
  against ``find TREE -xdev ( ! -uid U -o ! -gid G )``;
- fix: the engine's fix (path_owner) against ``chown -R U:G``, against
  ``find TREE -xdev ( ! -uid U -o ! -gid G ) -exec chown -h U:G {} +`` and against
  ``ansible.builtin.file`` with ``recurse: true``; the 0 % state is the second, no-op run;
- the engine twice: called directly from /usr/bin/python3 (the interpreter real targets run,
  through the same ``scan``/``fix`` functions the modules call), and through Ansible as
  ``ansible localhost -m permfix.containers.path_owner`` (``--check`` for the scan) minus the
  median of ``ansible localhost -m ansible.builtin.ping`` measured in the same run (both with
  ``ansible_python_interpreter=/usr/bin/python3``); ansible.builtin.file gets the same
  subtraction;
- wall time, user+system CPU of the process and all its waited-for children (``wait4``), peak
  RSS (GNU time's ``%M``; for commands run through ``ansible`` the largest process of the run,
  the controller);
- overlayfs: a pre-populated read-only lower layer owned U:G, an empty upper layer, then a
  no-op fix through the merged directory: bytes (``du -sb``) and entries copied up to the upper
  layer, the engine against chown -R (and find -exec);
- fleet: containers from permfix-test/bookworm (network none) reached with
  community.docker.docker; ``ansible-playbook playbooks/audit.yml`` against
  ``ansible all -m ping`` over the same 10 and 20 hosts (forks = number of hosts).

Everything the benchmark creates (trees, the overlay mount, containers named pfbench-*) is
removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"
DOC = REPO / "docs" / "benchmarks.md"
IMAGE = "permfix-test/bookworm:latest"
TARGET_PYTHON = "/usr/bin/python3"
TIME = "/usr/bin/time"  # GNU time, for the peak RSS of each command

PER_DIR = 100  # entries per leaf directory: 99 files and the directory itself
DIRS_PER_GROUP = 100

ENGINE_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.permfix.containers.plugins.module_utils._engines import walk as o
what, path, uid, gid, workers = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
start = time.perf_counter()
options = o.WalkOptions(refuse_protected=False, workers=workers)
report = (o.scan if what == "scan" else o.fix)(path, o.Target(uid=uid, gid=gid), options)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "counts": report.counts, "complete": report.complete}))
"""


# --------------------------------------------------------------------------------------------
# Measuring


class Sample:
    """One measured run."""

    __slots__ = ("wall", "cpu", "rss_kb", "extra")

    def __init__(self, wall: float, cpu: float, rss_kb: int, extra: dict[str, Any] | None = None) -> None:
        self.wall = wall
        self.cpu = cpu
        self.rss_kb = rss_kb
        self.extra = extra or {}


def measure(argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None,
            ok_codes: tuple[int, ...] = (0,)) -> tuple[Sample, str]:
    """Run ``argv``; return wall time, user+sys CPU (with waited-for children), peak RSS, stdout.

    The command runs under GNU time, which reports its peak RSS (``%M``): a child forked from
    this (larger) process would otherwise inherit this process's RSS in ``ru_maxrss``.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as rss_file:
        start = time.perf_counter()
        proc = subprocess.Popen([TIME, "-f", "%M", "-o", rss_file.name] + list(argv),
                                stdout=out, stderr=err, env=env, cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        rss_text = rss_file.read().strip().splitlines()
    if proc.returncode not in ok_codes:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    rss_kb = int(rss_text[-1]) if rss_text and rss_text[-1].isdigit() else usage.ru_maxrss
    return Sample(wall, usage.ru_utime + usage.ru_stime, rss_kb), stdout


class Results:
    """Samples by key, and the summaries derived from them."""

    def __init__(self) -> None:
        self.samples: dict[str, list[Sample]] = {}

    def add(self, key: str, sample: Sample) -> None:
        self.samples.setdefault(key, []).append(sample)
        print(
            f"  {key:48s} {sample.wall:8.3f} s  cpu {sample.cpu:7.3f} s  rss {sample.rss_kb / 1024:6.1f} MB", flush=True
        )

    def has(self, key: str) -> bool:
        return bool(self.samples.get(key))

    def stat(self, key: str, attr: str = "wall") -> tuple[float, float, float]:
        values = [getattr(sample, attr) for sample in self.samples[key]]
        return statistics.median(values), min(values), max(values)

    def median(self, key: str, attr: str = "wall") -> float:
        return self.stat(key, attr)[0]

    def as_json(self) -> dict[str, Any]:
        return {key: [{"wall": s.wall, "cpu": s.cpu, "rss_kb": s.rss_kb, **s.extra} for s in samples]
                for key, samples in self.samples.items()}


# --------------------------------------------------------------------------------------------
# Environment


def collections_dir() -> str:
    """A directory holding ansible_collections/permfix/containers -> this checkout."""
    digest = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
    base = Path(f"/tmp/permfix-bench-collections-{digest}")  # the benchmark's own: test set-ups recreate theirs
    link = base / "ansible_collections" / "permfix" / "containers"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    return str(base)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_dir(),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_PYTHON_INTERPRETER": TARGET_PYTHON,
        "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
    })
    return env


def machine() -> dict[str, str]:
    def out(argv: Sequence[str]) -> str:
        try:
            return subprocess.run(list(argv), capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "?"

    mem_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} cores (nproc {out(['nproc'])}), {cpu}",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "filesystem": out(["sh", "-c", "df -T /var/tmp | awk 'NR==2 {print $2}'"]),
        "target_python": out([TARGET_PYTHON, "--version"]),
        "controller_python": platform.python_version(),
        "ansible": out([str(VENV_BIN / "ansible"), "--version"]).splitlines()[0]
        if (VENV_BIN / "ansible").exists()
        else "?",
        "find": out(["find", "--version"]).splitlines()[0],
        "chown": out(["chown", "--version"]).splitlines()[0],
        "docker": out(["docker", "version", "--format", "{{.Server.Version}}"]),
        "load": " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3]),
    }


# --------------------------------------------------------------------------------------------
# Trees


class Tree:
    """N entries: groups of leaf directories with 99 files each; 1 % wrong = file f00 of each."""

    def __init__(self, root: str, entries: int, data: bytes = b"") -> None:
        self.root = root
        self.leaves: list[str] = []
        leaves = max(1, round(entries / PER_DIR))
        os.makedirs(root, exist_ok=True)
        for index in range(leaves):
            directory = os.path.join(root, f"g{index // DIRS_PER_GROUP:04d}", f"d{index:05d}")
            os.makedirs(directory)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                for number in range(PER_DIR - 1):
                    fd = os.open(f"f{number:02d}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dir_fd)
                    if data:
                        os.write(fd, data)
                    os.close(fd)
            finally:
                os.close(dir_fd)
            self.leaves.append(directory)
        self.entries = 1 + len(self.leaves) * PER_DIR + (len(self.leaves) + DIRS_PER_GROUP - 1) // DIRS_PER_GROUP
        self.one_percent = len(self.leaves)
        self.state = "new"

    def set_state(self, state: str, uid: int, gid: int) -> None:
        """0, 1 or 100 (% of owners wrong); cheap when only the 1 % files differ."""
        if state == self.state:
            return
        if state == "100":
            subprocess.run(["chown", "-R", "0:0", self.root], check=True)
        elif state == "1":
            if self.state != "0":
                subprocess.run(["chown", "-R", f"{uid}:{gid}", self.root], check=True)
            for directory in self.leaves:
                os.chown(os.path.join(directory, "f00"), 0, 0, follow_symlinks=False)
        elif state == "0":
            if self.state == "1":
                for directory in self.leaves:
                    os.chown(os.path.join(directory, "f00"), uid, gid, follow_symlinks=False)
            else:
                subprocess.run(["chown", "-R", f"{uid}:{gid}", self.root], check=True)
        self.state = state

    def wrong(self, state: str) -> int:
        return {"0": 0, "1": self.one_percent, "100": self.entries}[state]

    def mismatches(self, uid: int, gid: int) -> int:
        proc = subprocess.run(
            ["find", self.root, "-xdev", "(", "!", "-uid", str(uid), "-o", "!", "-gid", str(gid), ")"],
            capture_output=True,
            text=True,
            check=True,
        )
        return len(proc.stdout.splitlines())


# --------------------------------------------------------------------------------------------
# The contenders


class Bench:
    def __init__(self, args: argparse.Namespace, base: str) -> None:
        self.args = args
        self.base = base
        self.uid = args.uid
        self.gid = args.uid
        self.env = ansible_env()
        self.coll = collections_dir()
        self.results = Results()
        self.checks: list[str] = []
        self.errors: list[str] = []

    # -- commands -----------------------------------------------------------------------------

    def find_argv(self, root: str, exec_chown: bool = False) -> list[str]:
        argv = ["find", root, "-xdev", "(", "!", "-uid", str(self.uid), "-o", "!", "-gid", str(self.gid), ")"]
        if exec_chown:
            argv += ["-exec", "chown", "-h", f"{self.uid}:{self.gid}", "{}", "+"]
        return argv

    def engine(self, what: str, root: str, workers: int = 0) -> Sample:
        """The engine in a fresh target Python; ``workers`` 0 is its default (one per usable CPU)."""
        sample, out = measure([TARGET_PYTHON, "-c", ENGINE_CHILD, self.coll, what, root, str(self.uid), str(self.gid),
                               str(workers)])
        data = json.loads(out)
        sample.extra = {"counts": data["counts"], "inner_seconds": data["seconds"]}
        if not data["complete"]:
            raise RuntimeError(f"the engine's {what} of {root} was incomplete: {data}")
        return sample

    def adhoc(self, module: str, module_args: str, check: bool = False) -> tuple[Sample, str]:
        argv = [
            str(VENV_BIN / "ansible"),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            module,
            "-a",
            module_args,
        ]
        if check:
            argv.append("--check")
        return measure(argv, env=self.env, cwd=self.base)

    def path_owner(self, root: str, check: bool) -> Sample:
        module_args = json.dumps({"path": root, "owner": str(self.uid), "group": str(self.gid)})
        sample, out = self.adhoc("permfix.containers.path_owner", module_args, check=check)
        if "FAILED" in out or "UNREACHABLE" in out:
            raise RuntimeError(out[-2000:])
        return sample

    def bind_mount_info(self, root: str, expected: int) -> Sample:
        """bind_mount_info with a declared spec: a denied root makes it scan the whole tree."""
        module_args = json.dumps(
            {
                "engines": [],
                "specs": [{"path": root, "uid": self.uid, "gid": self.gid, "access": "rw"}],
                "allowed_roots": [self.base],
            }
        )
        sample, out = self.adhoc("permfix.containers.bind_mount_info", module_args)
        try:
            result = json.loads(out[out.index("=>") + 2:])
            observed = result["findings"][0]["observed"]
        except (ValueError, KeyError, IndexError):
            raise RuntimeError(f"bind_mount_info did not report the tree: {out[-2000:]}") from None
        if observed.get("mismatched") != expected:
            raise RuntimeError(f"bind_mount_info counted {observed.get('mismatched')} to change, expected {expected}")
        return sample

    def file_recurse(self, root: str) -> Sample:
        module_args = json.dumps({"path": root, "state": "directory", "recurse": True,
                                  "owner": str(self.uid), "group": str(self.gid)})
        sample, out = self.adhoc("ansible.builtin.file", module_args)
        if "FAILED" in out:
            raise RuntimeError(out[-2000:])
        return sample

    def ping(self, key: str) -> None:
        sample, _out = self.adhoc("ansible.builtin.ping", "")
        self.results.add(key, sample)

    # -- one tree ----------------------------------------------------------------------------

    def tree_round(self, tree: Tree, size: int, repeat: int) -> None:
        res = self.results
        uid, gid = self.uid, self.gid
        verify = repeat == 0
        ping_key = f"ping/{size}"
        for state in ("0", "1", "100"):
            tree.set_state(state, uid, gid)
            prefix = f"{size}/{state}"
            self.ping(ping_key)
            # detection (the tree stays as it is)
            res.add(f"{prefix}/find", measure(self.find_argv(tree.root))[0])
            sample = self.engine("scan", tree.root)
            if sample.extra["counts"]["to_change"] != tree.wrong(state):
                raise RuntimeError(
                    f"scan counted {sample.extra['counts']['to_change']} to change, expected {tree.wrong(state)}"
                )
            res.add(f"{prefix}/scan_engine", sample)
            res.add(f"{prefix}/scan_engine1", self.engine("scan", tree.root, workers=1))
            res.add(f"{prefix}/scan_module", self.path_owner(tree.root, check=True))
            if state == "100":  # only a denied root makes bind_mount_info walk the tree
                res.add(f"{prefix}/scan_bind_mount_info", self.bind_mount_info(tree.root, tree.wrong(state)))
            # fixes: each starts from the same state
            fixes: list[tuple[str, Callable[[], Sample]]] = [
                ("fix_engine", lambda: self.engine("fix", tree.root)),
                ("fix_engine1", lambda: self.engine("fix", tree.root, workers=1)),
                ("chown_R", lambda: measure(["chown", "-R", f"{uid}:{gid}", tree.root])[0]),
                ("find_exec", lambda: measure(self.find_argv(tree.root, exec_chown=True))[0]),
                ("fix_module", lambda: self.path_owner(tree.root, check=False)),
            ]
            if not self.args.skip_file_module:
                fixes.append(("file_recurse", lambda: self.file_recurse(tree.root)))
            for name, run in fixes:
                tree.set_state(state, uid, gid)
                sample = run()
                tree.state = "0"
                if name.startswith("fix_engine") and sample.extra["counts"]["changed"] != tree.wrong(state):
                    raise RuntimeError(f"fix changed {sample.extra['counts']['changed']}, expected {tree.wrong(state)}")
                res.add(f"{prefix}/{name}", sample)
                if verify:
                    left = tree.mismatches(uid, gid)
                    if left:
                        raise RuntimeError(f"{name} left {left} entries with the wrong owner in {tree.root}")
                    self.checks.append(f"{size} entries, {state} % wrong: {name} left no wrong owner")

    # -- overlayfs ---------------------------------------------------------------------------

    def overlay(self, entries: int) -> dict[str, Any]:
        top = os.path.join(self.base, "overlay")
        lower, upper, work, merged = (os.path.join(top, name) for name in ("lower", "upper", "work", "merged"))
        print(f"overlayfs: building a lower layer of {entries:,} entries (files of 512 bytes)", flush=True)
        tree = Tree(lower, entries, data=b"x" * 512)
        subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", lower], check=True)
        subprocess.run(["chmod", "a-w", lower], check=True)
        out: dict[str, Any] = {"entries": tree.entries}
        contenders: list[tuple[str, Callable[[], Sample]]] = [
            ("fix_engine", lambda: self.engine("fix", merged)),
            ("find_exec", lambda: measure(self.find_argv(merged, exec_chown=True))[0]),
            ("chown_R", lambda: measure(["chown", "-R", f"{self.uid}:{self.gid}", merged])[0]),
        ]
        for name, run in contenders:
            for path in (upper, work, merged):
                shutil.rmtree(path, ignore_errors=True)
                os.makedirs(path)
            empty = int(
                subprocess.run(["du", "-sb", upper], capture_output=True, text=True, check=True).stdout.split()[0]
            )
            subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                            f"lowerdir={lower},upperdir={upper},workdir={work}", merged], check=True)
            try:
                sample = run()
            finally:
                subprocess.run(["umount", merged], check=True)
            size = int(
                subprocess.run(["du", "-sb", upper], capture_output=True, text=True, check=True).stdout.split()[0]
            )
            count = sum(len(dirs) + len(files) for _d, dirs, files in os.walk(upper))
            out[name] = {"wall": sample.wall, "bytes": size - empty, "entries": count}
            print(
                f"  overlay {name:12s} {sample.wall:7.3f} s  copied up {size - empty:,} bytes, {count:,} entries",
                flush=True,
            )
        shutil.rmtree(top, ignore_errors=True)
        return out

    # -- fleet -------------------------------------------------------------------------------

    def fleet(self, sizes: Sequence[int]) -> dict[str, Any]:
        hosts = max(sizes)
        prefix = f"pfbench-{uuid.uuid4().hex[:8]}"
        names = [f"{prefix}-{index:02d}" for index in range(hosts)]
        created: list[str] = []
        # the round trip the audit makes (one pipelined module task per host), doing nothing
        pings = os.path.join(self.base, "ping-play.yml")
        Path(pings).write_text(json.dumps([{
            "name": "One round trip", "hosts": "all", "gather_facts": False, "vars": {"ansible_pipelining": True},
            "tasks": [{"name": "Ping", "ansible.builtin.ping": {}}],
        }]), encoding="utf-8")
        try:
            waited = 0
            while subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode:
                if waited >= self.args.image_wait:
                    raise RuntimeError(f"the image {IMAGE} does not exist (tests/setup builds it)")
                print(f"waiting for the image {IMAGE} (tests/setup builds it)", flush=True)
                time.sleep(30)
                waited += 30
            for name in names:
                proc = subprocess.run(
                    ["docker", "run", "-d", "--name", name, "--network", "none", IMAGE, "sleep", "infinity"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode:
                    raise RuntimeError(f"docker run {IMAGE} failed: {proc.stderr.strip()}")
                created.append(name)
            for count in sizes:
                inventory = os.path.join(self.base, f"fleet-{count}.ini")
                lines = ["[fleet]"] + [f"h{index:02d} ansible_host={names[index]}" for index in range(count)]
                lines += ["[all:vars]", "ansible_connection=community.docker.docker",
                          f"ansible_python_interpreter={TARGET_PYTHON}"]
                Path(inventory).write_text("\n".join(lines) + "\n", encoding="utf-8")
                report_dir = os.path.join(self.base, f"report-{count}")
                for _repeat in range(self.args.repeats):
                    sample, _out = measure(
                        [
                            str(VENV_BIN / "ansible"),
                            "all",
                            "-i",
                            inventory,
                            "-m",
                            "ansible.builtin.ping",
                            "-f",
                            str(count),
                        ],
                        env=self.env,
                        cwd=self.base,
                    )
                    self.results.add(f"fleet/{count}/ping", sample)
                    sample, _out = measure(
                        [str(VENV_BIN / "ansible-playbook"), pings, "-i", inventory, "-f", str(count)],
                        env=self.env,
                        cwd=self.base,
                    )
                    self.results.add(f"fleet/{count}/ping_play", sample)
                    sample, _out = measure(
                        [
                            str(VENV_BIN / "ansible-playbook"),
                            str(REPO / "playbooks" / "audit.yml"),
                            "-i",
                            inventory,
                            "-f",
                            str(count),
                            "-e",
                            f"permfix_report_dir={report_dir}",
                        ],
                        env=self.env,
                        cwd=self.base,
                    )
                    report = json.loads(Path(report_dir, "report.json").read_text(encoding="utf-8"))
                    reachable = sum(1 for entry in report["hosts"].values() if entry.get("reachable"))
                    if reachable != count:
                        raise RuntimeError(
                            f"the audit reached {reachable} of {count} hosts: {json.dumps(report)[:2000]}"
                        )
                    self.results.add(f"fleet/{count}/audit", sample)
        finally:
            for name in created:
                subprocess.run(["docker", "rm", "-f", name], check=False, stdout=subprocess.DEVNULL)
        return {"hosts": list(sizes)}


# --------------------------------------------------------------------------------------------
# The report


def fmt(triple: tuple[float, float, float]) -> str:
    med, low, high = triple
    return f"{med:.2f} ({low:.2f}-{high:.2f})"


def write_doc(path: Path, info: dict[str, str], args: argparse.Namespace, bench: Bench,
              sizes: Sequence[int], trees: dict[int, int], overlay: dict[str, Any] | None) -> str:
    res = bench.results
    lines: list[str] = []
    add = lines.append
    add("# Benchmarks")
    add("")
    add("Generated by `benchmarks/run.py` (see its docstring for every option); the analysis at the end is")
    add("`benchmarks/analysis.md`. Re-run on a quiet machine: `.venv/bin/python benchmarks/run.py` as root.")
    add("")
    add("## Machine")
    add("")
    for key in ("date", "cpu", "memory", "kernel", "os", "filesystem", "target_python", "controller_python",
                "ansible", "find", "chown", "docker", "load"):
        add(f"- {key.replace('_', ' ')}: {info.get(key, '?')}")
    add(f"- command: `{' '.join(['benchmarks/run.py'] + sys.argv[1:])}` (repeats {args.repeats})")
    add("")
    add("## Method")
    add("")
    add(
        f"- Trees under /var/tmp/permfix-bench-* (ext4, warm page cache): "
        f"leaf directories of {PER_DIR - 1} empty files,"
    )
    add(f"  {DIRS_PER_GROUP} leaf directories per group. Wanted owner {args.uid}:{args.uid}. States: 0 % wrong")
    add("  (everything right: the second, no-op run), 1 % wrong (file f00 of every directory is 0:0),")
    add("  100 % wrong (`chown -R 0:0` first). Every fix starts from the same state (re-created untimed).")
    add("- Each figure: median of the repeats, then (min-max). Wall seconds unless marked CPU (user+system")
    add("  of the process and its children, from `wait4`). Peak RSS: GNU time's `%M` of the command (for")
    add("  `ansible` commands the largest process, the controller). Contenders run interleaved in every repeat.")
    add("- `engine`: `_ownership.scan`/`_ownership.fix` (the functions bind_mount_info, path_owner and")
    add(f"  volume_owner call) in a fresh `{TARGET_PYTHON}` ({info.get('target_python')}), start-up included,")
    add("  with its default `workers` (one process per usable CPU, at most 4; helpers start after 4,096 entries),")
    add("  and again in one process (`workers=1`). Wall time is what a user waits; the CPU column adds up every")
    add("  process, so it shows what the helpers cost.")
    add("- `module`: `ansible localhost -m permfix.containers.path_owner` (`--check` for the scan) minus the median")
    add("  of `ansible localhost -m ansible.builtin.ping` of the same run and tree size (both on")
    add("  `/usr/bin/python3`, connection local): what is left is the module's own cost (AnsiballZ")
    add("  unpacking, argument parsing, the walk, JSON out). `ansible.builtin.file` gets the same subtraction.")
    add("- `find`: `find TREE -xdev ( ! -uid U -o ! -gid G )`; `find -exec`: the same with")
    add("  `-exec chown -h U:G {} +`; `chown -R`: `chown -R U:G TREE` (GNU coreutils).")
    add("- Correctness is checked, not assumed: every engine scan/fix must count exactly the wrong entries,")
    add("  and after every fix of the first repeat `find` must find no wrong owner left.")
    add("")
    for size in sizes:
        ping = res.median(f"ping/{size}")
        add(f"## {trees[size]:,} entries")
        add("")
        add(f"`ansible localhost -m ping` (subtracted from module rows): {fmt(res.stat(f'ping/{size}'))} s wall, "
            f"{res.median(f'ping/{size}', 'cpu'):.2f} s CPU")
        add("")
        add("| contender | 0 % wrong (no-op) | 1 % wrong | 100 % wrong | CPU at 100 % | peak RSS MB |")
        add("|---|---|---|---|---|---|")
        rows = [
            ("find (detection)", "find", False),
            ("engine scan", "scan_engine", False),
            ("engine scan, one process", "scan_engine1", False),
            ("path_owner --check (module)", "scan_module", True),
            ("bind_mount_info, root denied (module)", "scan_bind_mount_info", True),
            ("engine fix", "fix_engine", False),
            ("engine fix, one process", "fix_engine1", False),
            ("path_owner (module)", "fix_module", True),
            ("chown -R", "chown_R", False),
            ("find -exec chown", "find_exec", False),
            ("ansible.builtin.file recurse", "file_recurse", True),
        ]
        for label, key, minus in rows:
            states = [state for state in ("0", "1", "100") if res.has(f"{size}/{state}/{key}")]
            if not states:
                continue
            cells = []
            for state in ("0", "1", "100"):
                if state not in states:
                    cells.append("-")
                    continue
                med, low, high = res.stat(f"{size}/{state}/{key}")
                if minus:
                    med, low, high = med - ping, low - ping, high - ping
                cells.append(fmt((med, low, high)))
            cpu = res.median(f"{size}/100/{key}", "cpu") - (res.median(f"ping/{size}", "cpu") if minus else 0.0)
            rss = max(s.rss_kb for state in states for s in res.samples[f"{size}/{state}/{key}"]) / 1024
            rss_text = f"{rss:.0f}" + (" (controller)" if minus else "")
            add(f"| {label} | {' | '.join(cells)} | {cpu:.2f} | {rss_text} |")
        add("")
    # targets at the largest size
    size = max(sizes)
    ping = res.median(f"ping/{size}")

    def m(state: str, key: str, minus: bool = False) -> float:
        return res.median(f"{size}/{state}/{key}") - (ping if minus else 0.0)

    targets: list[tuple[str, float, str, bool]] = []
    floors: list[tuple[str, float]] = []

    def target(text: str, value: float, limit: float, below: bool = True) -> None:
        met = value <= limit if below else value >= limit
        targets.append((text, value, f"{'<=' if below else '>='} {limit}", met))

    target("scan (1 % wrong) / find, engine", m("1", "scan_engine") / m("1", "find"), 1.3)
    target("scan (1 % wrong) / find, module", m("1", "scan_module", True) / m("1", "find"), 1.3)
    target("scan (100 % wrong) / find, engine", m("100", "scan_engine") / m("100", "find"), 1.3)
    target(
        "scan (100 % wrong) / find, bind_mount_info module",
        m("100", "scan_bind_mount_info", True) / m("100", "find"),
        1.3,
    )
    target("no-op fix / find, engine", m("0", "fix_engine") / m("0", "find"), 1.3)
    target("no-op fix / find, module", m("0", "fix_module", True) / m("0", "find"), 1.3)
    target("fix 100 % wrong / chown -R, engine", m("100", "fix_engine") / m("100", "chown_R"), 1.2)
    target("fix 100 % wrong / chown -R, module", m("100", "fix_module", True) / m("100", "chown_R"), 1.2)
    target("fix 1 % wrong / chown -R, engine", m("1", "fix_engine") / m("1", "chown_R"), 0.5)
    target("fix 1 % wrong / chown -R, module", m("1", "fix_module", True) / m("1", "chown_R"), 0.5)
    floors.append(
        ("find (stat every entry) / chown -R (chown every entry), 1 % wrong", m("1", "find") / m("1", "chown_R"))
    )
    floors.append(("find / chown -R, 100 % wrong", m("100", "find") / m("100", "chown_R")))
    floors.append(("(find + chown -R) / chown -R, 100 % wrong: stat and change every entry, with no interpreter",
                   (m("100", "find") + m("100", "chown_R")) / m("100", "chown_R")))
    floors.append(("find -exec chown / chown -R, 100 % wrong", m("100", "find_exec") / m("100", "chown_R")))
    if res.has(f"{size}/1/scan_engine1"):
        floors.append(("engine scan in one process / find, 1 % wrong", m("1", "scan_engine1") / m("1", "find")))
        floors.append(
            ("engine fix in one process / chown -R, 100 % wrong", m("100", "fix_engine1") / m("100", "chown_R"))
        )
        floors.append(("engine fix in one process / chown -R, 1 % wrong", m("1", "fix_engine1") / m("1", "chown_R")))
        floors.append(("engine fix, CPU seconds of all its processes / of chown -R, 100 % wrong",
                       res.median(f"{size}/100/fix_engine", "cpu") / res.median(f"{size}/100/chown_R", "cpu")))
    if res.has(f"{size}/0/file_recurse"):
        for state in ("0", "1", "100"):
            target(f"ansible.builtin.file / path_owner module, {state} % wrong (both minus ping)",
                   m(state, "file_recurse", True) / m(state, "fix_module", True), 5.0, below=False)
    rss = max(s.rss_kb for key, samples in res.samples.items() if "_engine" in key for s in samples) / 1024
    target("engine peak RSS, MB (any size)", rss, 100.0)
    if overlay:
        target("overlayfs: bytes copied up by the engine's no-op fix", float(overlay["fix_engine"]["bytes"]), 0.0)
    fleet_sizes = sorted(
        {
            int(key.split("/")[1])
            for key in res.samples
            if key.startswith("fleet/")
            and all(res.has(f"fleet/{key.split('/')[1]}/{what}") for what in ("ping", "ping_play", "audit"))
        }
    )
    for hosts in fleet_sizes:
        target(f"fleet audit / ansible -m ping, {hosts} hosts",
               res.median(f"fleet/{hosts}/audit") / res.median(f"fleet/{hosts}/ping"), 2.0)
    add(f"## Targets ({trees[size]:,} entries; ratios of medians from this run)")
    add("")
    add("| target | ratio | wanted | met |")
    add("|---|---|---|---|")
    for text, value, wanted, met in targets:
        add(f"| {text} | {value:.2f} | {wanted} | {'yes' if met else '**no**'} |")
    add("")
    add("What C tools pay for the same system calls (the floor any tool that reads owners first sits on),")
    add("and the engine in one process:")
    add("")
    add("| ratio | value |")
    add("|---|---|")
    for text, value in floors:
        add(f"| {text} | {value:.2f} |")
    add("")
    if bench.errors:
        add("Parts that failed in this run: " + "; ".join(bench.errors))
        add("")
    if overlay:
        add(f"## overlayfs: no-op fix of {overlay['entries']:,} entries through the merged directory")
        add("")
        add("Lower layer pre-populated and owned by the wanted owner (files of 512 bytes), empty upper layer,")
        add("one fresh mount per contender; copied up = `du -sb upper` minus the empty upper, and its entries.")
        add("")
        add("| contender | wall s | bytes copied up | entries copied up |")
        add("|---|---|---|---|")
        for name, label in (("fix_engine", "engine fix"), ("find_exec", "find -exec chown"), ("chown_R", "chown -R")):
            data = overlay[name]
            add(f"| {label} | {data['wall']:.2f} | {data['bytes']:,} | {data['entries']:,} |")
        add("")
    if fleet_sizes:
        add("## Fleet: `playbooks/audit.yml` against `ansible all -m ping`")
        add("")
        add(f"Hosts are containers from `{IMAGE}` (network none) reached with community.docker.docker,")
        add("`/usr/bin/python3` on the hosts, forks = hosts. The audit makes one module call per host")
        add("(permfix.containers.audit_info, pipelined, every detection) and writes report.json and report.md on the")
        add("controller.")
        add("")
        add("`ping play`: `ansible-playbook` with one pipelined `ansible.builtin.ping` task over the same hosts: the")
        add("audit's one round trip with a module that does nothing, and ansible-playbook's own start-up.")
        add("")
        add(
            "| hosts | ansible -m ping s | ping play s | audit s | audit / ping | audit / ping play "
            "| CPU s: ping, ping play, audit |"
        )
        add("|---|---|---|---|---|---|---|")
        for hosts in fleet_sizes:
            key = f"fleet/{hosts}"
            add(
                f"| {hosts} | {fmt(res.stat(f'{key}/ping'))} | {fmt(res.stat(f'{key}/ping_play'))} "
                f"| {fmt(res.stat(f'{key}/audit'))} | "
                f"{res.median(f'{key}/audit') / res.median(f'{key}/ping'):.2f} | "
                f"{res.median(f'{key}/audit') / res.median(f'{key}/ping_play'):.2f} | "
                f"{res.median(f'{key}/ping', 'cpu'):.2f}, {res.median(f'{key}/ping_play', 'cpu'):.2f}, "
                f"{res.median(f'{key}/audit', 'cpu'):.2f} |"
            )
        add("")
    if bench.checks:
        add(f"Correctness checks passed in this run: {len(bench.checks)} (every fix left no wrong owner).")
        add("")
    if ANALYSIS.exists():
        add(ANALYSIS.read_text(encoding="utf-8").rstrip())
        add("")
    text = "\n".join(lines)
    if not args.no_doc:
        path.write_text(text, encoding="utf-8")
    return text


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="tree sizes in entries, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uid", type=int, default=4242, help="the wanted owner and group (numeric)")
    parser.add_argument("--overlay-entries", type=int, default=100000, help="size of the overlayfs tree (0: skip)")
    parser.add_argument("--fleet", default="10,20", help="fleet sizes in hosts, comma-separated (empty: skip)")
    parser.add_argument("--skip-file-module", action="store_true", help="leave out ansible.builtin.file (slow)")
    parser.add_argument("--image-wait", type=int, default=300, help="seconds to wait for the fleet image to exist")
    parser.add_argument("--doc", default=str(DOC), help="where to write the report (docs/benchmarks.md)")
    parser.add_argument("--no-doc", action="store_true", help="print the report instead of writing it")
    parser.add_argument("--json", help="also write every sample to this JSON file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the benchmark changes owners, mounts overlayfs and starts containers", file=sys.stderr)
        return 2
    sizes = [int(value) for value in args.sizes.split(",") if value]
    fleet_sizes = [int(value) for value in args.fleet.split(",") if value]
    info = machine()
    print(json.dumps(info, indent=1), flush=True)
    base = tempfile.mkdtemp(prefix="permfix-bench-", dir="/var/tmp")
    bench = Bench(args, base)
    trees: dict[int, int] = {}
    overlay = None
    try:
        for size in sizes:
            started = time.perf_counter()
            tree = Tree(os.path.join(base, f"tree-{size}"), size)
            trees[size] = tree.entries
            print(f"tree of {tree.entries:,} entries built in {time.perf_counter() - started:.1f} s", flush=True)
            measure(bench.find_argv(tree.root))  # warm the cache
            for repeat in range(args.repeats):
                print(f"{size:,} entries, repeat {repeat + 1}/{args.repeats}", flush=True)
                bench.tree_round(tree, size, repeat)
            shutil.rmtree(tree.root)
        if args.overlay_entries:
            try:
                overlay = bench.overlay(args.overlay_entries)
            except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                print(f"overlayfs part failed: {exc}", file=sys.stderr)
                bench.errors.append(f"overlayfs: {exc}")
        if fleet_sizes:
            try:
                bench.fleet(fleet_sizes)
            except (OSError, RuntimeError, subprocess.CalledProcessError, ValueError) as exc:
                print(f"fleet part failed: {exc}", file=sys.stderr)
                bench.errors.append(f"fleet: {exc}")
    finally:
        merged = os.path.join(base, "overlay", "merged")
        if os.path.ismount(merged):
            subprocess.run(["umount", merged], check=False)
        shutil.rmtree(base, ignore_errors=True)
    info["load"] = (
        f"{info['load']} at the start, "
        + " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
        + " at the end (1, 5, 15 min; the end includes the fleet part's own forks)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "samples": bench.results.as_json()}, indent=1),
                                   encoding="utf-8")
    text = write_doc(Path(args.doc), info, args, bench, sizes, trees, overlay)
    if args.no_doc:
        print(text)
    else:
        print(f"wrote {args.doc}")
    return 0


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the clean-up in main()'s finally


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
