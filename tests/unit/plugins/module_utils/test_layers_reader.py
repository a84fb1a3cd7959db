# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overlay layer reader on real directories: whiteouts, opaque directories, links refused,
missing layers; and which account files a container user needs (the rules of resolve_identity)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.permfix.containers.plugins.module_utils._engines.containers import (
    AccountFiles,
    Container,
    needs_group,
    needs_passwd,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import DockerEngineError
from ansible_collections.permfix.containers.plugins.module_utils._engines.layers import (
    LayerUnsafe,
    layer_changes,
    layer_dirs,
    read_layered_file,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.access import resolve_identity
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase

PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1001:\nextra:x:2000:app\n"


def _layer(root: Path, name: str, files: dict[str, str] | None = None) -> str:
    layer = root / name
    layer.mkdir()
    for rel, text in (files or {}).items():
        path = layer / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(layer)


def _whiteout(path: Path) -> None:
    os.mknod(path, 0o600 | 0o020000, os.makedev(0, 0))


@pytest.fixture
def image(tmp_path: Path) -> list[str]:
    """Two image layers: the lower one with passwd and group, the upper one changing group."""
    lower = _layer(tmp_path, "lower", {"etc/passwd": "old\n", "etc/group": "g\n", "etc/shadow": "s\n"})
    upper = _layer(tmp_path, "upper", {"etc/passwd": PASSWD})
    return [upper, lower]


def test_topmost_layer_wins_and_lower_layers_show_through(image: list[str]) -> None:
    assert read_layered_file(image, "/etc/passwd") == PASSWD.encode()
    assert read_layered_file(image, "/etc/group") == b"g\n"
    assert read_layered_file(image, "/etc/nothing") is None
    assert read_layered_file(image, "/etc") is None  # not a regular file


def test_character_device_whiteout_hides_the_lower_file(tmp_path: Path, image: list[str]) -> None:
    top = _layer(tmp_path, "top", {"etc/hosts": "h\n"})
    _whiteout(Path(top) / "etc" / "group")
    assert read_layered_file([top, *image], "/etc/group") is None
    assert read_layered_file([top, *image], "/etc/passwd") == PASSWD.encode()


@pytest.mark.parametrize("marker", [".wh.group", ".wh.etc"])
def test_wh_file_whiteouts(tmp_path: Path, image: list[str], marker: str) -> None:
    top = _layer(tmp_path, "top", {f"etc/{marker}" if marker == ".wh.group" else marker: ""})
    assert read_layered_file([top, *image], "/etc/group") is None
    expected = None if marker == ".wh.etc" else PASSWD.encode()
    assert read_layered_file([top, *image], "/etc/passwd") == expected


def test_opaque_directory_by_marker_file_hides_lower_entries(tmp_path: Path, image: list[str]) -> None:
    top = _layer(tmp_path, "top", {"etc/.wh..wh..opq": "", "etc/passwd": "new\n"})
    assert read_layered_file([top, *image], "/etc/passwd") == b"new\n"
    assert read_layered_file([top, *image], "/etc/group") is None


def test_opaque_directory_by_xattr_hides_lower_entries(tmp_path: Path, image: list[str]) -> None:
    top = _layer(tmp_path, "top", {"etc/passwd": "new\n"})
    os.setxattr(Path(top) / "etc", "trusted.overlay.opaque", b"y")
    assert read_layered_file([top, *image], "/etc/group") is None
    os.setxattr(Path(top) / "etc", "trusted.overlay.opaque", b"n")
    assert read_layered_file([top, *image], "/etc/group") == b"g\n"


def test_a_file_in_an_upper_layer_hides_a_lower_directory(tmp_path: Path, image: list[str]) -> None:
    top = _layer(tmp_path, "top", {"etc": "not a directory\n"})
    assert read_layered_file([top, *image], "/etc/passwd") is None


def test_symbolic_links_are_refused_not_followed(tmp_path: Path, image: list[str]) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("host\n")
    top = _layer(tmp_path, "top", {})
    (Path(top) / "etc").mkdir()
    (Path(top) / "etc" / "group").symlink_to(secret)  # absolute: would resolve on the host
    with pytest.raises(LayerUnsafe, match="symbolic link"):
        read_layered_file([top, *image], "/etc/group")
    linked_dir = _layer(tmp_path, "linked", {})
    (Path(linked_dir) / "etc").symlink_to(Path(image[1]) / "etc")
    with pytest.raises(LayerUnsafe, match="symbolic link"):
        read_layered_file([linked_dir, *image], "/etc/passwd")
    alias = tmp_path / "alias"
    alias.symlink_to(image[0])  # a layer directory that is itself a link
    with pytest.raises(LayerUnsafe, match="without following links"):
        read_layered_file([str(alias)], "/etc/passwd")


def test_fifo_is_not_a_file_and_never_blocks(tmp_path: Path) -> None:
    layer = _layer(tmp_path, "layer", {"etc/x": ""})
    os.mkfifo(Path(layer) / "etc" / "passwd")
    assert read_layered_file([layer], "/etc/passwd") is None


def test_missing_layers_and_bad_paths_are_unsafe(tmp_path: Path, image: list[str]) -> None:
    with pytest.raises(LayerUnsafe):
        read_layered_file([*image, str(tmp_path / "gone")], "/etc/passwd")
    with pytest.raises(LayerUnsafe):
        read_layered_file(["relative/dir"], "/etc/passwd")
    with pytest.raises(LayerUnsafe, match="'..'"):
        read_layered_file(image, "/etc/../etc/passwd")


def test_metacopy_and_redirect_are_unsafe(tmp_path: Path, image: list[str]) -> None:
    top = _layer(tmp_path, "top", {"etc/passwd": ""})
    os.setxattr(Path(top) / "etc" / "passwd", "trusted.overlay.metacopy", b"")
    with pytest.raises(LayerUnsafe, match="metacopy"):
        read_layered_file([top, *image], "/etc/passwd")
    other = _layer(tmp_path, "other", {"etc/hosts": ""})
    os.setxattr(Path(other) / "etc", "trusted.overlay.redirect", b"/elsewhere")
    with pytest.raises(LayerUnsafe, match="redirect"):
        read_layered_file([other, *image], "/etc/passwd")


def test_layer_changes_sees_entries_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    untouched = _layer(tmp_path, "untouched", {"etc/hostname": "x\n"})
    assert not layer_changes(untouched, ["/etc/passwd", "/etc/group"])
    empty = _layer(tmp_path, "empty")
    assert not layer_changes(empty, ["/etc/passwd"])
    changed = _layer(tmp_path, "changed", {"etc/passwd": "x\n"})
    assert layer_changes(changed, ["/etc/group", "/etc/passwd"])
    removed = _layer(tmp_path, "removed", {"etc/hostname": ""})
    _whiteout(Path(removed) / "etc" / "group")
    assert layer_changes(removed, ["/etc/group"])
    opaque = _layer(tmp_path, "opaque", {"etc/.wh..wh..opq": ""})
    assert layer_changes(opaque, ["/etc/passwd"])


def test_layer_dirs_from_inspect() -> None:
    data = {"Name": "overlay2", "Data": {"LowerDir": "/l/init/diff:/l/img/diff", "UpperDir": "/l/c/diff"}}
    assert layer_dirs(data) == ["/l/c/diff", "/l/init/diff", "/l/img/diff"]
    assert layer_dirs({"Name": "vfs", "Data": {}}) is None
    assert layer_dirs({"Name": "overlay", "Data": {"UpperDir": "rel"}}) is None
    assert layer_dirs(None) is None


# --------------------------------------------------------------------------------------------
# Which files a user needs: never fewer than resolve_identity consults

USERS = ["", "0", "1000", "1000:1000", "1000:app", "app", "app:1001", "app:extra", "nobody", "5000", "5000:5000"]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("group_add", [(), ("2000",), ("extra",), ("keep-groups",)])
def test_needs_match_what_resolve_identity_reads(user: str, group_add: tuple[str, ...]) -> None:
    full = AccountDatabase.from_text(PASSWD, GROUP)
    passwd_only = AccountDatabase.from_text(PASSWD)
    want_passwd = needs_passwd(user)
    want_group = needs_group(user, group_add, passwd_only if want_passwd else None)
    given = AccountDatabase.from_text(PASSWD if want_passwd else "", GROUP if want_group else "")

    def outcome(accounts: AccountDatabase) -> object:
        try:
            identity = resolve_identity(user, accounts, group_add)
        except ValueError as exc:
            return str(exc)
        return (identity.uid, identity.gid, identity.groups)

    assert outcome(given) == outcome(full)


def test_numeric_uid_and_gid_need_no_file() -> None:
    assert not needs_passwd("1000:1000")
    assert not needs_group("1000:1000", ("2000",), None)
    assert needs_passwd("1000") and needs_passwd("") and needs_passwd("app:1")


def _container(cid: str, user: str, layers: tuple[str, ...]) -> Container:
    return Container(
        engine="docker", id=cid, name=cid, state="exited", running=False, pid=None, image="i",
        user=user, user_source="container", layers=layers,
    )


def test_account_files_share_one_read_per_source_and_fall_back_per_container(tmp_path: Path, image: list[str]) -> None:
    engine_reads: list[tuple[str, str]] = []

    def engine_read(container: Container, path: str) -> str | None:
        engine_reads.append((container.id, path))
        if container.id == "broken":
            raise DockerEngineError("the daemon failed")
        return "root:x:0:0::/:/bin/sh\n" if path == "/etc/passwd" else ""

    own = [_layer(tmp_path, f"own{index}", {"etc/hostname": "x\n"}) for index in range(3)]
    changed = _layer(tmp_path, "changed", {"etc/passwd": "app:x:1000:7::/:/bin/sh\n"})
    linked = _layer(tmp_path, "linked", {})
    (Path(linked) / "etc").mkdir()
    (Path(linked) / "etc" / "passwd").symlink_to("/etc/passwd")
    containers = [
        *(_container(f"c{index}", "app", (layer, *image)) for index, layer in enumerate(own)),
        _container("numeric", "1000:1000", (own[0], *image)),
        _container("changed", "app", (changed, *image)),
        _container("link", "app", (linked, *image)),
        _container("vfs", "root", ()),
        _container("broken", "root", ()),
    ]
    reader = AccountFiles(engine_read, workers=2)
    reader.complete(containers)
    by_id = {item.id: item for item in containers}
    assert all(by_id[f"c{index}"].accounts.user("app").gid == 1001 for index in range(3))  # type: ignore[union-attr]
    assert by_id["numeric"].accounts is None
    assert by_id["changed"].accounts.user("app").gid == 7  # type: ignore[union-attr]
    assert by_id["link"].accounts.user("root") is not None  # type: ignore[union-attr]
    assert by_id["vfs"].accounts.user("root") is not None  # type: ignore[union-attr]
    assert by_id["broken"].accounts is None and "could not be read" in by_id["broken"].notes[0]
    # "link" reads no group: the engine's passwd has no "app" (no supplementary groups to find)
    assert sorted(engine_reads) == [
        ("broken", "/etc/passwd"), ("link", "/etc/passwd"), ("vfs", "/etc/group"), ("vfs", "/etc/passwd"),
    ]
    # passwd once for c0-c2, once for "changed" (its own layer changed it); the image's group once
    # for all four ("changed" did not touch /etc/group)
    assert reader.stats == {"layers": 3, "engine": 4, "shared": 5}


def test_engine_switch_reads_every_container_through_the_engine(image: list[str], tmp_path: Path) -> None:
    reads: list[str] = []

    def engine_read(container: Container, path: str) -> str | None:
        reads.append(container.id)
        return PASSWD if path == "/etc/passwd" else GROUP

    own = [_layer(tmp_path, f"own{index}") for index in range(2)]
    containers = [_container(f"c{index}", "app", (layer, *image)) for index, layer in enumerate(own)]
    AccountFiles(engine_read, mode="engine").complete(containers)
    assert sorted(reads) == ["c0", "c0", "c1", "c1"]
    assert containers[0].accounts is not None and containers[0].accounts.group("extra") is not None
