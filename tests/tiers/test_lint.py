# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tier: ansible-lint (production profile) at the repository root, ruff and mypy."""

from __future__ import annotations

import subprocess

import pytest

import permfix_testlib as lib

pytestmark = [pytest.mark.lint, pytest.mark.slow]


def test_ansible_lint_production_profile() -> None:
    """ansible-lint at the repository root, as Automation Hub runs it (.ansible-lint: production profile)."""
    config = lib.REPO_ROOT / ".ansible-lint"
    assert config.is_file(), "the root .ansible-lint is missing"
    proc = subprocess.run(
        [str(lib.VENV_BIN / "ansible-lint"), "--nocolor"],
        cwd=lib.REPO_ROOT, env=lib.ansible_env(), capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, f"ansible-lint failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr, proc.stdout[-4000:]


def test_ruff_reports_nothing() -> None:
    """pyflakes, pycodestyle, isort, bugbear and pyupgrade (Python 3.9), line length 120 (.config/ruff.toml)."""
    proc = subprocess.run(
        [str(lib.VENV_BIN / "ruff"), "check", "--config", ".config/ruff.toml", "--no-cache", "plugins", "tests",
         "benchmarks"],
        cwd=lib.REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, f"ruff found problems:\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"


def test_mypy_reports_nothing(tmp_path) -> None:
    """Type check of plugins/ as the collection's package (.config/mypy.ini: check_untyped_defs, Python 3.9)."""
    proc = subprocess.run(
        [
            str(lib.VENV_BIN / "mypy"), "--config-file", str(lib.REPO_ROOT / ".config" / "mypy.ini"),
            "--cache-dir", str(tmp_path / "mypy-cache"), "-p", "ansible_collections.permfix.containers.plugins",
        ],
        cwd=lib.collections_dir(), capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, f"mypy found problems:\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"
    assert "Success: no issues found" in proc.stdout, proc.stdout
