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
  ``ansible all -m ping`` over the same 10 and 20 hosts (forks = number of hosts);
- busy host (``--busy 0,50,200,500``): that many Docker containers of permfix-test/busybox
  (``--user 1000:1000``, one bind mount each, even ones running), 100 named volumes, 20 rootful
  podman containers and two rootless podman users (made for the run) with 20 containers each
  (``--network none``); ``audit_info``'s module time minus a same-run ``ansible -m ping``
  against ``docker inspect`` of every container (CLI) plus ``podman ps -a --format json`` and
  ``podman inspect`` per user, the cost per added container, the podman part alone
  (``bind_mount_info`` per podman scope), and the account-file reads of the same containers as
  a named user through the layer directories against the archive endpoint. The busy part
  alone: ``--sizes '' --fleet '' --overlay-entries 0``; it then replaces only its own section of
  docs/benchmarks.md (and docs/benchmarks-busy-host.png; matplotlib from
  benchmarks/requirements.txt). Run it under ``flock /tmp/permfix-engine.lock``.

Everything the benchmark creates (trees, the overlay mount, containers named pfbench-* and
pfbusy-*, volumes, podman images, the rootless users) is removed at the end, also after an
error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import pwd
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
IMAGE_BUSYBOX = "permfix-test/busybox:latest"
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
# A busy host: hundreds of Docker containers, named volumes, rootless podman users

READS_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.permfix.containers.plugins.module_utils._engines import containers as c, docker as d
engine = d.connect(timeout=60)
ours = [item for item in c.docker_containers(engine, read_accounts=False) if item.name.startswith(sys.argv[2])]
for item in ours:
    item.user = "app"  # a named user: passwd and group are needed
out = {"containers": len(ours)}
for mode in ("auto", "engine"):
    for item in ours:
        item.accounts = None
    reader = c.AccountFiles(lambda item, path: engine.read_file(item.id, path), c.ENGINE_WORKERS, mode=mode)
    start = time.perf_counter()
    reader.complete(ours)
    out[mode] = {"seconds": time.perf_counter() - start, "stats": reader.stats,
                 "resolved": sum(1 for item in ours if item.accounts is not None and item.accounts.user("app"))}
print(json.dumps(out))
"""


class BusyHost:
    """Docker containers of one image (numeric user, one bind mount each, half running), named
    volumes, rootful podman containers and rootless podman users with containers of their own."""

    def __init__(self, bench: Bench, volumes: int, users: int, per_user: int, rootful: int) -> None:
        self.bench = bench
        self.prefix = f"pfbusy-{uuid.uuid4().hex[:6]}"
        self.root = os.path.join(bench.base, "busy")
        self.docker: list[str] = []
        self.volumes: list[str] = []
        self.podman: list[str] = []
        self.users: list[str] = []
        self.counts = (volumes, users, per_user, rootful)
        self.podman_image = f"localhost/{self.prefix}-busybox"

    def _dir(self, name: str, uid: int, gid: int) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
        return path

    def _podman(self, user: str | None, argv: Sequence[str]) -> subprocess.CompletedProcess:
        command = ["podman", *argv]
        if user is not None:
            entry = pwd.getpwnam(user)
            command = ["runuser", "-u", user, "--", "env", "-i", f"HOME={entry.pw_dir}", f"USER={user}",
                       f"LOGNAME={user}", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                       f"XDG_RUNTIME_DIR=/run/user/{entry.pw_uid}", *command]
        proc = subprocess.run(command, capture_output=True, text=True, check=False,
                              cwd=pwd.getpwnam(user).pw_dir if user else "/")
        if proc.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.strip()[-1000:]}")
        return proc

    def _podman_create(self, user: str | None, name: str, source: str) -> None:
        self._podman(user, ["create", "--name", name, "--network", "none", "--user", "1000:1000",
                            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                            "-v", f"{source}:/data", self.podman_image, "sleep", "infinity"])

    def setup(self) -> None:
        volumes, users, per_user, rootful = self.counts
        os.makedirs(self.root, exist_ok=True)
        os.chmod(self.bench.base, 0o711)  # the rootless users reach their bind mount sources
        os.chmod(self.root, 0o755)
        tarball = "/var/cache/permfix-tests/busybox-rootfs.tar"
        print(f"busy host {self.prefix}: {volumes} volumes, {rootful} rootful podman containers, "
              f"{users} rootless users with {per_user} containers each", flush=True)
        for index in range(volumes):
            name = f"{self.prefix}-v{index:03d}"
            subprocess.run(["docker", "volume", "create", name], check=True, stdout=subprocess.DEVNULL)
            self.volumes.append(name)
        self._podman(None, ["import", tarball, self.podman_image])
        for index in range(rootful):
            name = f"{self.prefix}-p{index:03d}"
            self._podman_create(None, name, self._dir(name, 1000, 1000))
            self.podman.append(name)
        os.chmod(tarball, 0o644)
        for number in range(users):
            user = f"pfbu{uuid.uuid4().hex[:6]}{number}"
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", user],
                           check=True, capture_output=True)
            self.users.append(user)
            entry = pwd.getpwnam(user)
            runtime = f"/run/user/{entry.pw_uid}"
            os.makedirs(runtime, mode=0o700, exist_ok=True)
            os.chown(runtime, entry.pw_uid, entry.pw_gid)
            subuid = Path("/etc/subuid").read_text(encoding="utf-8").splitlines()
            start = next(int(line.split(":")[1]) for line in subuid if line.split(":")[0] == user)
            self._podman(user, ["import", tarball, self.podman_image])
            for index in range(per_user):
                name = f"{self.prefix}-u{number}-{index:02d}"
                # container 1000 is host subuid start + 999 in the user's namespace
                self._podman_create(user, name, self._dir(name, start + 999, start + 999))

    def grow(self, count: int) -> None:
        """Docker containers up to ``count`` (even ones running); one bind mount each."""
        while len(self.docker) < count:
            index = len(self.docker)
            name = f"{self.prefix}-d{index:04d}"
            source = self._dir(name, 1000, 1000)
            verb = ["run", "-d"] if index % 2 == 0 else ["create"]
            subprocess.run(["docker", *verb, "--name", name, "--user", "1000:1000", "--network", "none",
                            "-v", f"{source}:/data", IMAGE_BUSYBOX, "sleep", "infinity"],
                           check=True, stdout=subprocess.DEVNULL)
            self.docker.append(name)

    def engines_list(self) -> dict[str, float]:
        """``docker inspect`` of every container (CLI), ``podman ps -a --format json`` plus ``podman
        inspect`` for root and each user: what the engines need to list what the audit looks at."""
        out: dict[str, float] = {}
        ids = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, check=True).stdout.split()
        start = time.perf_counter()
        if ids:
            subprocess.run(["docker", "inspect", *ids], check=True, stdout=subprocess.DEVNULL)
        out["docker_inspect"] = time.perf_counter() - start
        for who in [None, *self.users]:
            start = time.perf_counter()
            listed = json.loads(self._podman(who, ["ps", "-a", "--format", "json"]).stdout or "[]")
            ps_seconds = time.perf_counter() - start
            ids = [item["Id"] for item in listed]
            start = time.perf_counter()
            if ids:
                self._podman(who, ["inspect", *ids])
            key = "root" if who is None else f"user{self.users.index(who)}"
            out[f"podman_ps/{key}"] = ps_seconds
            out[f"podman_ps_inspect/{key}"] = ps_seconds + time.perf_counter() - start
        return out

    def audit(self, env: dict[str, str] | None = None) -> Sample:
        argv = [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m",
                "permfix.containers.audit_info"]
        sample, out = measure(argv, env=env or self.bench.env, cwd=self.bench.base)
        if "FAILED" in out or "=>" not in out:
            raise RuntimeError(f"audit_info failed: {out[-2000:]}")
        result = json.loads(out[out.index("=>") + 2:])
        if result.get("errors"):
            raise RuntimeError(f"audit_info reported errors: {result['errors']}")
        sample.extra = {"findings": len(result["findings"])}
        return sample

    def podman_module(self, who: str | None) -> Sample:
        """bind_mount_info on one podman scope (root or a user): the podman part of the audit alone."""
        module_args = json.dumps({"engines": ["podman"], "podman_users": [who or "root"]})
        argv = [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m",
                "permfix.containers.bind_mount_info", "-a", module_args]
        sample, out = measure(argv, env=self.bench.env, cwd=self.bench.base)
        if "FAILED" in out:
            raise RuntimeError(f"bind_mount_info failed: {out[-2000:]}")
        return sample

    def reads(self) -> dict[str, Any]:
        _sample, out = measure([sys.executable, "-c", READS_CHILD, self.bench.coll, self.prefix])  # needs ansible
        return json.loads(out)

    def run(self, sizes: Sequence[int], repeats: int) -> dict[str, Any]:
        res = self.bench.results
        self.setup()
        per_size: dict[str, Any] = {}
        for count in sorted(sizes):
            started = time.perf_counter()
            self.grow(count)
            print(f"busy host: {count} Docker containers ready in {time.perf_counter() - started:.1f} s", flush=True)
            for _repeat in range(repeats):
                self.bench.ping(f"busy/{count}/ping")
                res.add(f"busy/{count}/audit", self.audit())
                for key, seconds in self.engines_list().items():
                    res.add(f"busy/{count}/{key}", Sample(seconds, 0.0, 0))
                for who in [None, *self.users[:1]]:
                    key = "root" if who is None else "user0"
                    res.add(f"busy/{count}/podman_module/{key}", self.podman_module(who))
            if count:
                per_size[str(count)] = {"reads": self.reads()}
                print(f"  account reads of {count} named-user containers: {per_size[str(count)]['reads']}", flush=True)
        return per_size

    def cleanup(self) -> None:
        for name in self.docker:
            subprocess.run(["docker", "rm", "-f", name], check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        for name in self.volumes:
            subprocess.run(["docker", "volume", "rm", "-f", name], check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        for name in self.podman:
            subprocess.run(["podman", "rm", "-f", name], check=False, capture_output=True)
        subprocess.run(["podman", "rmi", "-f", self.podman_image], check=False, capture_output=True)
        for user in self.users:
            subprocess.run(["pkill", "-KILL", "-u", user], check=False, capture_output=True)
            time.sleep(0.5)
            home = pwd.getpwnam(user).pw_dir
            uid = pwd.getpwnam(user).pw_uid
            # rootless storage holds files of subordinate ids: remove it inside the user's namespace first
            subprocess.run(["runuser", "-u", user, "--", "env", f"HOME={home}", f"XDG_RUNTIME_DIR=/run/user/{uid}",
                            "podman", "system", "reset", "-f"], check=False, capture_output=True, cwd=home)
            subprocess.run(["userdel", "--remove", "--force", user], check=False, capture_output=True)
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(f"/run/user/{uid}", ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


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


BUSY_START = "<!-- busy-host: generated by benchmarks/run.py --busy; do not edit -->"
BUSY_END = "<!-- busy-host: end -->"
BUSY_PLOT = REPO / "docs" / "benchmarks-busy-host.png"


def busy_section(bench: Bench, info: dict[str, str], sizes: Sequence[int], busy: BusyHost,
                 extra: dict[str, Any], plot: str | None) -> str:
    res = bench.results
    volumes, users, per_user, rootful = busy.counts
    lines = [BUSY_START, "", "## Busy host: `audit_info` against the engines' own listing", ""]
    add = lines.append
    add(f"Run {info['date']}, load average {info['busy_load']} (1, 5, 15 min; start, end of this part), "
        f"Docker {info['docker']}, {info['cpu']}; `{' '.join(sys.argv[1:]) or '(defaults)'}`.")
    add("")
    add(f"The host: N Docker containers of one image (`--user 1000:1000`, one bind mount each, even ones running), "
        f"{volumes} named Docker volumes, {rootful} rootful podman containers and {users} rootless podman users "
        f"with {per_user} containers each (`--network none`), all made by the benchmark and removed after it. "
        "`audit` is `ansible localhost -m permfix.containers.audit_info` (every detection) minus the median "
        "`ansible localhost -m ping` of the same N; `docker inspect` is the CLI on every container "
        "(`docker inspect $(docker ps -aq)`); `podman` is `podman ps -a --format json` plus `podman inspect` of "
        "the listed ids, for root and each user, summed. Medians of the repeats (min-max), wall seconds.")
    add("")
    add("| Docker containers | ping s | audit_info s | audit - ping s | docker inspect s | podman ps+inspect s "
        "| (audit - ping) / docker inspect | (audit - ping) / (docker + podman) | per added container ms |")
    add("|---|---|---|---|---|---|---|---|---|")
    previous: tuple[int, float] | None = None
    for count in sorted(sizes):
        key = f"busy/{count}"
        ping = res.median(f"{key}/ping")
        net = res.median(f"{key}/audit") - ping
        docker_s = res.median(f"{key}/docker_inspect")
        podman_s = sum(res.median(k) for k in res.samples if k.startswith(f"{key}/podman_ps_inspect/"))
        step = "-"
        if previous is not None and count > previous[0]:
            step = f"{(net - previous[1]) / (count - previous[0]) * 1000:.2f}"
        ratio = f"{net / docker_s:.1f}" if docker_s >= 0.005 else "- (nothing to inspect)"
        add(f"| {count} | {fmt(res.stat(f'{key}/ping'))} | {fmt(res.stat(f'{key}/audit'))} | {net:.2f} "
            f"| {fmt(res.stat(f'{key}/docker_inspect'))} | {podman_s:.2f} | "
            f"{ratio} | {net / (docker_s + podman_s):.1f} | {step} |")
        previous = (count, net)
    points = [(count, res.median(f"busy/{count}/audit") - res.median(f"busy/{count}/ping"))
              for count in sorted(sizes) if count >= 50]
    if len(points) >= 2:
        mean_x = statistics.mean(x for x, _y in points)
        mean_y = statistics.mean(y for _x, y in points)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _y in points)
        add("")
        add(f"Cost per added Docker container, least squares over {', '.join(str(x) for x, _y in points)} "
            f"containers: {slope * 1000:.2f} ms (the step column is noisier: it subtracts two medians of "
            "a noisy ping).")
    add("")
    add("Podman alone: `bind_mount_info` with `engines: [podman]` and one `podman_users` entry (the podman part "
        "of the audit: one `ps` and one `inspect` per user, no `podman cp`) minus ping, against `podman ps -a` plus "
        "`podman inspect` of the same containers.")
    add("")
    add("| Docker containers | scope | containers | bind_mount_info - ping s | podman ps+inspect s | ratio |")
    add("|---|---|---|---|---|---|")
    for count in sorted(sizes):
        key = f"busy/{count}"
        ping = res.median(f"{key}/ping")
        for scope, containers in (("root", rootful), ("user0", per_user)):
            module = res.median(f"{key}/podman_module/{scope}") - ping
            listing = res.median(f"{key}/podman_ps_inspect/{scope}")
            add(f"| {count} | {'rootful' if scope == 'root' else 'rootless user'} | {containers} | {module:.2f} "
                f"| {listing:.2f} | {module / listing:.1f} |")
    add("")
    add("Reading the account files of the same Docker containers as if each ran as the named user `app` (so "
        "/etc/passwd and /etc/group are needed), in one target Python: the layer reader (one read per distinct "
        "source, shared by every container of the image) against the engine's archive endpoint per container "
        f"({ENGINE_WORKERS_TEXT}).")
    add("")
    add("| Docker containers | layers s | layer reads, shared | archive endpoint s | archive reads | resolved both |")
    add("|---|---|---|---|---|---|")
    for count in sorted(sizes):
        reads = extra.get(str(count), {}).get("reads")
        if not reads:
            continue
        fast, slow = reads["auto"], reads["engine"]
        add(f"| {reads['containers']} | {fast['seconds']:.3f} | {fast['stats']['layers']}, "
            f"{fast['stats']['shared']} | {slow['seconds']:.2f} | {slow['stats']['engine']} "
            f"| {fast['resolved']}, {slow['resolved']} |")
    add("")
    if plot:
        add(f"![audit_info against the engines' listing by number of containers]({plot})")
        add("")
    add(BUSY_END)
    return "\n".join(lines)


ENGINE_WORKERS_TEXT = "4 threads, as the modules use"


def busy_plot(bench: Bench, sizes: Sequence[int], path: Path) -> str | None:
    """A PNG of the audit's cost and the engines' listing by number of containers (None: no matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -r benchmarks/requirements.txt): no plot", flush=True)
        return None
    res = bench.results
    counts = sorted(sizes)
    net = [res.median(f"busy/{c}/audit") - res.median(f"busy/{c}/ping") for c in counts]
    docker_s = [res.median(f"busy/{c}/docker_inspect") for c in counts]
    podman_s = [sum(res.median(k) for k in res.samples if k.startswith(f"busy/{c}/podman_ps_inspect/"))
                for c in counts]
    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
    axis.plot(counts, net, marker="o", label="audit_info module time minus ping")
    axis.plot(counts, docker_s, marker="s", label="docker inspect of every container (CLI)")
    axis.plot(counts, [d + p for d, p in zip(docker_s, podman_s)], marker="^",
              label="docker inspect + podman ps/inspect of every user")
    axis.plot(counts, [10 * d for d in docker_s], linestyle="--", color="grey", label="10 x docker inspect (target)")
    axis.set_xlabel("Docker containers on the host (plus the podman ones)")
    axis.set_ylabel("seconds")
    axis.set_title("Busy host: audit cost by number of containers")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path.name


def splice_section(doc: Path, section: str) -> None:
    """Put ``section`` into ``doc`` in place of the previous one (else before the analysis, else at the end)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if BUSY_START in text and BUSY_END in text:
        before, rest = text.split(BUSY_START, 1)
        after = rest.split(BUSY_END, 1)[1]
        text = before + section + after
    elif "\n## Analysis" in text:
        before, after = text.split("\n## Analysis", 1)
        text = before + "\n" + section + "\n\n## Analysis" + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(text, encoding="utf-8")


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
    parser.add_argument("--busy", default="0,50,200,500",
                        help="busy host: numbers of Docker containers, comma-separated (empty: skip)")
    parser.add_argument("--busy-volumes", type=int, default=100, help="busy host: named Docker volumes")
    parser.add_argument("--busy-users", type=int, default=2, help="busy host: rootless podman users")
    parser.add_argument("--busy-user-containers", type=int, default=20, help="busy host: containers per user")
    parser.add_argument("--busy-rootful", type=int, default=20, help="busy host: rootful podman containers")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the benchmark changes owners, mounts overlayfs and starts containers", file=sys.stderr)
        return 2
    sizes = [int(value) for value in args.sizes.split(",") if value]
    fleet_sizes = [int(value) for value in args.fleet.split(",") if value]
    busy_sizes = [int(value) for value in args.busy.split(",") if value]
    info = machine()
    print(json.dumps(info, indent=1), flush=True)
    base = tempfile.mkdtemp(prefix="permfix-bench-", dir="/var/tmp")
    bench = Bench(args, base)
    trees: dict[int, int] = {}
    overlay = None
    busy: BusyHost | None = None
    busy_extra: dict[str, Any] = {}
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
        if busy_sizes:
            start_load = " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])
            busy = BusyHost(bench, args.busy_volumes, args.busy_users, args.busy_user_containers, args.busy_rootful)
            try:
                busy_extra = busy.run(busy_sizes, args.repeats)
            finally:
                busy.cleanup()
            info["busy_load"] = (f"{start_load}, "
                                 + " ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3]))
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
    text = ""
    if sizes or fleet_sizes or args.overlay_entries:
        text = write_doc(Path(args.doc), info, args, bench, sizes, trees, overlay)
    if busy is not None:
        plot = None if args.no_doc else busy_plot(bench, busy_sizes, Path(args.doc).parent / BUSY_PLOT.name)
        section = busy_section(bench, info, busy_sizes, busy, busy_extra, plot)
        text += "\n" + section
        if not args.no_doc:
            splice_section(Path(args.doc), section)
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
