# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tier: ansible-test sanity, offline (--venv with the pip stand-in), no ignore entries."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

import permfix_testlib as lib

pytestmark = [pytest.mark.sanity, pytest.mark.slow]


def sanity_env() -> dict[str, str]:
    """ansible-test finds python3.X on PATH: put every installed Python 3.9+ there."""
    env = lib.ansible_env()
    extra = lib.python_versions_path()
    if extra:
        env["PATH"] = f"{lib.VENV_BIN}{os.pathsep}{extra}{os.pathsep}{env['PATH']}"
    return env


@pytest.fixture(scope="module")
def sanity_run() -> tuple[int, str]:
    """Run the whole sanity suite once; each test below reads its own part of the output."""
    stage = lib.staged_collection()
    proc = subprocess.run(
        [str(lib.VENV_BIN / "ansible-test"), "sanity", "--venv", "--color", "no"],
        cwd=stage, env=sanity_env(), capture_output=True, text=True, timeout=2400, check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_no_ignore_files() -> None:
    ignores = sorted((lib.REPO_ROOT / "tests" / "sanity").glob("ignore-*.txt"))
    assert ignores == [], f"sanity ignore files are not allowed: {ignores}"


def test_sanity_suite_passes(sanity_run: tuple[int, str]) -> None:
    rc, output = sanity_run
    ran = re.findall(r'Running sanity test "([^"]+)"', output)
    assert len(ran) >= 10, f"ansible-test ran too few sanity tests ({ran}):\n{output[-4000:]}"
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert rc == 0 and not errors, "ansible-test sanity failed:\n" + "\n".join(errors or [output[-6000:]])
