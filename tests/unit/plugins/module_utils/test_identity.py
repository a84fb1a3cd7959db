# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container identities: user spec parsing, ID mapping per namespace mode, the access table."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator

import pytest

import permfix_testlib as lib
from ansible_collections.permfix.containers.plugins.module_utils._host.access import (
    HostIdentity,
    IdentityError,
    PathFacts,
    check_access,
    choose_user,
    needed_access,
    parse_user_spec,
    path_facts,
    resolve_identity,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.acl import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_UNDEFINED_ID,
    ACL_USER,
    ACL_USER_OBJ,
    EXECUTE,
    READ,
    WRITE,
    perm_words,
    read_acl,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import (
    IDENTITY,
    IdMap,
    IdMapping,
    concatenated,
    parse_colon_map,
    parse_proc_map,
    rootless_map,
    userns_remap_map,
)

# The busybox test image's files, plus a group with members.
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000:app:/tmp:/bin/sh\n"
    "postgres:x:999:999:postgres:/tmp:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
    "1234:x:4321:4321:numeric name:/tmp:/bin/sh\n"
)
GROUP = (
    "root:x:0:\n"
    "app:x:1000:\n"
    "postgres:x:999:\n"
    "staff:x:50:app,postgres\n"
    "audio:x:29:app\n"
    "wheel:x:10:root\n"
    "nogroup:x:65534:\n"
)
ACCOUNTS = AccountDatabase.from_text(PASSWD, GROUP)


# --------------------------------------------------------------------------------------------
# User spec parsing


@pytest.mark.parametrize(
    ("text", "user", "group"),
    [
        (None, "", ""),
        ("", "", ""),
        ("  ", "", ""),
        ("app", "app", ""),
        ("1000", "1000", ""),
        ("1000:1000", "1000", "1000"),
        ("app:staff", "app", "staff"),
        (" app : staff ", "app", "staff"),
        ("app:", "app", ""),
        (":50", "", "50"),
        ("a:b:c", "a", "b:c"),
    ],
)
def test_parse_user_spec(text: str | None, user: str, group: str) -> None:
    spec = parse_user_spec(text)
    assert (spec.user, spec.group) == (user, group)


@pytest.mark.parametrize(
    ("container", "image", "expected"),
    [
        ("1000:1000", "postgres", ("1000:1000", "container")),
        ("", "postgres", ("postgres", "image")),
        (None, " app ", ("app", "image")),
        ("", "", ("", "default")),
        (None, None, ("", "default")),
    ],
)
def test_choose_user_prefers_the_container_then_the_image_then_root(container, image, expected) -> None:
    assert choose_user(container, image) == expected


@pytest.mark.parametrize(
    ("spec", "group_add", "uid", "gid", "groups"),
    [
        # No user: root, with root's passwd gid and the groups that list root.
        ("", (), 0, 0, (10,)),
        # A name: passwd uid and gid, plus the groups listing the name.
        ("app", (), 1000, 1000, (50, 29)),
        ("postgres", (), 999, 999, (50,)),
        # A number known to passwd: same as its name (runc matches the uid).
        ("1000", (), 1000, 1000, (50, 29)),
        # A number unknown to passwd: gid 0, no supplementary groups.
        ("5000", (), 5000, 0, ()),
        # A numeric user is always a uid, never the name "1234".
        ("1234", (), 1234, 0, ()),
        # An explicit group replaces the gid and brings no supplementary groups.
        ("app:staff", (), 1000, 50, ()),
        ("1000:1000", (), 1000, 1000, ()),
        ("5000:5000", (), 5000, 5000, ()),
        ("app:7", (), 1000, 7, ()),
        # --group-add by name and number, in every form; keep-groups is podman's, not a gid.
        ("1000:1000", ("audio", "4242"), 1000, 1000, (29, 4242)),
        ("app", ("staff", "keep-groups"), 1000, 1000, (50, 29)),
    ],
)
def test_resolve_identity_like_runc(spec, group_add, uid, gid, groups) -> None:
    identity = resolve_identity(spec, ACCOUNTS, group_add)
    assert (identity.uid, identity.gid, identity.groups) == (uid, gid, groups)


@pytest.mark.parametrize(
    ("spec", "group_add", "words"),
    [
        ("ghost", (), "user 'ghost' of the container is not in its /etc/passwd"),
        ("app:ghosts", (), "group 'ghosts' of the container is not in its /etc/group"),
        ("app", ("ghosts",), "additional group 'ghosts'"),
        ("99999999999", (), "out of range"),
    ],
)
def test_resolve_identity_errors_name_what_is_missing(spec, group_add, words) -> None:
    with pytest.raises(IdentityError, match=words):
        resolve_identity(spec, ACCOUNTS, group_add)


def test_resolve_identity_without_the_container_files_takes_numbers_only() -> None:
    assert resolve_identity("1000:1000", None).gid == 1000
    assert resolve_identity("1000", None).gid == 0
    with pytest.raises(IdentityError):
        resolve_identity("app", None)


# --------------------------------------------------------------------------------------------
# ID maps for each namespace mode


def test_rootful_is_the_identity() -> None:
    assert IDENTITY.to_host(0) == 0
    assert IDENTITY.to_host(1000) == 1000
    assert IDENTITY.to_host(4294967294) == 4294967294
    assert IDENTITY.is_identity


@pytest.mark.parametrize(
    ("container_id", "host_id"),
    [(0, 1001), (1, 100000), (999, 100998), (65536, 165535), (65537, None)],
)
def test_rootless_default_zero_is_the_user_and_n_is_subuid_start_plus_n_minus_one(container_id, host_id) -> None:
    assert rootless_map(1001, [(100000, 65536)]).to_host(container_id) == host_id


def test_rootless_with_two_subuid_ranges_concatenates_them_in_file_order() -> None:
    idmap = rootless_map(1001, [(300000, 10), (100000, 65536)])
    assert idmap.to_host(10) == 300009
    assert idmap.to_host(11) == 100000
    assert idmap.lines() == ["0:1001:1", "1:300000:10", "11:100000:65536"]


@pytest.mark.parametrize(("container_id", "host_id"), [(0, 231072), (1000, 232072), (65535, 296607), (65536, None)])
def test_docker_userns_remap(container_id, host_id) -> None:
    assert userns_remap_map([(231072, 65536)]).to_host(container_id) == host_id


@pytest.mark.parametrize(
    ("container_id", "host_id"),
    [(1002, 1002), (0, 400000), (1001, 401001), (1003, 401002), (65536, 465535)],
)
def test_keep_id_composed_with_the_rootless_namespace(container_id, host_id) -> None:
    outer = rootless_map(1002, [(400000, 65536)])
    # podman 4.3 inspect of a keep-id container of uid 1002 with 65536 subuids (its IDMappings).
    composed = parse_colon_map(["0:1:1002", "1002:0:1", "1003:1003:64534"]).compose(outer)
    assert composed.to_host(container_id) == host_id
    # What the kernel showed for the same container (/proc/PID/uid_map from the host).
    assert composed == parse_proc_map("0 400000 1002\n1002 1002 1\n1003 401002 64534\n")


def test_explicit_uidmap_rootful_is_container_to_host() -> None:
    idmap = parse_colon_map(["0:200000:65536"])
    assert idmap.to_host(999) == 200999
    assert idmap.to_container(200999) == 999
    assert not idmap.maps_host(0)


def test_explicit_uidmap_rootless_is_relative_to_the_rootless_namespace() -> None:
    inner = parse_colon_map(["0:1:500"])
    composed = inner.compose(rootless_map(1002, [(400000, 65536)]))
    assert composed.lines() == ["0:400000:500"]
    assert composed.to_host(0) == 400000
    assert composed.to_host(500) is None


def test_compose_drops_what_the_outer_namespace_does_not_map() -> None:
    inner = IdMap([IdMapping(0, 65530, 10)])
    outer = IdMap([IdMapping(0, 100000, 65536)])
    assert inner.compose(outer).lines() == ["0:165530:6"]


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("         0          0 4294967295\n", ["0:0:4294967295"]),
        ("0 1002 1\n1 400000 65536\n", ["0:1002:1", "1:400000:65536"]),
        ("garbage\n0 1 x\n", []),
    ],
)
def test_parse_proc_map(text, lines) -> None:
    assert parse_proc_map(text).lines() == lines


def test_parse_colon_map_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="inside:outside:length"):
        parse_colon_map(["0:1"])


def test_concatenated_skips_empty_ranges() -> None:
    assert concatenated([(5, 0), (10, 2)]).lines() == ["0:10:2"]


# --------------------------------------------------------------------------------------------
# The access table

DIR = stat.S_IFDIR
REG = stat.S_IFREG
RWX = READ | WRITE | EXECUTE
RX = READ | EXECUTE


def acl(*entries: tuple[int, int, int]) -> tuple[tuple[int, int, int], ...]:
    return tuple(sorted(entries))


def base_acl(mode: int, *named: tuple[int, int, int], mask: int | None = None) -> tuple[tuple[int, int, int], ...]:
    entries = [
        (ACL_USER_OBJ, ACL_UNDEFINED_ID, (mode >> 6) & 7),
        (ACL_GROUP_OBJ, ACL_UNDEFINED_ID, (mode >> 3) & 7),
        (ACL_OTHER, ACL_UNDEFINED_ID, mode & 7),
        *named,
    ]
    if mask is not None:
        entries.append((ACL_MASK, ACL_UNDEFINED_ID, mask))
    return acl(*entries)


ROOTLESS = rootless_map(1001, [(100000, 65536)])

# Short names keep one case on one line.
H = HostIdentity
A = base_acl
ROOTLESS_ROOT = HostIdentity(1001, 1001, (), True, ROOTLESS, ROOTLESS)

ACCESS_TABLE = [
    # id, (owner uid, gid, mode), acl, who, want, granted, via
    ("owner rwx", (1000, 1000, 0o755), None, H(1000, 1000), RWX, True, "owner"),
    ("owner without w", (1000, 1000, 0o555), None, H(1000, 1000), RWX, False, "owner"),
    ("owner bits win over group", (1000, 50, 0o070), None, H(1000, 50), RX, False, "owner"),
    ("other r-x cannot write", (0, 0, 0o755), None, H(1000, 1000), RWX, False, "other"),
    ("other r-x can read", (0, 0, 0o755), None, H(1000, 1000), RX, True, "other"),
    ("primary group", (0, 1000, 0o775), None, H(1000, 1000), RWX, True, "group"),
    ("supplementary group", (0, 50, 0o770), None, H(1000, 1000, (50,)), RWX, True, "group"),
    ("group bits win over other", (0, 50, 0o707), None, H(1000, 50), RX, False, "group"),
    ("other 0777", (0, 0, 0o777), None, H(100998, 100998), RWX, True, "other"),
    ("mode 0700 root", (0, 0, 0o700), None, H(1000, 1000), RX, False, "other"),
    # ACLs
    ("acl named user", (0, 0, 0o770), A(0o750, (ACL_USER, 1000, 7), mask=7), H(1000, 1000), RWX, True, "acl user"),
    ("acl user masked", (0, 0, 0o750), A(0o750, (ACL_USER, 1000, 7), mask=5), H(1000, 1000), RWX, False, "acl user"),
    ("acl named group", (0, 0, 0o770), A(0o750, (ACL_GROUP, 50, 7), mask=7), H(1000, 1000, (50,)), RWX, True,
     "acl group"),
    ("acl group obj", (0, 1000, 0o770), A(0o700, (ACL_USER, 5, 7), mask=7), H(1000, 1000), RWX, False, "acl group"),
    (
        "acl group matched but short denies even if other allows",
        (0, 0, 0o757), A(0o757, (ACL_GROUP, 1000, 5), mask=7), H(1000, 1000), RWX, False, "acl group",
    ),
    (
        "acl any one group entry must grant all",
        (0, 0, 0o770), A(0o700, (ACL_GROUP, 50, 5), (ACL_GROUP, 51, 7), mask=7), H(1000, 50, (51,)), RWX, True,
        "acl group",
    ),
    ("acl other", (0, 0, 0o775), A(0o775, (ACL_USER, 5, 7), mask=7), H(1000, 1000), RX, True, "other"),
    ("acl owner uses owner bits", (1000, 0, 0o700), A(0o700, (ACL_USER, 1000, 0), mask=0), H(1000, 1000), RWX, True,
     "owner"),
    # Capabilities: rootful root has CAP_DAC_OVERRIDE for everything.
    ("rootful root", (1000, 1000, 0o700), None, H(0, 0, (), True), RWX, True, "capability"),
    ("root without the capability", (1000, 1000, 0o700), None, H(0, 0, (), False), RWX, False, "other"),
    # Rootless root: only for inodes whose owner and group are mapped in its namespace.
    ("rootless root, owner mapped", (100998, 100998, 0o700), None, ROOTLESS_ROOT, RWX, True, "capability"),
    ("rootless root, owner unmapped", (0, 0, 0o755), None, ROOTLESS_ROOT, RWX, False, "other"),
    ("rootless root, group unmapped", (100998, 0, 0o700), None, ROOTLESS_ROOT, RWX, False, "other"),
]


@pytest.mark.parametrize(
    ("owner", "acl_entries", "who", "want", "granted", "via"),
    [row[1:] for row in ACCESS_TABLE],
    ids=[row[0] for row in ACCESS_TABLE],
)
def test_access_table(owner, acl_entries, who, want, granted, via) -> None:
    uid, gid, mode = owner
    result = check_access(PathFacts("/srv/x", uid, gid, DIR | mode, acl_entries), who, want)
    assert (result.granted, result.via) == (granted, via)
    if not granted:
        assert result.missing


def test_capability_does_not_make_a_file_without_x_executable() -> None:
    facts = PathFacts("/srv/f", 1000, 1000, REG | 0o600)
    assert check_access(facts, HostIdentity(0, 0, (), True), READ | WRITE).granted
    assert not check_access(facts, HostIdentity(0, 0, (), True), EXECUTE).granted


@pytest.mark.parametrize(
    ("is_dir", "read_only", "want"),
    [(True, False, RWX), (True, True, RX), (False, False, READ | WRITE), (False, True, READ)],
)
def test_needed_access(is_dir, read_only, want) -> None:
    assert needed_access(is_dir, read_only) == want


@pytest.mark.parametrize(
    ("perm", "words"),
    [(RWX, "read, write and enter"), (WRITE, "write"), (WRITE | EXECUTE, "write and enter"), (0, "use")],
)
def test_perm_words(perm, words) -> None:
    assert perm_words(perm) == words


def test_with_owner_predicts_a_chown() -> None:
    facts = PathFacts("/srv/x", 0, 0, DIR | 0o755)
    who = HostIdentity(1000, 1000)
    assert not check_access(facts, who, RWX).granted
    assert check_access(facts.with_owner(1000, 1000), who, RWX).granted
    assert not check_access(PathFacts("/srv/x", 0, 0, DIR | 0o555).with_owner(1000, 1000), who, RWX).granted


# --------------------------------------------------------------------------------------------
# ACLs as the kernel stores them (bytes produced by a real setfacl)


@pytest.fixture
def acl_dir() -> Iterator[str]:
    if shutil.which("setfacl") is None:
        pytest.fail("setfacl (Debian package acl) is needed for this test")
    with lib.scratch_dir("pf-acl-", 0o750) as path:
        yield path


def test_acl_from_a_real_setfacl_is_read_and_checked(acl_dir: str) -> None:
    subprocess.run(["setfacl", "-m", "u:4242:rwx,g:4343:r-x", acl_dir], check=True)
    entries = read_acl(acl_dir)
    assert entries is not None
    assert (ACL_USER, 4242, 7) in entries
    assert (ACL_GROUP, 4343, 5) in entries
    assert (ACL_MASK, ACL_UNDEFINED_ID, 7) in entries
    facts = path_facts(acl_dir)
    assert check_access(facts, HostIdentity(4242, 4242), RWX).granted
    assert check_access(facts, HostIdentity(5000, 5000, (4343,)), RX).granted
    assert not check_access(facts, HostIdentity(5000, 5000, (4343,)), RWX).granted
    assert not check_access(facts, HostIdentity(5000, 5000), RX).granted
    # The mask limits the named entries: a chmod g-w lowers it, so 4242 loses write.
    os.chmod(acl_dir, 0o750)
    assert not check_access(path_facts(acl_dir), HostIdentity(4242, 4242), RWX).granted
    assert check_access(path_facts(acl_dir), HostIdentity(4242, 4242), RX).granted


def test_no_acl_reads_as_none_and_a_symlink_is_not_followed(acl_dir: str) -> None:
    assert read_acl(acl_dir) is None
    subprocess.run(["setfacl", "-m", "u:4242:rwx", acl_dir], check=True)
    link = acl_dir + ".link"
    os.symlink(acl_dir, link)
    try:
        assert read_acl(link) is None
        assert read_acl(link, follow_symlinks=True) is not None
    finally:
        os.unlink(link)
