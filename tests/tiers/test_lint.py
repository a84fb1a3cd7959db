# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tier: ansible-lint with the production profile over roles/ and playbooks/."""

from __future__ import annotations

import subprocess

import pytest

import permfix_testlib as lib

pytestmark = [pytest.mark.lint, pytest.mark.slow]


def test_ansible_lint_production_profile() -> None:
    targets = [
        name
        for name in ("roles", "playbooks")
        if (lib.REPO_ROOT / name).is_dir() and any((lib.REPO_ROOT / name).iterdir())
    ]
    assert targets, "there is nothing to lint in roles/ or playbooks/"
    proc = subprocess.run(
        [str(lib.VENV_BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor", *targets],
        cwd=lib.REPO_ROOT, env=lib.ansible_env(), capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, f"ansible-lint failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
