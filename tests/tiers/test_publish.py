# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tier: what Galaxy, Automation Hub and users check before they trust the collection.

galaxy-importer on the built tarball (its ansible-test step off: sanity runs in its own tier),
antsibull-changelog and antsibull-docs lint, ansible-builder create of the execution
environment, every plugin's own documentation in ansible-doc, and module_defaults groups.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

import permfix_testlib as lib

pytestmark = [pytest.mark.lint, pytest.mark.slow]

COLLECTION = "permfix.containers"
IMPORTER_PYTHON = lib.REPO_ROOT / ".cache" / "importer-venv" / "bin" / "python"
GALAXY = yaml.safe_load((lib.REPO_ROOT / "galaxy.yml").read_text())
TARBALL_NAME = f"permfix-containers-{GALAXY['version']}.tar.gz"


def tool_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test bed's Ansible environment with the venv's tools first on PATH."""
    env = lib.ansible_env(extra)
    env["PATH"] = f"{lib.VENV_BIN}:{env.get('PATH', os.environ.get('PATH', ''))}"
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build")
    proc = run([str(lib.VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), "."],
               lib.REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / TARBALL_NAME


def ansible_doc(*args: str) -> dict:
    proc = run([str(lib.VENV_BIN / "ansible-doc"), "--json", *args], lib.REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def collection_modules() -> list[str]:
    return sorted(p.stem for p in (lib.REPO_ROOT / "plugins" / "modules").glob("*.py") if p.stem != "__init__")


def test_tarball_ships_what_its_parts_need(tarball: Path) -> None:
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    scenarios = {Path(n).parts[1] for n in names if n.startswith("molecule/") and n.endswith("/molecule.yml")}
    assert scenarios, sorted(names)
    assert ".config/molecule/config.yml" in names, "the shipped molecule scenarios need their shared base config"
    roles = {p.name for p in (lib.REPO_ROOT / "roles").iterdir() if p.is_dir()}
    assert scenarios >= roles, f"roles without a molecule scenario: {sorted(roles - scenarios)}"
    for needed in ("LICENSE", "CHANGELOG.md", "changelogs/changelog.yaml", "meta/runtime.yml",
                   *(f"roles/{role}/README.md" for role in roles)):
        assert needed in names, f"{needed} is missing from the tarball"
    assert not any(n.startswith((".venv", ".cache", ".git/")) for n in names)


def test_galaxy_importer_accepts_the_tarball(tarball: Path, tmp_path: Path) -> None:
    """galaxy-importer as Galaxy and Automation Hub run it (ansible-lint included, ansible-test off)."""
    assert IMPORTER_PYTHON.exists(), "run tests/setup/prepare.sh test: it creates .cache/importer-venv"
    config = tmp_path / "galaxy-importer.cfg"
    config.write_text("[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = True\nRUN_FLAKE8 = False\n")
    env = dict(os.environ, GALAXY_IMPORTER_CONFIG=str(config),
               PATH=f"{IMPORTER_PYTHON.parent}:{os.environ.get('PATH', '')}",
               ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "no-collections"), HOME=str(tmp_path))
    proc = run([str(IMPORTER_PYTHON), "-m", "galaxy_importer.main", str(tarball)], tmp_path, env=env, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    assert "Importer processing completed successfully" in output, output[-8000:]
    problems = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not problems, "\n".join(problems)


def test_every_plugin_has_its_own_documentation() -> None:
    """ansible-doc shows each plugin's own short_description: unique, and the doc names the plugin."""
    seen: dict[str, str] = {}
    for plugin_type in ("module", "filter"):
        listing = ansible_doc("-t", plugin_type, "-l", COLLECTION)
        assert listing, f"ansible-doc lists no {plugin_type} of {COLLECTION}"
        docs = ansible_doc("-t", plugin_type, *sorted(listing))
        for fqcn in sorted(listing):
            doc = docs[fqcn]["doc"]
            short = fqcn.rsplit(".", 1)[1]
            name = doc.get("module" if plugin_type == "module" else "name")
            assert name == short, f"{plugin_type} {fqcn} shows the documentation of {name}"
            description = doc["short_description"]
            assert description not in seen, f"{fqcn} and {seen.get(description)} share {description!r}"
            seen[description] = fqcn


def test_findings_are_documented_with_the_finding_record() -> None:
    from ansible_collections.permfix.containers.plugins.module_utils._core.findings import FINDING_KEYS

    docs = ansible_doc("-t", "module", *(f"{COLLECTION}.{name}" for name in collection_modules()))
    returning = {fqcn: doc["return"]["findings"] for fqcn, doc in docs.items() if "findings" in (doc["return"] or {})}
    assert len(returning) >= 5, sorted(returning)
    for fqcn, findings in returning.items():
        contains = findings.get("contains") or {}
        missing = [key for key in (*FINDING_KEYS, "advice") if key not in contains]
        assert not missing, f"{fqcn}: findings does not document {missing}"
        assert "evidence" in contains["observed"]["contains"], fqcn


def test_action_groups_name_every_module() -> None:
    runtime = yaml.safe_load((lib.REPO_ROOT / "meta" / "runtime.yml").read_text())
    groups = runtime["action_groups"]
    docs = ansible_doc("-t", "module", *(f"{COLLECTION}.{name}" for name in collection_modules()))
    talks_to_docker = sorted(fqcn.rsplit(".", 1)[1] for fqcn, doc in docs.items()
                             if "docker_host" in doc["doc"].get("options", {}))
    assert sorted(groups["docker"]) == talks_to_docker
    members = {item for item in groups["all"] if isinstance(item, str)}
    extended = [item["metadata"]["extend_group"] for item in groups["all"] if isinstance(item, dict)]
    assert extended == [["docker"]]
    assert sorted(members | set(groups["docker"])) == collection_modules()


def test_module_defaults_docker_group_reaches_every_member(tmp_path: Path) -> None:
    """One docker_host for the whole group: every member fails naming it (no engine is contacted)."""
    runtime = yaml.safe_load((lib.REPO_ROOT / "meta" / "runtime.yml").read_text())
    members = runtime["action_groups"]["docker"]
    marker = "relative/permfix-module-defaults.sock"
    # every member is meant to fail on the unusable socket; ignore_errors lets all of them run, and the
    # assertions below require each one to have failed naming that socket
    tasks = [{"name": name, f"{COLLECTION}.{name}": ({"volume": "permfix-md"} if name == "volume_owner" else {}),
              "ignore_errors": True} for name in members]
    play = [{"hosts": "localhost", "gather_facts": False,
             "module_defaults": {f"group/{COLLECTION}.docker": {"docker_host": f"unix://{marker}"}},
             "tasks": tasks}]
    result = lib.run_playbook(play)
    results = {task["_task"]: task for task in result.tasks()}
    assert sorted(results) == sorted(members), result.stdout[-4000:] + result.stderr[-2000:]
    for name, task in results.items():
        assert task.get("failed") and marker in task.get("msg", ""), f"{name}: {task}"


def test_antsibull_changelog_lint_and_release(tmp_path: Path) -> None:
    """Fragments (also those added after 0.1.0 was cut) lint, and the release renders CHANGELOG.md."""
    tool = str(lib.VENV_BIN / "antsibull-changelog")
    proc = run([tool, "lint"], lib.REPO_ROOT)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr
    stage = tmp_path / "ansible_collections" / "permfix" / "containers"
    shutil.copytree(lib.REPO_ROOT, stage, ignore=shutil.ignore_patterns(".venv", ".cache", ".git", "*.tar.gz"))
    env = tool_env({"ANSIBLE_COLLECTIONS_PATH": str(tmp_path)})
    proc = run([tool, "release", "--version", GALAXY["version"]], stage, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rendered = (stage / "CHANGELOG.md").read_text()
    assert f"v{GALAXY['version']}".replace(".", "\\.") in rendered
    for fragment in (lib.REPO_ROOT / "changelogs" / "fragments").glob("*.yml"):
        for entries in yaml.safe_load(fragment.read_text()).values():
            for entry in entries if isinstance(entries, list) else [entries]:
                if isinstance(entry, str):
                    first = entry.split()[0].strip("\"'`")
                    assert first.replace("_", "\\_").replace(".", "\\.") in rendered, (fragment.name, entry)
    proc = run([tool, "lint-changelog-yaml", "changelogs/changelog.yaml"], stage, env=env)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_antsibull_docs_lint_collection_docs() -> None:
    proc = run([str(lib.VENV_BIN / "antsibull-docs"), "lint-collection-docs", "--plugin-docs", "."],
               lib.collections_dir() / "ansible_collections" / "permfix" / "containers")
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_execution_environment_context_holds_the_collection(tarball: Path, tmp_path: Path) -> None:
    """ansible-builder create renders the build context offline; it installs the collection's tarball."""
    # A copy of docs/ee/ and meta/ (the definition names the collection's metadata files by path
    # from docs/ee/), with the tarball next to the definition as docs/execution_environment.md says.
    definition_dir = tmp_path / "docs" / "ee"
    shutil.copytree(lib.REPO_ROOT / "docs" / "ee", definition_dir, ignore=shutil.ignore_patterns("*.tar.gz"))
    shutil.copytree(lib.REPO_ROOT / "meta", tmp_path / "meta")
    shutil.copy(tarball, definition_dir / tarball.name)
    definition = yaml.safe_load((definition_dir / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    context = tmp_path / "context"
    proc = run([str(lib.VENV_BIN / "ansible-builder"), "create",
                "-f", str(definition_dir / "execution-environment.yml"), "-c", str(context)],
               tmp_path, env=tool_env({"ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "none")}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    build = context / "_build"
    requirements = yaml.safe_load((build / "requirements.yml").read_text())
    files = [c["name"] for c in requirements["collections"] if c.get("type") == "file"]
    assert files == [f"collections/{TARBALL_NAME}"], files
    assert (build / files[0]).read_bytes() == tarball.read_bytes()
    python = (build / "requirements.txt").read_text()
    system = (build / "bindep.txt").read_text()
    assert "docker" in python and "jmespath" in python, python
    assert "docker-ce-cli" in system and "docker.io" in system, system
    # The galaxy stage runs `ansible-galaxy collection install` in /build: the path must install.
    proc = run([str(lib.VENV_BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p",
                str(tmp_path / "installed"), files[0]], build,
               env=tool_env({"ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "installed")}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = tmp_path / "installed" / "ansible_collections" / "permfix" / "containers" / "MANIFEST.json"
    assert json.loads(manifest.read_text())["collection_info"]["version"] == GALAXY["version"]
