# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tier: every molecule scenario under molecule/, with the docker driver on local images."""

from __future__ import annotations

import subprocess

import pytest

import permfix_testlib as lib

pytestmark = [pytest.mark.molecule, pytest.mark.slow]

SCENARIOS = sorted(path.parent.name for path in (lib.REPO_ROOT / "molecule").glob("*/molecule.yml"))


def test_there_are_scenarios() -> None:
    assert SCENARIOS, "no molecule scenario found under molecule/"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario: str) -> None:
    proc = subprocess.run(
        [str(lib.VENV_BIN / "molecule"), "test", "--scenario-name", scenario],
        cwd=lib.REPO_ROOT, env=lib.ansible_env({"MOLECULE_NO_LOG": "false"}),
        capture_output=True, text=True, timeout=1800, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"molecule test -s {scenario} failed (rc {proc.returncode}):\n{output[-10000:]}"
