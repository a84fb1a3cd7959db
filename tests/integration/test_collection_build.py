# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as users get it: built into a tarball, installed, documented, runnable;
and the README's main-job command."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile

import pytest

import permfix_testlib as lib

MODULES = sorted(path.stem for path in (lib.REPO_ROOT / "plugins" / "modules").glob("*.py"))
FILTERS = ["report", "report_markdown", "report_html", "report_summary", "report_findings"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """Build the collection, install it into an empty directory, return the environment to use it."""
    work = tmp_path_factory.mktemp("galaxy")
    build = work / "build"
    collections = work / "collections"
    galaxy = str(lib.VENV_BIN / "ansible-galaxy")
    subprocess.run([galaxy, "collection", "build", "--output-path", str(build), str(lib.REPO_ROOT)],
                   check=True, capture_output=True, text=True)
    tarballs = list(build.glob("permfix-containers-*.tar.gz"))
    assert [t.name for t in tarballs] == ["permfix-containers-0.1.0.tar.gz"]
    subprocess.run([galaxy, "collection", "install", "--force", "-p", str(collections), str(tarballs[0])],
                   check=True, capture_output=True, text=True)
    env = lib.ansible_env({"ANSIBLE_COLLECTIONS_PATH": str(collections)})
    return {"tarball": str(tarballs[0]), "collections": str(collections), **{f"env:{k}": v for k, v in env.items()}}


def _env(installed: dict[str, str]) -> dict[str, str]:
    return {key[4:]: value for key, value in installed.items() if key.startswith("env:")}


def test_tarball_holds_the_collection_and_no_test_bed_leftovers(installed):
    with tarfile.open(installed["tarball"]) as tar:
        names = tar.getnames()
    assert "MANIFEST.json" in names and "FILES.json" in names
    assert "playbooks/audit.yml" in names
    assert "meta/report.schema.json" in names and "plugins/plugin_utils/report_html.py" in names
    assert any(name.startswith("plugins/modules/") for name in names)
    for unwanted in (".venv", ".cache", ".git", "scripts", "tests/output", "permfix-report"):
        assert not any(name == unwanted or name.startswith(unwanted + "/") for name in names), unwanted
    with tarfile.open(installed["tarball"]) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("permfix", "containers", "0.1.0")
    assert info["license"] == ["GPL-3.0-or-later"] and info["dependencies"] == {}


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_shows_each_module_with_examples_and_return_values(installed, module):
    proc = subprocess.run([str(lib.VENV_BIN / "ansible-doc"), f"permfix.containers.{module}"],
                          env=_env(installed), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "EXAMPLES:" in proc.stdout and f"permfix.containers.{module}" in proc.stdout
    assert "RETURN VALUES:" in proc.stdout


@pytest.mark.parametrize("name", FILTERS)
def test_ansible_doc_shows_each_filter(installed, name):
    proc = subprocess.run([str(lib.VENV_BIN / "ansible-doc"), "-t", "filter", f"permfix.containers.{name}"],
                          env=_env(installed), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "EXAMPLES:" in proc.stdout


def test_installed_audit_playbook_runs_by_its_collection_name(installed, tmp_path):
    proc = subprocess.run(
        [str(lib.VENV_BIN / "ansible-playbook"), "permfix.containers.audit", "-e", "permfix_hosts=localhost",
         "-e", f"permfix_report_dir={tmp_path}"],
        env=_env(installed), cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "report.json").read_text())["schema"] == "permfix.report/v1"


def test_readme_main_job_audits_localhost_and_writes_the_report(tmp_path):
    env = dict(os.environ, PERMFIX_REPORT_DIR=str(tmp_path / "report"))
    proc = subprocess.run([str(lib.REPO_ROOT / "scripts" / "audit")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert list(report["hosts"]) == ["localhost"] and report["hosts"]["localhost"]["reachable"] is True
    assert (tmp_path / "report" / "report.md").read_text().startswith("# permfix.containers audit report")
    assert "reachable  error  warning  info" in proc.stdout
    assert f"{tmp_path}/report/report.json" in proc.stdout
