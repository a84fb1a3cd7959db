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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier from the directory it lives in."""
    tests_dir = Path(__file__).parent
    for item in items:
        parts = Path(str(item.path)).relative_to(tests_dir).parts
        if parts and parts[0] in TIER_BY_DIR:
            item.add_marker(getattr(pytest.mark, TIER_BY_DIR[parts[0]]))


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
