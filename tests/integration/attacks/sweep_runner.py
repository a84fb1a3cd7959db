# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the bad-input sweep's module calls: every module imported once, one forked child per case.

``python sweep_runner.py CASES.json RESULTS.json`` reads ``[{"index", "module", "args", "cwd"}]``
and writes ``{index: result}``, where ``result`` is what the module printed (its JSON result) or,
when the module did not end in ``exit_json``/``fail_json``, what ansible-core's controller makes of
such a module: ``failed`` with ``MODULE FAILURE``, the traceback and what the module printed.

Each child is a fork of a process that has already imported every module of the collection and
its libraries, so a case costs the module's own work and a fork, not the ~0.3 s of CPU that a task
of ``ansible-playbook`` spends on templating, AnsiballZ and a new interpreter. The child gets the
parameters exactly as a module started by ansible-core does (``_ANSIBLE_ARGS`` with the task's
internal ``_ansible_*`` values: check mode, no target syslog, a private temporary directory), its
standard output and error go to files, and it is killed after the task timeout. Each case's
wall seconds go to ``RESULTS.json.seconds`` (to see which cases cost the time).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys
import time
import traceback
from typing import Any

PACKAGE = "ansible_collections.permfix.containers.plugins.modules"


def internal_args(tmpdir: str) -> dict[str, Any]:
    """The ``_ansible_*`` parameters ansible-core's action plugin adds to a check-mode task."""
    return {
        "_ansible_check_mode": True,
        "_ansible_no_log": True,  # ANSIBLE_NO_TARGET_SYSLOG: no syslog line (it refuses NUL bytes itself)
        "_ansible_debug": False,
        "_ansible_diff": False,
        "_ansible_verbosity": 0,
        "_ansible_keep_remote_files": False,
        "_ansible_tmpdir": tmpdir,
        "_ansible_remote_tmp": tmpdir,
        "_ansible_shell_executable": "/bin/sh",
    }


def child(module: Any, name: str, args: dict[str, Any], cwd: str, out: str, err: str, tmpdir: str) -> None:
    """In the forked child: run ``module.main()`` with ``args``; never returns."""
    code = 1
    try:
        os.setsid()
        os.chdir(cwd)
        stdout = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        stderr = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - flushed below
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - flushed below
        from ansible.module_utils import basic

        os.makedirs(tmpdir, exist_ok=True)
        params = dict(args, **internal_args(tmpdir), _ansible_module_name=name)
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": params}).encode()
        basic._ANSIBLE_PROFILE = "legacy"
        try:
            module.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - an exception that escaped the module is what the sweep looks for
            sys.stderr.write(traceback.format_exc())
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def result_of(out: str, err: str, status: int | None) -> dict[str, Any]:
    """The task result the controller would report for the child's output."""
    with open(out, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    with open(err, encoding="utf-8", errors="replace") as handle:
        errors = handle.read()
    if status is None:
        return {"failed": True, "msg": "The task timed out (the module did not end in the expected time frame)",
                "module_stdout": text[-2000:], "module_stderr": errors[-2000:]}
    start = text.find("{")
    try:
        result = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        return {"failed": True, "msg": "MODULE FAILURE: the module printed no JSON result", "rc": status,
                "module_stdout": text[-2000:], "module_stderr": errors[-4000:]}
    if errors.strip():
        result["module_stderr"] = errors[-4000:]
    return result


def main() -> int:
    cases_path, results_path = sys.argv[1], sys.argv[2]
    timeout = float(os.environ.get("PERMFIX_SWEEP_TIMEOUT", "180"))
    workers = max(1, min(4, os.cpu_count() or 1))
    with open(cases_path, encoding="utf-8") as handle:
        cases = json.load(handle)
    modules = {name: importlib.import_module(f"{PACKAGE}.{name}") for name in sorted({c["module"] for c in cases})}
    gc.collect()
    gc.freeze()  # the children do not copy the imported objects' pages when the collector runs
    work = os.path.dirname(os.path.abspath(results_path))
    pending = list(cases)
    running: dict[int, tuple[dict[str, Any], float, str, str]] = {}
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < workers:
            case = pending.pop(0)
            index = case["index"]
            out, err = f"{work}/case-{index}.out", f"{work}/case-{index}.err"
            pid = os.fork()
            if pid == 0:
                child(modules[case["module"]], case["module"], case["args"], case["cwd"], out, err,
                      f"{work}/tmp-{index}")
            running[pid] = (case, time.monotonic(), out, err)
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for child_pid, (case, started, out, err) in list(running.items()):
                if now - started > timeout:
                    os.killpg(child_pid, signal.SIGKILL)
                    os.waitpid(child_pid, 0)
                    del running[child_pid]
                    results[str(case["index"])] = result_of(out, err, None)
            time.sleep(0.005)
            continue
        case, started, out, err = running.pop(pid)
        results[str(case["index"])] = result_of(out, err, os.waitstatus_to_exitcode(status))
        seconds[str(case["index"])] = round(time.monotonic() - started, 3)
    with open(results_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle)
    with open(f"{results_path}.seconds", "w", encoding="utf-8") as handle:
        json.dump(seconds, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
