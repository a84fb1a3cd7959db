# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of the fixer: its scripts, the inspector's output, the busybox image, images."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._engines.fixer import (
    FixerError,
    _split_tag,
    busybox_tarball,
    ensure_image,
    fix_script,
    inspect_script,
    parse_inspector,
    security_view,
)


def test_fix_script_selects_only_mismatches_never_follows_and_changes_root_last() -> None:
    script = fix_script(999, 998)
    assert "find /v -xdev -depth" in script
    assert " -L" not in script and "-follow" not in script
    assert "'!' -user 999 -o '!' -group 998" in script
    assert "-type f -links 1" in script
    assert "chown -h 999:998 '{}' +" in script
    assert "set -o pipefail" in script


@pytest.mark.parametrize("bad", [-1, 4294967295, "999; rm -rf /", 1.5])
def test_scripts_refuse_anything_but_ids(bad) -> None:
    with pytest.raises(FixerError):
        fix_script(bad, 0)
    with pytest.raises(FixerError):
        inspect_script(0, bad)


def run_script(script: str, root: str) -> str:
    """Run a fixer/inspector script with the host's busybox against ``root`` as /v (no chown
    needed: the script is checked on a tree already owned by the target)."""
    return subprocess.run(
        ["busybox", "sh", "-c", script.replace("/v", root)], capture_output=True, text=True, check=True
    ).stdout


def test_inspect_script_output_parses(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    os.symlink("/etc/passwd", tmp_path / "lnk")
    uid, gid = os.getuid(), os.getgid()
    counts = parse_inspector(run_script(inspect_script(uid, gid), str(tmp_path)))
    assert (counts.uid, counts.gid, counts.entries, counts.mismatched) == (uid, gid, 4, 0)
    other = parse_inspector(run_script(inspect_script(uid + 1, gid), str(tmp_path)))
    assert other.mismatched == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 0 1777\n1\n1\n", (0, 0, "1777", 1, 1)),
        ("999 999 755\n12\n0\n", (999, 999, "0755", 12, 0)),
    ],
)
def test_parse_inspector(text: str, expected: tuple) -> None:
    counts = parse_inspector(text)
    assert (counts.uid, counts.gid, counts.mode, counts.entries, counts.mismatched) == expected


@pytest.mark.parametrize("text", ["", "0 0 755\n1\n", "x y z\n1\n1\n", "0 0 755\n1\nlots\n"])
def test_parse_inspector_refuses(text: str) -> None:
    with pytest.raises(FixerError, match="unexpected"):
        parse_inspector(text)


def test_busybox_tarball_is_a_tiny_rootfs() -> None:
    data = busybox_tarball("/bin/busybox")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {member.name: member for member in archive.getmembers()}
    assert members["."].mode == 0o755  # a 0700 root makes non-root processes fail
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    for applet in ("sh", "find", "chown", "wc", "stat"):
        assert members[f"bin/{applet}"].issym() and members[f"bin/{applet}"].linkname == "busybox"
    assert "v" in members


@pytest.mark.parametrize(
    ("path", "part"), [("/nonexistent/busybox", "cannot be read"), ("/etc/hostname", "not a busybox")]
)
def test_busybox_tarball_refuses(path: str, part: str) -> None:
    with pytest.raises(FixerError, match=part):
        busybox_tarball(path)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("localhost/permfix-fixer:busybox", ("localhost/permfix-fixer", "busybox")),
        ("busybox", ("busybox", "latest")),
        ("registry:5000/a/b", ("registry:5000/a/b", "latest")),
        ("registry:5000/a/b:1", ("registry:5000/a/b", "1")),
    ],
)
def test_split_tag(image: str, expected: tuple[str, str]) -> None:
    assert _split_tag(image) == expected


class FakeBackend:
    def __init__(self, present: bool, pull_error: str | None) -> None:
        self.present = present
        self.pull_error = pull_error
        self.pulled = 0
        self.imported: list[str] = []

    def image_present(self, image: str) -> bool:
        return self.present

    def pull(self, image: str) -> str | None:
        self.pulled += 1
        if self.pull_error is None:
            self.present = True
        return self.pull_error

    def import_tarball(self, data: bytes, image: str) -> None:
        self.imported.append(image)
        self.present = True


@pytest.mark.parametrize(
    ("present", "pull", "pull_error", "source", "pulled", "imported"),
    [
        (True, True, None, "local", 0, 0),
        (False, True, None, "pulled", 1, 0),
        (False, True, "no registry", "imported", 1, 1),
        (False, False, None, "imported", 0, 1),
    ],
)
def test_ensure_image(present, pull, pull_error, source, pulled, imported) -> None:
    backend = FakeBackend(present, pull_error)
    assert ensure_image(backend, "img:1", pull, "/bin/busybox") == source
    assert backend.pulled == pulled and len(backend.imported) == imported


def test_ensure_image_names_the_options_when_it_cannot() -> None:
    backend = FakeBackend(False, "connection refused")
    with pytest.raises(FixerError) as caught:
        ensure_image(backend, "img:1", True, "/nonexistent/busybox")
    message = str(caught.value)
    assert "fixer_image img:1 is missing" in message and "connection refused" in message
    assert "busybox_path" in message and backend.imported == []


def test_security_view() -> None:
    view = security_view(
        {
            "Config": {"User": "0:0"},
            "HostConfig": {
                "NetworkMode": "none",
                "CapAdd": ["CHOWN"],
                "CapDrop": ["ALL"],
                "ReadonlyRootfs": True,
                "SecurityOpt": ["no-new-privileges"],
            },
            "Mounts": [{"Type": "volume", "Name": "v", "Destination": "/v", "RW": True, "Source": "/x"}],
        }
    )
    assert view["network_mode"] == "none" and view["readonly_rootfs"] is True and view["user"] == "0:0"
    assert view["mounts"] == [{"type": "volume", "name": "v", "destination": "/v", "rw": True}]
