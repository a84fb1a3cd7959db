# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of _sysctl: parsing, sysctl --system precedence on temporary trees, planning, writing."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.permfix.containers.plugins.module_utils._core.atomic import write_atomically
from ansible_collections.permfix.containers.plugins.module_utils._host.sysctl import (
    KERNEL_DEFAULT_UNPRIVILEGED_PORT,
    UNPRIVILEGED_PORT_KEY,
    SysctlError,
    list_config_files,
    parse_sysctl_line,
    parse_value,
    read_local_port_range,
    read_runtime,
    resolve,
    sysctl_lines,
    write_runtime,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.sysctl_plan import (
    DROPIN_NAME,
    MARKER,
    FileChange,
    apply_file_changes,
    dropin_content,
    dropin_name_after,
    is_managed,
    plan_dropin,
    plan_in_place,
    replace_value_in_line,
)

KEY = UNPRIVILEGED_PORT_KEY
SUBDIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d")


class Tree:
    """A temporary root with the five sysctl directories and etc/sysctl.conf."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in SUBDIRS:
            (root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def dirs(self) -> list[str]:
        return [str(self.root / sub) for sub in SUBDIRS]

    @property
    def conf(self) -> str:
        return str(self.root / "etc" / "sysctl.conf")

    def write(self, relative: str, text: str) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)

    def link(self, relative: str, target: str) -> str:
        path = self.root / relative
        path.symlink_to(target)
        return str(path)

    def resolve(self):
        return resolve(KEY, self.dirs, self.conf)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("net.ipv4.ip_unprivileged_port_start = 80", (KEY, "80", False)),
        ("net.ipv4.ip_unprivileged_port_start=80", (KEY, "80", False)),
        ("  \tnet.ipv4.ip_unprivileged_port_start\t=\t 80 \t\r\n", (KEY, "80", False)),
        ("\v\fnet.ipv4.ip_unprivileged_port_start\v=\f80\v\r\n", (KEY, "80", False)),
        ("net/ipv4/ip_unprivileged_port_start = 80", ("net/ipv4/ip_unprivileged_port_start", "80", False)),
        ("-net.ipv4.ip_unprivileged_port_start = 80", (KEY, "80", True)),
        ("--net.ipv4.ip_unprivileged_port_start = 80", ("-" + KEY, "80", True)),
        ("net.ipv4.ip_unprivileged_port_start = 80 # web", (KEY, "80 # web", False)),
        ("net.ipv4.ip_unprivileged_port_start = ", (KEY, "", False)),
        ("net.ipv4.ip_unprivileged_port_start = 80\x00 # after a NUL", (KEY, "80", False)),
        ("kernel.pid_max = 4194304", ("kernel.pid_max", "4194304", False)),
        ("# net.ipv4.ip_unprivileged_port_start = 80", None),
        ("   # net.ipv4.ip_unprivileged_port_start = 80", None),
        ("; net.ipv4.ip_unprivileged_port_start = 80", None),
        ("\x00net.ipv4.ip_unprivileged_port_start = 80", None),
        ("", None),
        ("\n", None),
        ("x", None),
        ("net.ipv4.ip_unprivileged_port_start", None),
        ("= 80", ("", "80", False)),
    ],
)
def test_parse_line(line: str, expected: tuple[str, str, bool] | None) -> None:
    parsed = parse_sysctl_line(line)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.key, parsed.raw_value, parsed.ignore_errors) == expected


@pytest.mark.parametrize(
    ("line", "sets"),
    [
        (f"{KEY} = 80", True),
        ("net/ipv4/ip_unprivileged_port_start = 80", True),
        ("-net/ipv4/ip_unprivileged_port_start = 80", True),
        ("--net.ipv4.ip_unprivileged_port_start = 80", True),
        ("---net.ipv4.ip_unprivileged_port_start = 80", False),
        ("- net.ipv4.ip_unprivileged_port_start = 80", False),  # procps opens "/proc/sys/ net/..."
        ("net/ipv4.ip_unprivileged_port_start = 80", False),  # mixed separators: not the same file
        ("net.ipv4/ip_unprivileged_port_start = 80", False),
        ("net..ipv4.ip_unprivileged_port_start = 80", True),  # net//ipv4/...: still the file
        (".net.ipv4.ip_unprivileged_port_start = 80", True),
        ("net.ipv4.ip_unprivileged_port_start. = 80", False),  # a slash after a file
        ("net/ipv4/../ipv4/ip_unprivileged_port_start = 80", True),
        ("net.ipv4.ip_unprivileged_port_* = 80", True),
        ("net.*.ip_unprivileged_port_start = 80", True),
        ("net.ipv4.ip_[u]nprivileged_port_start = 80", True),
        ("net.ipv4.ip_[!u]nprivileged_port_start = 80", False),
        ("net.ipv4.ip_unprivileged_port_\\s* = 80", True),
        ("net.ipv4.ip_unprivileged_port_sta = 80", False),
        ("NET.IPV4.IP_UNPRIVILEGED_PORT_START = 80", False),
        ("-net.ipv4.ip_unprivileged_port_start", False),  # an exclusion sets nothing
    ],
)
def test_which_lines_set_the_key(line: str, sets: bool) -> None:
    parsed = parse_sysctl_line(line)
    assert parsed is not None
    assert (parsed.raw_value is not None and parsed.names(KEY) is not None) is sets


def test_lines_end_only_at_newline() -> None:
    text = "# old\rnet.ipv4.ip_unprivileged_port_start = 80\n#\x0b\x0c\x1c\x1d\x1e\u0085\u2028\u2029 x = 1\nlast"
    assert sysctl_lines(text) == [
        "# old\rnet.ipv4.ip_unprivileged_port_start = 80\n",
        "#\x0b\x0c\x1c\x1d\x1e\u0085\u2028\u2029 x = 1\n",
        "last",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("80", 80),
        (" 80 ", 80),
        ("0", 0),
        ("65535", 65535),
        ("+80", None),
        ("0x50", 80),
        ("010", 8),
        ("80 # web", 80),
        ("80\t1", 80),
        ("65536", None),
        ("-1", None),
        ("-0", 0),
        ("abc", None),
        ("80#web", None),
        ("8O", None),
        ("08", None),
        ("", None),
        ("   ", None),
        ("1e3", None),
        ("80\vx", None),
        ("80\rx", None),
        ("\xa080", None),  # U+00A0 is two bytes, C2 A0, and C2 is not a space to the kernel
        ("\udca080", 80),  # a lone A0 byte is
        ("0x", None),
        ("0x1g", None),
        ("00", 0),
        ("99999999999999999999", None),
        ("000000000000000000120", None),  # 21 characters: the kernel refuses
        ("00000000000000000120", 80),  # octal
        ("-", None),
        ("--1", None),
    ],
)
def test_parse_value(raw: str, expected: int | None) -> None:
    assert parse_value(raw) == expected


# ------------------------------------------------------------------ precedence


def test_nothing_sets_the_key_gives_the_kernel_default(tree: Tree) -> None:
    tree.write("usr/lib/sysctl.d/50-pid-max.conf", "kernel.pid_max = 4194304\n")
    resolution = tree.resolve()
    assert resolution.value == KERNEL_DEFAULT_UNPRIVILEGED_PORT
    assert resolution.winner is None
    assert resolution.as_dict() == {"value": 1024, "path": None, "line": None, "default": True}


def test_a_file_in_etc_hides_the_same_name_in_usr_lib(tree: Tree) -> None:
    vendor = tree.write("usr/lib/sysctl.d/60-ports.conf", f"{KEY} = 22\n")
    local = tree.write("etc/sysctl.d/60-ports.conf", f"{KEY} = 443\n")
    resolution = tree.resolve()
    assert resolution.value == 443
    assert resolution.winner is not None and resolution.winner.path == local
    masked = [item for item in resolution.assignments if not item.applied]
    assert [(item.path, item.value) for item in masked] == [(vendor, 22)]
    assert [f.masked_by for f in resolution.files if f.path == vendor] == [local]


@pytest.mark.parametrize(
    ("higher", "lower"),
    [
        ("etc/sysctl.d", "run/sysctl.d"),
        ("run/sysctl.d", "usr/local/lib/sysctl.d"),
        ("usr/local/lib/sysctl.d", "usr/lib/sysctl.d"),
        ("usr/lib/sysctl.d", "lib/sysctl.d"),
        ("etc/sysctl.d", "lib/sysctl.d"),
    ],
)
def test_directory_priority_for_same_names(tree: Tree, higher: str, lower: str) -> None:
    tree.write(f"{lower}/10-x.conf", f"{KEY} = 1\n")
    tree.write(f"{higher}/10-x.conf", f"{KEY} = 2\n")
    assert tree.resolve().value == 2


def test_files_apply_by_name_whatever_the_directory(tree: Tree) -> None:
    tree.write("etc/sysctl.d/10-local.conf", f"{KEY} = 80\n")
    vendor = tree.write("usr/lib/sysctl.d/90-vendor.conf", f"{KEY} = 1024\n")
    resolution = tree.resolve()
    assert resolution.value == 1024
    assert resolution.winner is not None and resolution.winner.path == vendor
    assert [item.value for item in resolution.applied_assignments] == [80, 1024]


def test_names_sort_by_bytes_not_numbers_or_case(tree: Tree) -> None:
    tree.write("etc/sysctl.d/9-a.conf", f"{KEY} = 9\n")
    tree.write("etc/sysctl.d/10-a.conf", f"{KEY} = 10\n")  # "10" < "9"
    tree.write("etc/sysctl.d/Z.conf", f"{KEY} = 26\n")
    tree.write("etc/sysctl.d/a.conf", f"{KEY} = 27\n")  # "Z" < "a"
    assert [item.value for item in tree.resolve().applied_assignments] == [10, 9, 26, 27]


def test_sysctl_conf_applies_after_every_dropin(tree: Tree) -> None:
    tree.write("etc/sysctl.d/zzzz.conf", f"{KEY} = 80\n")
    tree.write("etc/sysctl.conf", f"# comment\n{KEY}=1024\n")
    resolution = tree.resolve()
    assert resolution.value == 1024
    assert resolution.winner is not None and resolution.winner.is_conf and resolution.winner.line == 2


def test_debian_link_to_sysctl_conf_applies_at_both_places(tree: Tree) -> None:
    tree.write("etc/sysctl.conf", f"{KEY} = 443\n")
    tree.link("etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
    tree.write("etc/sysctl.d/50-a.conf", f"{KEY} = 22\n")
    resolution = tree.resolve()
    paths = [(os.path.basename(item.path), item.value) for item in resolution.applied_assignments]
    assert paths == [("50-a.conf", 22), ("99-sysctl.conf", 443), ("sysctl.conf", 443)]
    assert resolution.winner is not None and resolution.winner.is_conf
    assert resolution.assignments[1].real_path == os.path.realpath(tree.conf)


def test_last_line_of_a_file_wins_and_invalid_values_do_not(tree: Tree) -> None:
    tree.write(
        "etc/sysctl.d/50-a.conf",
        f"{KEY} = 22\n# {KEY} = 1\n; {KEY} = 2\n{KEY} = 80\n{KEY} = eighty\n-{KEY} = 99999\n",
    )
    resolution = tree.resolve()
    assert resolution.value == 80
    assert resolution.winner is not None and resolution.winner.line == 4
    assert [(item.line, item.valid) for item in resolution.assignments] == [
        (1, True),
        (4, True),
        (5, False),
        (6, False),
    ]


@pytest.mark.parametrize(
    "text",
    [
        f"-{KEY} = 80\n",
        "net/ipv4/ip_unprivileged_port_start = 80\n",
        f"   {KEY}\t=\t80   \n",
        f"{KEY}=80\r\n",
        f"{KEY} = 0x50\n",
        f"# header\n\n{KEY} = 80\n",
    ],
)
def test_spellings_of_the_same_assignment(tree: Tree, text: str) -> None:
    tree.write("etc/sysctl.d/50-a.conf", text)
    assert tree.resolve().value == 80


@pytest.mark.parametrize(
    "name",
    ["README", "50-a.conf.bak", "50-a.conf~", "50-a.CONF", "50-a.cnf", "conf"],
)
def test_only_dot_conf_files_count(tree: Tree, name: str) -> None:
    tree.write(f"etc/sysctl.d/{name}", f"{KEY} = 80\n")
    assert tree.resolve().value == 1024


def test_a_link_to_dev_null_masks_a_vendor_file(tree: Tree) -> None:
    tree.write("usr/lib/sysctl.d/50-vendor.conf", f"{KEY} = 0\n")
    tree.link("etc/sysctl.d/50-vendor.conf", "/dev/null")
    resolution = tree.resolve()
    assert resolution.value == 1024
    assert [item.applied for item in resolution.assignments] == [False]


def test_merged_usr_lib_link_is_not_reported_as_masking(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/sysctl.d").mkdir(parents=True)
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "usr/lib/sysctl.d/50-a.conf").write_text(f"{KEY} = 80\n")
    dirs = [str(tmp_path / sub) for sub in SUBDIRS]
    files = list_config_files(dirs, str(tmp_path / "etc/sysctl.conf"))
    assert [(f.path, f.applied) for f in files] == [(str(tmp_path / "usr/lib/sysctl.d/50-a.conf"), True)]
    assert resolve(KEY, dirs, str(tmp_path / "etc/sysctl.conf")).value == 80


def test_missing_directories_and_conf_are_fine(tmp_path: Path) -> None:
    resolution = resolve(KEY, [str(tmp_path / "nope")], str(tmp_path / "sysctl.conf"))
    assert resolution.value == 1024 and resolution.files == []


# ------------------------------------------------------------------ naming and planning


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], DROPIN_NAME),
        (["10-a.conf", "50-b.conf", "99-local.conf"], DROPIN_NAME),
        (["99-protect-links.conf"], "99-protect-links.permfix-unprivileged-port.conf"),
        (["99-sysctl.conf"], "99-sysctl.permfix-unprivileged-port.conf"),
        (["99-zzz.conf", "10-a.conf"], "99-zzz.permfix-unprivileged-port.conf"),
        (["zz.conf"], "zz.permfix-unprivileged-port.conf"),
        (["99-permfix-unprivileged-port.conf"], "99-permfix-unprivileged-port.permfix-unprivileged-port.conf"),
        ([".conf"], DROPIN_NAME),
    ],
)
def test_dropin_name_after(names: list[str], expected: str) -> None:
    name = dropin_name_after(names)
    assert name == expected
    assert all(os.fsencode(name) > os.fsencode(other) for other in names)


def test_plan_dropin_creates_the_default_name(tree: Tree) -> None:
    tree.write("usr/lib/sysctl.d/50-pid-max.conf", "kernel.pid_max = 4194304\n")
    changes = plan_dropin(tree.resolve(), 80, tree.dirs)
    assert [(os.path.basename(c.path), c.action) for c in changes] == [(DROPIN_NAME, "created")]
    assert changes[0].after == dropin_content(KEY, 80)
    assert is_managed(changes[0].after)


def test_plan_dropin_sorts_after_a_later_file_and_replaces_its_old_dropin(tree: Tree) -> None:
    tree.write(f"etc/sysctl.d/{DROPIN_NAME}", dropin_content(KEY, 80))
    tree.write("etc/sysctl.d/99-zz-local.conf", f"{KEY} = 1024\n")
    resolution = tree.resolve()
    assert resolution.value == 1024
    changes = plan_dropin(resolution, 80, tree.dirs)
    assert [(os.path.basename(c.path), c.action) for c in changes] == [
        ("99-zz-local.permfix-unprivileged-port.conf", "created"),
        (DROPIN_NAME, "removed"),
    ]
    apply_file_changes(changes)
    assert tree.resolve().value == 80
    assert plan_dropin(tree.resolve(), 80, tree.dirs) == []


def test_plan_dropin_is_empty_when_the_boot_value_is_right(tree: Tree) -> None:
    tree.write("usr/lib/sysctl.d/50-ports.conf", f"{KEY} = 80\n")
    assert plan_dropin(tree.resolve(), 80, tree.dirs) == []


def test_plan_dropin_updates_its_own_file(tree: Tree) -> None:
    path = tree.write(f"etc/sysctl.d/{DROPIN_NAME}", dropin_content(KEY, 443))
    changes = plan_dropin(tree.resolve(), 80, tree.dirs)
    assert [(c.path, c.action) for c in changes] == [(path, "updated")]
    assert changes[0].before == dropin_content(KEY, 443)


def test_plan_dropin_cannot_beat_sysctl_conf(tree: Tree) -> None:
    tree.write("etc/sysctl.conf", f"# keep\n{KEY} = 1024\n")
    with pytest.raises(SysctlError, match=r"sysctl.conf line 2 .*persist_mode to in_place"):
        plan_dropin(tree.resolve(), 80, tree.dirs)


def test_plan_dropin_ignores_an_invalid_line_in_sysctl_conf(tree: Tree) -> None:
    tree.write("etc/sysctl.conf", f"{KEY} = lots\n")
    changes = plan_dropin(tree.resolve(), 80, tree.dirs)
    assert [c.action for c in changes] == ["created"]


def test_plan_dropin_refuses_to_overwrite_a_foreign_file(tree: Tree) -> None:
    tree.write(f"etc/sysctl.d/{DROPIN_NAME}", "# mine\nkernel.pid_max = 4194304\n")
    with pytest.raises(SysctlError, match="was not written by permfix"):
        plan_dropin(tree.resolve(), 80, tree.dirs)


def test_plan_dropin_refuses_to_hide_a_vendor_file(tree: Tree) -> None:
    tree.write(f"usr/lib/sysctl.d/{DROPIN_NAME}", "kernel.pid_max = 4194304\n")
    with pytest.raises(SysctlError, match="would hide"):
        plan_dropin(tree.resolve(), 80, tree.dirs)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"{KEY} = 1024\n", f"{KEY} = 80\n"),
        (f"{KEY}=1024", f"{KEY}=80"),
        (f"  -{KEY}\t=\t1024  \r\n", f"  -{KEY}\t=\t80  \r\n"),
        ("net/ipv4/ip_unprivileged_port_start = 0x400\n", "net/ipv4/ip_unprivileged_port_start = 80\n"),
        (f"{KEY} = 1024 # old\n", f"{KEY} = 80 # old\n"),
        (f"{KEY} = 1024\t\t# old  \n", f"{KEY} = 80\t\t# old  \n"),
        (f"{KEY} =\n", f"{KEY} =80\n"),
    ],
)
def test_replace_value_in_line(line: str, expected: str) -> None:
    assert replace_value_in_line(line, 80) == expected


def test_plan_in_place_edits_only_the_winning_line(tree: Tree) -> None:
    before = f"# vendor header\n{KEY} = 22\n;comment\r\nkernel.pid_max=1\n  {KEY}\t= 1024  \n# caf\u00e9\n"
    tree.write("etc/sysctl.conf", before)
    tree.link("etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
    changes = plan_in_place(tree.resolve(), 80, tree.dirs, tree.conf)
    assert [(c.path, c.action) for c in changes] == [(os.path.realpath(tree.conf), "updated")]
    assert changes[0].after == before.replace(f"  {KEY}\t= 1024  \n", f"  {KEY}\t= 80  \n")
    apply_file_changes(changes)
    assert os.path.islink(str(tree.root / "etc/sysctl.d/99-sysctl.conf"))
    assert tree.resolve().value == 80


def test_plan_in_place_keeps_undecodable_bytes(tree: Tree) -> None:
    path = tree.root / "etc/sysctl.d/50-local.conf"
    path.write_bytes(b"# \xff\xfe latin-1 \xe9\n" + f"{KEY} = 1024\n".encode())
    changes = plan_in_place(tree.resolve(), 80, tree.dirs, tree.conf)
    apply_file_changes(changes)
    assert path.read_bytes() == b"# \xff\xfe latin-1 \xe9\n" + f"{KEY} = 80\n".encode()


def test_plan_in_place_never_edits_vendor_files(tree: Tree) -> None:
    vendor = tree.write("usr/lib/sysctl.d/50-vendor.conf", f"{KEY} = 1024\n")
    changes = plan_in_place(tree.resolve(), 80, tree.dirs, tree.conf)
    assert [(os.path.basename(c.path), c.action) for c in changes] == [(DROPIN_NAME, "created")]
    apply_file_changes(changes)
    assert Path(vendor).read_text() == f"{KEY} = 1024\n"
    assert tree.resolve().value == 80


# ------------------------------------------------------------------ writing


def test_atomic_write_keeps_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_text("old\n")
    os.chmod(path, 0o600)
    write_atomically(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomically(str(tmp_path / "y.conf"), "y\n")
    assert stat.S_IMODE((tmp_path / "y.conf").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.conf", "y.conf"]


def test_apply_changes_puts_everything_back_when_a_write_fails(tmp_path: Path) -> None:
    first = tmp_path / "a.conf"
    first.write_text("before\n")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    changes = [
        FileChange(str(first), "before\n", "after\n", "test"),
        FileChange(str(tmp_path / "new.conf"), None, "new\n", "test"),
        FileChange(str(blocker / "x.conf"), None, "x\n", "fails: parent is a file"),
    ]
    with pytest.raises(SysctlError, match="nothing was changed"):
        apply_file_changes(changes)
    assert first.read_text() == "before\n"
    assert not (tmp_path / "new.conf").exists()


def test_apply_changes_creates_the_dropin_directory(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "sysctl.d" / DROPIN_NAME
    apply_file_changes([FileChange(str(path), None, dropin_content(KEY, 80), "test")])
    assert path.read_text().startswith(MARKER)


def test_runtime_read_and_write_on_a_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "ip_unprivileged_port_start"
    path.write_text("1024\n")
    runtime = read_runtime(str(path))
    assert (runtime.supported, runtime.value, runtime.writable) == (True, 1024, True)
    write_runtime(str(path), 80)
    assert read_runtime(str(path)).value == 80


def test_runtime_of_a_kernel_without_the_key(tmp_path: Path) -> None:
    runtime = read_runtime(str(tmp_path / "missing"))
    assert (runtime.supported, runtime.value, runtime.writable) == (False, None, False)


def test_runtime_garbage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "ip_unprivileged_port_start"
    path.write_text("banana\n")
    with pytest.raises(SysctlError, match="not a port number"):
        read_runtime(str(path))


def test_runtime_and_range_files_that_are_not_ascii_are_read_without_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "not-ascii"
    path.write_bytes(b"\xff\xfe80\n")
    with pytest.raises(SysctlError, match="not a port number"):
        read_runtime(str(path))
    assert read_local_port_range(str(path)) is None


@pytest.mark.parametrize(("text", "expected"), [("32768\t60999\n", (32768, 60999)), ("1 2 3\n", None), ("x y\n", None)])
def test_read_local_port_range(tmp_path: Path, text: str, expected: tuple[int, int] | None) -> None:
    path = tmp_path / "range"
    path.write_text(text)
    assert read_local_port_range(str(path)) == expected
    assert read_local_port_range(str(tmp_path / "missing")) is None


# ------------------------------------------------------------------ property: the drop-in always wins

_names = st.text(alphabet="0123456789-_abcyzAZ.", min_size=1, max_size=12).map(lambda s: s + ".conf")
_values = st.one_of(
    st.integers(min_value=0, max_value=65535).map(str), st.sampled_from(["x", "", "-5", "70000", "0x50"])
)
_files = st.lists(
    st.tuples(st.sampled_from(SUBDIRS[:4]), _names, st.lists(_values, min_size=0, max_size=3), st.booleans()),
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=_files, target=st.integers(min_value=1, max_value=1023), in_place=st.booleans())
def test_after_a_planned_change_the_target_wins(
    files: list[tuple[str, str, list[str], bool]], target: int, in_place: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Tree(Path(tmp))
        for sub, name, values, slashed in files:
            key = KEY.replace(".", "/") if slashed else KEY
            tree.write(f"{sub}/{name}", "".join(f"{key} = {value}\n" for value in values) or "# nothing\n")
        resolution = tree.resolve()
        try:
            if in_place:
                changes = plan_in_place(resolution, target, tree.dirs, tree.conf)
            else:
                changes = plan_dropin(resolution, target, tree.dirs)
        except SysctlError as exc:  # only a foreign file at the drop-in's own name, or hiding one
            assert "dropin_name" in str(exc)
            return
        apply_file_changes(changes)
        after = tree.resolve()
        assert after.value == target
        assert plan_dropin(after, target, tree.dirs) == []
        assert plan_in_place(after, target, tree.dirs, tree.conf) == []


# ------------------------------------------------------------------ issue 13: what sysctl really reads


@pytest.mark.parametrize("breaker", ["\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_a_value_inside_a_comment_line_sets_nothing(tree: Tree, breaker: str) -> None:
    tree.write("etc/sysctl.d/50-ports.conf", f"# old{breaker}{KEY} = 80\n")
    resolution = tree.resolve()
    assert resolution.value == 1024 and resolution.assignments == []


def test_a_value_above_the_local_port_range_at_boot_is_refused(tree: Tree) -> None:
    tree.write("etc/sysctl.d/50-a.conf", f"{KEY} = 40000\n")
    tree.write("etc/sysctl.d/60-b.conf", f"{KEY} = 22\nnet.ipv4.ip_local_port_range = 100 60999\n{KEY} = 200\n")
    resolution = tree.resolve()
    assert [(a.value, a.refused is None) for a in resolution.assignments] == [(40000, False), (22, True), (200, False)]
    assert resolution.value == 22 and resolution.local_port_range == (100, 60999)
    assert "100" in (resolution.assignments[2].refused or "")


def test_in_place_never_writes_a_vendor_file_through_a_link(tree: Tree) -> None:
    vendor = tree.write("usr/lib/sysctl.d/50-vendor.conf", f"{KEY} = 1024\n")
    tree.link("etc/sysctl.d/50-vendor.conf", vendor)
    changes = plan_in_place(tree.resolve(), 80, tree.dirs, tree.conf)
    assert [(os.path.dirname(c.path), c.action) for c in changes] == [(tree.dirs[0], "created")]
    apply_file_changes(changes)
    assert Path(vendor).read_text() == f"{KEY} = 1024\n" and os.path.islink(tree.dirs[0] + "/50-vendor.conf")
    assert tree.resolve().value == 80


def test_a_plan_that_would_be_refused_at_boot_is_refused_now(tree: Tree) -> None:
    tree.write("etc/sysctl.d/10-range.conf", f"{KEY} = 400\nnet.ipv4.ip_local_port_range = 500 60999\n")
    assert tree.resolve().local_port_range == (500, 60999)
    with pytest.raises(SysctlError, match="would still set .* to 400 .*refused"):
        plan_dropin(tree.resolve(), 600, tree.dirs)
