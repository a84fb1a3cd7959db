# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Quick local measurement of the ownership engine against GNU find and chown -R.

Run as root:  .venv/bin/python benchmarks/ownership_quick.py [--files 300000] [--python /usr/bin/python3]

It builds a tree of empty files under /var/tmp (100 files per directory), then measures,
taking the best of ``--rounds`` interleaved runs (warm cache):

- scan: the engine's scan vs ``find TREE -xdev ! -uid U`` (1% of entries mismatched);
- fix, all wrong: the engine's fix vs ``chown -R U:G TREE`` on a tree owned by 0:0;
- fix, 1% wrong: the engine's fix vs ``chown -R U:G TREE`` on a tree with 1% owned by 0:0;

and prints the ratios next to the targets of issue 5 (scan <= 1.3x, fix all <= 1.2x,
fix 1% <= 0.5x) and the engine's peak RSS. The engine runs in a child interpreter
(``--python``, default this one) so that its RSS and time are its own; times exclude the
interpreter's start-up (reported separately). The tree is removed at the end unless
``--keep`` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"scan": 1.3, "fix_all": 1.2, "fix_1pct": 0.5}

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.permfix.containers.plugins.module_utils import _ownership as o
what, path, uid = sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
report = (o.scan if what == "scan" else o.fix)(path, o.Target(uid=uid, gid=uid))
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "counts": report.counts,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def collections_dir() -> str:
    """A directory holding ansible_collections/permfix/containers -> this checkout."""
    digest = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
    base = Path(tempfile.gettempdir()) / f"permfix-bench-collections-{digest}"
    link = base / "ansible_collections" / "permfix" / "containers"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO)
    return str(base)


def build_tree(root: str, files: int, per_dir: int = 100) -> int:
    """Create ``files`` empty files, ``per_dir`` per directory, 100 directories per group."""
    made = 0
    index = 0
    while made < files:
        directory = os.path.join(root, f"g{index // 100:04d}", f"d{index:05d}")
        os.makedirs(directory)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for number in range(min(per_dir, files - made)):
                os.close(os.open(f"f{number}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dir_fd))
        finally:
            os.close(dir_fd)
        made += per_dir
        index += 1
    return made


def set_owner(root: str, uid: int, gid: int, every: int = 0) -> None:
    """chown -R the tree to uid:gid, then (every > 0) give every Nth file to 0:0."""
    subprocess.run(["chown", "-R", f"{uid}:{gid}", root], check=True)
    if every:
        count = 0
        for directory, _dirs, names in os.walk(root):
            for name in names:
                count += 1
                if count % every == 0:
                    os.chown(os.path.join(directory, name), 0, 0, follow_symlinks=False)


def run_tool(argv: List[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def run_engine(python: str, what: str, root: str, uid: int) -> Tuple[float, float, Dict]:
    start = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", CHILD, collections_dir(), what, root, str(uid)],
        capture_output=True, text=True, check=True,
    )
    wall = time.perf_counter() - start
    data = json.loads(proc.stdout)
    return data["seconds"], wall, data


def startup(python: str) -> float:
    best = 9e9
    for _attempt in range(3):
        start = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the engine")
    parser.add_argument("--uid", type=int, default=4242)
    parser.add_argument("--base", default="/var/tmp")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the benchmark changes owners", file=sys.stderr)
        return 2
    root = tempfile.mkdtemp(prefix="permfix-bench-", dir=args.base)
    uid = args.uid
    best: Dict[str, float] = {}
    rss = 0

    def keep(name: str, value: float) -> None:
        best[name] = min(best.get(name, 9e9), value)

    try:
        started = time.perf_counter()
        made = build_tree(root, args.files)
        print(f"tree: {made:,} files under {root} ({time.perf_counter() - started:.1f} s to build)")
        print(f"engine interpreter: {args.python} (start-up {startup(args.python) * 1000:.0f} ms, not counted)")
        for _round in range(args.rounds):
            # scan and fix with 1% wrong: the tree is uid:uid with every 100th file 0:0
            set_owner(root, uid, uid, every=100)
            keep("find", run_tool(["find", root, "-xdev", "!", "-uid", str(uid)]))
            seconds, _wall, data = run_engine(args.python, "scan", root, uid)
            keep("scan", seconds)
            rss = max(rss, data["maxrss_kb"])
            seconds, _wall, data = run_engine(args.python, "fix", root, uid)
            keep("fix_1pct", seconds)
            rss = max(rss, data["maxrss_kb"])
            set_owner(root, uid, uid, every=100)
            keep("chown_1pct", run_tool(["chown", "-R", f"{uid}:{uid}", root]))
            # fix with everything wrong
            set_owner(root, 0, 0)
            keep("chown_all", run_tool(["chown", "-R", f"{uid}:{uid}", root]))
            set_owner(root, 0, 0)
            seconds, _wall, data = run_engine(args.python, "fix", root, uid)
            keep("fix_all", seconds)
            rss = max(rss, data["maxrss_kb"])
        ratios = {
            "scan": best["scan"] / best["find"],
            "fix_all": best["fix_all"] / best["chown_all"],
            "fix_1pct": best["fix_1pct"] / best["chown_1pct"],
        }
        print(f"find ! -uid       {best['find']:.3f} s   engine scan      {best['scan']:.3f} s")
        print(f"chown -R all      {best['chown_all']:.3f} s   engine fix all   {best['fix_all']:.3f} s")
        print(f"chown -R 1% wrong {best['chown_1pct']:.3f} s   engine fix 1%    {best['fix_1pct']:.3f} s")
        for name, ratio in ratios.items():
            verdict = "ok" if ratio <= TARGETS[name] else "OVER"
            print(f"ratio {name:9s} {ratio:5.2f}  (target <= {TARGETS[name]})  {verdict}")
        print(f"engine peak RSS {rss / 1024:.1f} MB (target < 100 MB)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
