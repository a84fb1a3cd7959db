# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the checks that keep bad option values from reaching programs and system calls.

Each value here once ended in an exception ("embedded null byte", "timestamp out of range for
platform time_t", OverflowError) instead of a sentence; tests/integration/attacks/test_bad_input.py
finds them through real module calls.
"""

from __future__ import annotations

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import OptionError
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import SECONDS_MAX, seconds
from ansible_collections.permfix.containers.plugins.module_utils._core.options import plain_name, plain_names
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import docker_options
from ansible_collections.permfix.containers.plugins.module_utils._engines.volumes import parse_owner
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.owner_spec import OwnerSpecError, parse_id


@pytest.mark.parametrize(("value", "words"), [
    ({"a": 1}, "given as a string, not dict"), (5, "given as a string, not int"), ("", "not an empty string"),
    ("  ", "not an empty string"), ("a\x00b", "NUL byte"),
])
def test_a_bad_name_is_refused_with_the_option_name(value: object, words: str) -> None:
    with pytest.raises(OptionError) as err:
        plain_name(value, "volume")
    assert str(err.value).startswith("volume ") and words in str(err.value)


def test_names_are_checked_one_by_one_and_a_string_is_not_a_list() -> None:
    assert plain_names(["web", "db"], "containers") == ["web", "db"]
    with pytest.raises(OptionError, match=r"containers\[1\] must not contain a NUL byte"):
        plain_names(["web", "d\x00b"], "containers")
    with pytest.raises(OptionError, match="must be a list of names"):
        plain_names("web", "containers")


@pytest.mark.parametrize("value", [0, -1, True, SECONDS_MAX + 1, 10**30])
def test_a_timeout_outside_one_second_to_a_week_is_refused(value: int) -> None:
    with pytest.raises(OptionError, match="^timeout must be"):
        seconds(value, "timeout")


def test_a_timeout_of_a_week_is_accepted() -> None:
    assert seconds(SECONDS_MAX, "timeout") == SECONDS_MAX


@pytest.mark.parametrize("docker_host", ["unix://", "unix://relative.sock", "unix:///run/a\x00b.sock"])
def test_docker_host_needs_an_absolute_socket_path(docker_host: str) -> None:
    with pytest.raises(OptionError, match="^docker_host must be unix:// and an absolute socket path"):
        docker_options({"docker_host": docker_host, "timeout": 60})


def test_docker_options_refuse_a_huge_timeout() -> None:
    with pytest.raises(OptionError, match="at most 604800 seconds"):
        docker_options({"docker_host": "unix:///var/run/docker.sock", "timeout": 10**30})


@pytest.mark.parametrize("text", ["4294967295", "1" * 30, "1:4294967295", "\u0661\u0662"])
def test_volume_owner_ids_are_ascii_numbers_up_to_id_max(text: str) -> None:
    with pytest.raises(ValueError, match="owner"):
        parse_owner(text)


def test_an_owner_name_with_a_nul_byte_is_a_sentence_not_a_lookup() -> None:
    with pytest.raises(OwnerSpecError, match="contains a NUL byte"):
        parse_id("ro\x00ot", "user")


def test_a_name_with_a_nul_byte_is_unknown_to_the_nss_fallback() -> None:
    """getpwnam and getgrnam raise ValueError on a NUL byte: the account database knows no such name."""
    accounts = AccountDatabase.from_text("", "", nss_fallback=True)
    assert accounts.user("ro\x00ot") is None
    assert accounts.group("ro\x00ot") is None
