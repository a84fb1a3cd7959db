# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the ownership engine's pure parts: protected paths, samples, ACL logic."""

from __future__ import annotations

import struct

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._engines import walk as o
from ansible_collections.permfix.containers.plugins.module_utils._engines.walk import (
    OwnershipError,
    OwnershipReport,
    Sample,
    Target,
)
from ansible_collections.permfix.containers.plugins.module_utils._host import acl, paths
from ansible_collections.permfix.containers.plugins.module_utils._host.acl import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_UNDEFINED_ID,
    ACL_USER,
    ACL_USER_OBJ,
    AclError,
    acl_from_mode,
    acl_grant,
    acl_text,
    build_acl,
    parse_acl,
    plan_acl,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.paths import (
    normalize_path,
    refusal_reason,
)

U = ACL_UNDEFINED_ID
HOMES = ["/home/alice", "/var/lib/postgresql", "/srv/svc"]
STORAGE = ["/home/alice/.local/share/containers", "/data/docker"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/", "system directory"),
        ("/etc", "/etc holds the system's configuration"),
        ("/etc/", "/etc holds"),
        ("/etc/ssh", "inside /etc"),
        ("/usr", "/usr holds"),
        ("/usr/local/share/x", "inside /usr"),
        ("/bin", "/bin holds"),
        ("/sbin/x", "inside /sbin"),
        ("/lib", "libraries"),
        ("/lib64", "libraries"),
        ("/lib32/x", "libraries"),
        ("/libx32", "libraries"),
        ("/boot/grub", "boot loader"),
        ("/dev", "device nodes"),
        ("/dev/shm/x", "device nodes"),
        ("/proc", "process filesystem"),
        ("/proc/1/root", "process filesystem"),
        ("/sys/fs/cgroup", "sysfs"),
        ("/run", "running system"),
        ("/run/user/1000", "running system"),
        ("/var/run", "running system"),
        ("/var/run/docker.sock", "running system"),
        ("/var/lib/docker", "container storage"),
        ("/var/lib/docker/volumes/v/_data", "container storage"),
        ("/var/lib/containers/storage/volumes/v/_data", "container storage"),
        ("/data/docker/volumes/x", "container storage (/data/docker)"),
        ("/home/alice/.local/share/containers/storage", "container storage"),
        ("/home/alice", "home directory itself"),
        ("/home/alice/", "home directory itself"),
        ("/var/lib/postgresql", "home directory itself"),
        ("/home", "system directory"),
        ("/root", "system directory"),
        ("/var", "system directory"),
        ("/var/lib", "system directory"),
        ("/tmp", "system directory"),
        ("/var/tmp", "system directory"),
        ("/srv", "system directory"),
        ("/opt", "system directory"),
        ("//etc/../etc", "/etc holds"),
        ("/srv/app/../../etc", "/etc holds"),
        ("relative/path", "not an absolute path"),
    ],
)
def test_refused(path: str, fragment: str) -> None:
    reason = refusal_reason(path, HOMES, STORAGE)
    assert reason is not None and fragment in reason


@pytest.mark.parametrize(
    "path",
    [
        "/srv/app/data",
        "/srv/svc/data",  # inside a home: allowed
        "/home/alice/data",
        "/home/alice/.local/share/other",
        "/var/lib/app",
        "/var/lib/dockerish",  # a prefix of a protected name is not inside it
        "/opt/app",
        "/tmp/x",
        "/var/tmp/build",
        "/mnt/data",
        "/data/volumes",
        "/etcetera",
        "/usrdata",
    ],
)
def test_allowed(path: str) -> None:
    assert refusal_reason(path, HOMES, STORAGE) is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/a/b/", "/a/b"), ("//a//b", "/a/b"), ("///a", "/a"), ("/a/./b/../c", "/a/c"), ("/", "/")],
)
def test_normalize_path(path: str, expected: str) -> None:
    assert normalize_path(path) == expected


def test_host_protected_paths_reads_configuration(tmp_path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "daemon.json").write_text('{"data-root": "/data/docker"}')
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "storage.conf").write_text(
        '[storage]\ndriver = "overlay"\ngraphroot = "/data/containers"\nrunroot = "/run/c"\n'
        'rootless_storage_path = "$HOME/.local/x"\n'
    )
    homes, storage = paths.host_protected_paths(etc=str(tmp_path))
    assert "/root" in homes or homes  # the host's own users are listed
    assert "/data/docker" in storage
    assert "/data/containers" in storage
    assert not any("$" in item for item in storage)
    assert "/var/lib/docker" in storage


# -- samples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "added"), [(0, 0), (0, 5), (3, 2), (3, 3), (3, 10), (20, 1000)])
def test_sample_keeps_at_most_limit_and_counts_all(limit: int, added: int) -> None:
    sample = Sample(limit)
    for number in range(added):
        sample.add(number)
    assert sample.total == added
    assert sample.items == list(range(min(limit, added)))
    assert sample.truncated == max(0, added - limit)
    assert sample.full == (added >= limit)


def test_sample_rejects_negative_limit() -> None:
    with pytest.raises(ValueError):
        Sample(-1)


def test_report_samples_follow_sample_size() -> None:
    report = OwnershipReport(path="/x", real_path="/x", target=Target(uid=1), check_mode=True, sample_size=2)
    for number in range(5):
        report.changes.add({"path": f"/x/{number}", "before": "0:0", "after": "1:0"})
        report.failures.add({"path": f"/x/{number}", "error": "e"})
    data = report.as_dict()
    assert len(data["sample"]) == 2 and len(data["failures"]) == 2
    assert report.changes.total == 5


# -- targets and summaries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (Target(uid=1000, gid=1000), "chown 1000:1000"),
        (Target(uid=1000), "chown 1000"),
        (Target(gid=50), "chown :50"),
        (Target(uid=7, gid=8, strategy="acl"), "ACL rwX for user:7 and group:8"),
        (Target(gid=8, strategy="acl"), "ACL rwX for group:8"),
    ],
)
def test_target_describe(target: Target, text: str) -> None:
    assert target.describe() == text


@pytest.mark.parametrize(
    ("target", "message"),
    [(Target(), "owner, a group or both"), (Target(uid=1, strategy="copy"), "strategy must be one of")],
)
def test_target_check(target: Target, message: str) -> None:
    with pytest.raises(OwnershipError, match=message):
        target.check()


@pytest.mark.parametrize(
    ("to_change", "entries", "text"),
    [(0, 12, "nothing to change among 12 entries"), (1204, 1310, "chown 1000:1000 on 1,204 of 1,310 entries")],
)
def test_summary(to_change: int, entries: int, text: str) -> None:
    report = OwnershipReport(path="/x", real_path="/x", target=Target(1000, 1000), check_mode=True, sample_size=1)
    report.counts.update(to_change=to_change, entries=entries)
    assert report.summary() == text


def test_problems_name_every_kind() -> None:
    report = OwnershipReport(path="/x", real_path="/x", target=Target(1), check_mode=False, sample_size=1)
    report.counts.update(failed=2, skipped_hardlinks=1, skipped_devices=1, skipped_mounts=1)
    report.failures.add({"path": "/x/a", "error": "operation not permitted"})
    report.failures.add({"path": "/x/b", "error": "operation not permitted"})
    report.hardlinks.add({"path": "/x/h"})
    report.devices.add({"path": "/x/d"})
    report.mounts.add({"path": "/x/m"})
    report.root_deferred = "root left alone"
    text = " | ".join(report.problems())
    for fragment in (
        "2 entries could not",
        "/x/a: operation not permitted",
        "and 1 more",
        "/x/h",
        "/x/d",
        "/x/m",
        "root left alone",
    ):
        assert fragment in text


@pytest.mark.parametrize(("requested", "expected"), [(1, 4), (8, 8), (300, 300)])
def test_fd_budget_requested(requested: int, expected: int) -> None:
    assert o._fd_budget(requested) == expected


def test_fd_budget_default_is_bounded() -> None:
    assert 16 <= o._fd_budget(None) <= 1024


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("/srv/a\\040b", "/srv/a b"), ("/plain", "/plain"), ("/tab\\011x", "/tab\tx")],
)
def test_unescape_mount_point(raw: str, expected: str) -> None:
    assert o._unescape_mount_point(raw) == expected


# -- ACLs --------------------------------------------------------------------------------------


def acl_bytes(*entries: tuple) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries)


def test_parse_and_build_round_trip() -> None:
    data = acl_bytes(
        (ACL_USER_OBJ, 7, U), (ACL_USER, 7, 1000), (ACL_GROUP_OBJ, 5, U), (ACL_MASK, 7, U), (ACL_OTHER, 5, U)
    )
    entries = parse_acl(data)
    assert entries == [
        (ACL_USER_OBJ, U, 7), (ACL_USER, 1000, 7), (ACL_GROUP_OBJ, U, 5), (ACL_MASK, U, 7), (ACL_OTHER, U, 5)
    ]
    assert build_acl(entries) == data


def test_build_sorts_by_tag_then_id() -> None:
    entries = [
        (ACL_OTHER, U, 0),
        (ACL_USER, 20, 6),
        (ACL_USER, 10, 6),
        (ACL_USER_OBJ, U, 7),
        (ACL_GROUP_OBJ, U, 0),
        (ACL_MASK, U, 6),
    ]
    tags = [struct.unpack_from("<HHI", build_acl(entries), 4 + 8 * i) for i in range(6)]
    assert [(tag, ident) for tag, _perm, ident in tags] == [
        (ACL_USER_OBJ, U), (ACL_USER, 10), (ACL_USER, 20), (ACL_GROUP_OBJ, U), (ACL_MASK, U), (ACL_OTHER, U)
    ]


@pytest.mark.parametrize("data", [b"", b"\x02\x00\x00", acl_bytes() + b"\x01", struct.pack("<I", 1)])
def test_parse_rejects_bad_xattrs(data: bytes) -> None:
    with pytest.raises(AclError):
        parse_acl(data)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(0o755, [(1, U, 7), (4, U, 5), (0x20, U, 5)]), (0o640, [(1, U, 6), (4, U, 4), (0x20, U, 0)])],
)
def test_acl_from_mode(mode: int, expected: list) -> None:
    assert acl_from_mode(mode) == expected


@pytest.mark.parametrize(
    ("entries", "grants", "perm", "expected"),
    [
        # minimal ACL: the mask becomes the union of the group class (setfacl -m)
        (acl_from_mode(0o750), [(ACL_USER, 1000)], 7,
         [(1, U, 7), (2, 1000, 7), (4, U, 5), (0x10, U, 7), (0x20, U, 0)]),
        (acl_from_mode(0o644), [(ACL_USER, 1000)], 6,
         [(1, U, 6), (2, 1000, 6), (4, U, 4), (0x10, U, 6), (0x20, U, 4)]),
        # existing mask: widened only by the granted permissions
        ([(1, U, 7), (2, 5, 7), (4, U, 5), (0x10, U, 4), (0x20, U, 0)], [(ACL_USER, 1000)], 2,
         [(1, U, 7), (2, 5, 7), (2, 1000, 2), (4, U, 5), (0x10, U, 6), (0x20, U, 0)]),
        # existing entry: permissions only added, never removed
        ([(1, U, 7), (2, 1000, 4), (4, U, 5), (0x10, U, 5), (0x20, U, 0)], [(ACL_USER, 1000)], 6,
         [(1, U, 7), (2, 1000, 6), (4, U, 5), (0x10, U, 7), (0x20, U, 0)]),
        # user and group together
        (acl_from_mode(0o700), [(ACL_USER, 1), (ACL_GROUP, 2)], 7,
         [(1, U, 7), (2, 1, 7), (4, U, 0), (8, 2, 7), (0x10, U, 7), (0x20, U, 0)]),
    ],
)
def test_acl_grant(entries: list, grants: list, perm: int, expected: list) -> None:
    assert acl_grant(entries, grants, perm) == expected


def test_acl_grant_is_idempotent() -> None:
    once = acl_grant(acl_from_mode(0o750), [(ACL_USER, 1000)], 7)
    assert acl_grant(once, [(ACL_USER, 1000)], 7) == once


def test_acl_text_like_getfacl() -> None:
    entries = acl_grant(acl_from_mode(0o750), [(ACL_USER, 1000)], 7)
    assert acl_text(entries) == "user::rwx,user:1000:rwx,group::r-x,mask::rwx,other::---"
    assert acl_text(entries, "default:").startswith("default:user::rwx,")


@pytest.mark.parametrize(
    ("mode", "access_perm", "has_default"),
    [
        (0o040755, 7, True),  # directory: rwx and a default ACL
        (0o100644, 6, False),  # plain file: rw
        (0o100744, 7, False),  # executable file: rwx (the X of rwX)
        (0o010644, 6, False),  # FIFO: rw
    ],
)
def test_plan_acl_from_nothing(mode: int, access_perm: int, has_default: bool) -> None:
    plan = plan_acl(None, None, mode, [(ACL_USER, 1000)])
    assert plan.needed
    access = parse_acl(plan.access)
    assert (ACL_USER, 1000, access_perm) in access
    assert (plan.default is not None) == has_default
    if has_default:
        default = parse_acl(plan.default)
        assert (ACL_USER, 1000, 7) in default
        # base entries of a new default ACL come from the access ACL (the mode)
        assert (ACL_USER_OBJ, U, (mode >> 6) & 7) in default
        assert (ACL_OTHER, U, mode & 7) in default
        assert (ACL_MASK, U, 7) in default
    assert "user:1000:---" in plan.before
    assert f"user:1000:{acl._PERM_TEXT[access_perm]}" in plan.after


def test_plan_acl_nothing_to_do_when_granted() -> None:
    first = plan_acl(None, None, 0o040750, [(ACL_USER, 1000), (ACL_GROUP, 2000)])
    again = plan_acl(first.access, first.default, 0o040770, [(ACL_USER, 1000), (ACL_GROUP, 2000)])
    assert not again.needed
    assert again.access is None and again.default is None


def test_plan_acl_keeps_existing_default_entries() -> None:
    default = build_acl([(1, U, 7), (2, 5, 5), (4, U, 5), (0x10, U, 5), (0x20, U, 5)])
    plan = plan_acl(None, default, 0o040755, [(ACL_USER, 1000)])
    entries = parse_acl(plan.default)
    assert (ACL_USER, 5, 5) in entries and (ACL_USER, 1000, 7) in entries
    assert (ACL_MASK, U, 7) in entries


def test_plan_acl_group_obj_not_mask_seeds_default() -> None:
    # A directory whose access ACL has a mask: the default's group entry copies group::, not the mask.
    access = build_acl([(1, U, 7), (2, 9, 7), (4, U, 0), (0x10, U, 7), (0x20, U, 0)])
    plan = plan_acl(access, None, 0o040770, [(ACL_USER, 1000)])
    assert (ACL_GROUP_OBJ, U, 0) in parse_acl(plan.default)


# -- issue 13: more protected trees, mount sources, advice, the worker cap ------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/root/.ssh", "root's SSH keys"),
        ("/root/.ssh/authorized_keys", "inside /root/.ssh"),
        ("/home/alice/.ssh", "SSH keys"),
        ("/srv/svc/.ssh/id_ed25519", "inside /srv/svc/.ssh"),  # a home from the user database
        ("/home/ldapuser/.ssh", "SSH keys"),  # a home below /home that getpwall() does not list
        ("/var/lib/dpkg", "package manager"),
        ("/var/lib/dpkg/info", "package manager"),
        ("/var/lib/rpm", "package manager"),
        ("/var/spool/cron/crontabs", "crontabs"),
        ("/var/lib/kubelet/pods", "kubelet"),
        ("/var/lib/systemd/credential.secret", "systemd"),
        ("/nix/store/abc-hello", "Nix store"),
        ("/nix", "system directory"),
        ("/efi/EFI", "EFI"),
        ("/snap/core/123", "snap"),
    ],
)
def test_refused_since_issue_13(path: str, fragment: str) -> None:
    reason = refusal_reason(path, HOMES, STORAGE)
    assert reason is not None and fragment in reason, reason


@pytest.mark.parametrize("path", ["/home/alice/.sshx", "/home/alice/ssh", "/srv/app/.ssh-backup", "/nixos"])
def test_allowed_since_issue_13(path: str) -> None:
    assert refusal_reason(path, HOMES, STORAGE) is None


MOUNTINFO = """\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /tmp rw shared:2 - tmpfs tmpfs rw
41 22 253:0 /etc /srv/jail/etc rw,relatime - ext4 /dev/vda rw
42 22 253:0 /etc/passwd /srv/jail/passwd rw,relatime - ext4 /dev/vda rw
43 22 253:0 /var/lib/with\\040space /srv/x rw - ext4 /dev/vda rw
44 30 0:26 /sub /srv/fromtmp rw - tmpfs tmpfs rw
"""


def test_parse_mountinfo_reads_ids_devices_roots_and_points() -> None:
    mounts = paths.parse_mountinfo(MOUNTINFO + "garbage line\n")
    assert [m.mnt_id for m in mounts] == [22, 30, 41, 42, 43, 44]
    assert mounts[4].root == "/var/lib/with space" and mounts[1].point == "/tmp"


@pytest.mark.parametrize(
    ("mnt_id", "inside", "expected"),
    [
        (41, "", ["/etc"]),
        (41, "ssh", ["/etc/ssh"]),
        (42, "", ["/etc/passwd", "/srv/jail/etc/passwd"]),  # and through the other bind mount
        (43, "", ["/var/lib/with space"]),
        (44, "a", ["/tmp/sub/a"]),
        (22, "srv", []),  # the root filesystem: nothing else shows it
        (99, "", []),  # unknown mount
    ],
)
def test_mount_sources(mnt_id: int, inside: str, expected: list) -> None:
    assert paths.mount_sources(paths.parse_mountinfo(MOUNTINFO), mnt_id, inside) == expected


def test_root_advice_only_for_a_process_that_is_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible_collections.permfix.containers.plugins.module_utils._core import errors

    monkeypatch.setattr(errors.os, "geteuid", lambda: 0)
    assert errors.root_advice("; run as root") == "" and errors.root_advice("a", "b") == "b"
    assert "run as root" not in o._error_text(PermissionError(13, "Permission denied"))
    monkeypatch.setattr(errors.os, "geteuid", lambda: 1000)
    assert errors.root_advice("; run as root") == "; run as root"
    assert "become" in o._error_text(PermissionError(13, "Permission denied"))


def test_subid_read_error_gives_no_root_advice_to_root(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible_collections.permfix.containers.plugins.module_utils._core import errors
    from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import (
        SubidError,
        read_subid_file,
    )

    monkeypatch.setattr(errors.os, "geteuid", lambda: 0)
    with pytest.raises(SubidError) as caught:
        read_subid_file("subuid", str(tmp_path))  # a directory: unreadable as a file, even by root
    assert "run as root" not in str(caught.value) and "subuid_path" in str(caught.value)


@pytest.mark.parametrize("requested", [1, 2, 3, 4, 8, 64])
def test_worker_count_is_capped(requested: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(o, "usable_cpus", lambda: 3)
    assert o.worker_count(requested) == min(requested, 3, o.MAX_WORKERS)
    assert o.worker_count(0) == 3


def test_too_many_files_names_the_limits_and_ulimit() -> None:
    import errno

    text = o.too_many_files("/srv/x", errno.EMFILE)
    assert "ulimit -n" in text and "soft " in text and "hard " in text
    assert "fs.file-max" in o.too_many_files("/srv/x", errno.ENFILE)


def test_report_dict_is_valid_utf8() -> None:
    report = o.OwnershipReport(path="/srv/x", real_path="/srv/x", target=o.Target(uid=1), check_mode=True,
                               sample_size=5)
    report.changes.add({"path": "/srv/x/caf\udce9", "before": "0:0", "after": "1:0"})
    shown = report.as_dict()
    assert ascii(shown["sample"][0]["path"]) == ascii("/srv/x/caf\\xe9")  # ascii(): a surrogate breaks xdist


def test_run_detection_results_are_valid_utf8() -> None:
    from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import Detection, run_detection

    class Module:
        params: dict = {}
        exited: dict = {}

        def exit_json(self, **kwargs):  # type: ignore[no-untyped-def]
            self.exited = kwargs

        def warn(self, text: str) -> None:
            pass

        def run_command(self, *args, **kwargs):  # type: ignore[no-untyped-def]  # pragma: no cover
            raise AssertionError("no command")

    detection = Detection("bind_mount", "bind_mount_info", {}, lambda params: None,
                          lambda request, runner: {"paths": ["/srv/caf\udce9"]})
    module = Module()
    run_detection(module, detection)
    assert ascii(module.exited["paths"]) == ascii(["/srv/caf\\xe9"])
