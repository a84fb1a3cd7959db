# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by every tier; the helpers themselves live in permfix_testlib."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import permfix_testlib as lib

# Make ansible_collections.permfix.containers importable for unit tests.
sys.path.insert(0, str(lib.collections_dir()))

TIER_BY_DIR = {"unit": "unit", "integration": "integration"}


def xdist_group(item: pytest.Item) -> str:
    """The group a test runs in when pytest-xdist spreads the tiers over workers.

    Unit and integration tests share this machine's users, files and engines, so they run in
    one group, one after another. Each molecule scenario works inside its own container,
    ansible-test sanity on a staged copy, ansible-lint only reads, the fleet tests (runner
    and variable mapping) work only on their own containers (every host test scopes itself by
    name), and the report.html browser test touches no engine at all: those run beside them.
    The attack suite (tests/integration/attacks) works only in scratch trees, scratch account
    and sysctl files and private mount namespaces, and runs beside them too.
    """
    path = Path(str(item.path))
    name = path.name
    if path.parent.name == "attacks":
        return "attacks"
    callspec = getattr(item, "callspec", None)
    if name == "test_molecule.py" and callspec is not None and "scenario" in callspec.params:
        return f"molecule-{callspec.params['scenario']}"
    if name in ("test_sanity.py", "test_lint.py", "test_molecule.py", "test_fleet_runner.py", "test_fleet_mapping.py",
                "test_report_html.py", "test_publish.py"):
        return name[len("test_"):-len(".py")]
    return "host"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier from the directory it lives in, and its xdist group.

    It must run before pytest-xdist's own hook, which reads the groups.
    """
    tests_dir = Path(__file__).parent
    for item in items:
        parts = Path(str(item.path)).relative_to(tests_dir).parts
        if parts and parts[0] in TIER_BY_DIR:
            item.add_marker(getattr(pytest.mark, TIER_BY_DIR[parts[0]]))
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run when pytest-xdist did not apply the groups (host tests would interleave)."""
    config = session.config
    if getattr(config, "workerinput", None) is None or not getattr(config.option, "loadgroup", False):
        return
    ungrouped = [item.nodeid for item in session.items if "@" not in item.nodeid.rsplit("]", 1)[-1]]
    if ungrouped:
        raise pytest.UsageError(
            f"pytest-xdist did not put {len(ungrouped)} tests (e.g. {ungrouped[0]}) in their xdist_group: "
            "host tests would run at the same time; check the pytest and pytest-xdist versions"
        )


@pytest.fixture(autouse=True)
def _validate_written_reports(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, every report.json under its tmp_path must match meta/report.schema.json."""
    yield
    tmp_path = request.node.funcargs.get("tmp_path")
    if tmp_path is None:
        return
    problems = []
    for path in lib.report_files(tmp_path):
        try:
            lib.validate_report(path)
        except (AssertionError, ValueError) as exc:  # ValueError: not JSON at all
            problems.append(str(exc))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def make_user() -> Iterator:
    """Factory for real users (removed afterwards with their podman state and subids)."""
    created: list[lib.User] = []

    def factory(prefix: str = "pft", subids: bool = False) -> lib.User:
        user = lib.create_user(prefix, subids=subids)
        created.append(user)
        return user

    yield factory
    for user in created:
        lib.delete_user(user)


@pytest.fixture(scope="session")
def docker_client():
    """A Docker SDK client for the machine's daemon."""
    import docker

    client = docker.from_env()
    client.ping()
    yield client
    client.close()
