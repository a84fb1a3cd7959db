# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A modest busy host audited twice: with the fast path (account files only when needed, read
once per source from the overlay layer directories) and with every file through the engine,
per container (``PERMFIX_TEST_ACCOUNT_READS=engine``: Docker's archive endpoint, ``podman cp``).
The findings and the per-mount records must be identical, and must hold what the users imply.

The host: 30 Docker containers over three images (busybox; one whose /etc/group drops ``app``
from ``staff`` in a layer of its own; one whose /etc/passwd is a symbolic link, which the layer
reader refuses and leaves to the engine), numeric users, named users with supplementary groups,
a named ``--group-add``, containers whose own layer changed /etc/passwd (``docker cp``), named
volumes; and four rootful podman containers.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

import permfix_testlib as lib

STAFF = 50  # busybox's /etc/group: staff:x:50:app
ENGINE_READS = {"PERMFIX_TEST_ACCOUNT_READS": "engine"}


def _tar_with(changes: dict[str, bytes | str]) -> bytes:
    """The busybox rootfs tarball with files replaced (bytes) or turned into links (str targets)."""
    out = io.BytesIO()
    with tarfile.open(lib.BUSYBOX_TARBALL) as source, tarfile.open(fileobj=out, mode="w") as target:
        for member in source.getmembers():
            name = member.name.lstrip("./")
            if name in changes:
                continue
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        for name, content in changes.items():
            info = tarfile.TarInfo("./" + name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                target.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                target.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _busybox_file(name: str) -> bytes:
    with tarfile.open(lib.BUSYBOX_TARBALL) as source:
        handle = source.extractfile("./" + name)
        assert handle is not None
        return handle.read()


@pytest.fixture(scope="module")
def busy_host(docker_client: Any) -> Iterator[dict[str, Any]]:
    tag = lib.random_name("pfbusy")
    made: dict[str, list[Any]] = {"containers": [], "volumes": [], "images": [], "podman": []}
    root = f"/var/tmp/{tag}"
    os.makedirs(root)
    passwd, group = _busybox_file("etc/passwd"), _busybox_file("etc/group")
    try:
        # an image whose top layer changes /etc/group (app no longer in staff), over busybox's layer
        build = os.path.join(root, "build")
        os.makedirs(build)
        with open(os.path.join(build, "group"), "wb") as handle:
            handle.write(group.replace(b"staff:x:50:app", b"staff:x:50:"))
        with open(os.path.join(build, "Dockerfile"), "w", encoding="utf-8") as handle:
            handle.write(f"FROM {lib.IMAGE_BUSYBOX}\nCOPY group /etc/group\n")
        regrouped = f"{tag}-regrouped:latest"
        lib.sh("docker", "build", "-q", "-t", regrouped, build)
        made["images"].append(regrouped)
        # an image whose /etc/passwd is a relative symbolic link (the layer reader falls back)
        linked = f"{tag}-linked:latest"
        docker_client.images.client.api.import_image_from_data(
            _tar_with({"etc/passwd": "passwd.real", "etc/passwd.real": passwd}), repository=f"{tag}-linked",
            tag="latest",
        )
        made["images"].append(linked)

        def directory(name: str, uid: int, gid: int, mode: int) -> str:
            path = os.path.join(root, name)
            os.makedirs(path)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
            return path

        staff_dir = directory("staff", 0, STAFF, 0o770)  # usable through the supplementary group only
        app_dir = directory("app", 1000, 1000, 0o700)
        root_dir = directory("root", 0, 0, 0o755)
        plan: list[tuple[str, str, str, tuple[str, ...], bool]] = []  # image, user, source, group_add, running
        plan += [(lib.IMAGE_BUSYBOX, "1000:1000", app_dir, (), index % 2 == 0) for index in range(8)]
        plan += [(lib.IMAGE_BUSYBOX, "1000:1000", staff_dir, ("staff",), False) for _index in range(2)]
        plan += [(lib.IMAGE_BUSYBOX, "app", staff_dir, (), index == 0) for index in range(5)]
        plan += [(lib.IMAGE_BUSYBOX, "postgres", app_dir, (), False) for _index in range(3)]
        plan += [(lib.IMAGE_BUSYBOX, "", root_dir, (), False) for _index in range(2)]
        plan += [(regrouped, "app", staff_dir, (), index == 0) for index in range(4)]
        plan += [(linked, "app", staff_dir, (), False) for _index in range(3)]
        changed: list[str] = []
        for index, (image, user, source, group_add, running) in enumerate(plan):
            name = f"{tag}-d{index}"
            volumes = {source: {"bind": "/data", "mode": "rw"}}
            if index % 10 == 3:
                volume = docker_client.volumes.create(f"{tag}-v{index}")
                made["volumes"].append(volume)
                volumes[volume.name] = {"bind": "/state", "mode": "rw"}
            container = docker_client.containers.create(
                image, ["sleep", "600"], name=name, user=user or None, network_mode="none",
                group_add=list(group_add) or None, volumes=volumes,
            )
            made["containers"].append(container)
            if running:
                container.start()
        # three busybox containers whose own layer changed /etc/passwd: app is uid 999 there
        for index in range(3):
            name = f"{tag}-c{index}"
            container = docker_client.containers.create(
                lib.IMAGE_BUSYBOX, ["sleep", "600"], name=name, user="app", network_mode="none",
                volumes={app_dir: {"bind": "/data", "mode": "rw"}},
            )
            made["containers"].append(container)
            container.put_archive("/etc", _single_file("passwd", passwd.replace(b"app:x:1000:1000", b"app:x:999:999")))
            changed.append(name)
        # rootful podman
        lib.podman_import_busybox(None, f"localhost/{tag}-busybox")
        made["images"].append(f"podman:localhost/{tag}-busybox")
        podman_plan = (("app", staff_dir), ("postgres", app_dir), ("1000:1000", app_dir), ("", root_dir))
        for index, (user, source) in enumerate(podman_plan):
            name = f"{tag}-p{index}"
            argv = ["podman", "create", "--name", name, "--network", "none", "--ulimit", "nofile=1024:1024",
                    "--ulimit", "nproc=1024:1024", "-v", f"{source}:/data"]
            if user:
                argv += ["--user", user]
            lib.sh(*argv, f"localhost/{tag}-busybox", "sleep", "600")
            made["podman"].append(name)
        yield {"tag": tag, "docker": [item.name for item in made["containers"]], "podman": made["podman"],
               "changed": changed, "dirs": {"staff": staff_dir, "app": app_dir, "root": root_dir}}
    finally:
        for container in made["containers"]:
            container.remove(force=True)
        for name in made["podman"]:
            lib.sh("podman", "rm", "-f", name, check=False)
        for volume in made["volumes"]:
            volume.remove(force=True)
        for image in made["images"]:
            if image.startswith("podman:"):
                lib.sh("podman", "rmi", "-f", image[len("podman:"):], check=False)
            else:
                lib.sh("docker", "rmi", "-f", image, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _single_file(name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(content), 0o644
        archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _ours(items: list[dict[str, Any]], tag: str, key: str) -> list[dict[str, Any]]:
    return sorted((item for item in items if tag in str(item.get(key) or "") or tag in str(item.get("subject"))),
                  key=lambda item: repr(sorted(item.items())))


AUDIT = {"detections": ["bind_mount", "named_volume"]}


def test_fast_path_and_engine_path_find_the_same(busy_host: dict[str, Any]) -> None:
    tag = busy_host["tag"]
    fast = lib.run_module("audit_info", AUDIT, check=True)
    slow = lib.run_module("audit_info", AUDIT, check=True, environment=ENGINE_READS)
    assert not fast.get("failed"), fast.get("msg")
    assert not slow.get("failed"), slow.get("msg")
    assert _ours(fast["findings"], tag, "container") == _ours(slow["findings"], tag, "container")

    names = busy_host["docker"] + busy_host["podman"]
    mounts_fast = lib.run_module("bind_mount_info", {"containers": names, "podman_users": ["root"]}, check=True)
    mounts_slow = lib.run_module("bind_mount_info", {"containers": names, "podman_users": ["root"]}, check=True,
                                 environment=ENGINE_READS)
    records = _ours(mounts_fast["mounts"], tag, "container")
    assert records == _ours(mounts_slow["mounts"], tag, "container")
    assert len(records) == len(names)

    # what the users imply, so that two equally wrong answers cannot pass
    by_container = {record["container"]: record for record in records}
    status = {name: by_container[name]["status"] for name in names}
    expected_denied = {f"{tag}-d{index}" for index in (*range(15, 18), *range(20, 24))}  # postgres; regrouped app
    expected_denied |= {f"{tag}-p1"}  # podman postgres on app's directory
    expected_denied |= set(busy_host["changed"])  # app is 999 in their own layer
    denied = {name for name, value in status.items() if value != "ok"}
    assert denied == expected_denied, status
    assert by_container[f"{tag}-c0"]["container_uid"] == 999
    assert by_container[f"{tag}-d24"]["status"] == "ok"  # linked passwd: resolved through the engine


def test_findings_name_every_denied_container(busy_host: dict[str, Any]) -> None:
    tag = busy_host["tag"]
    result = lib.run_module("bind_mount_info", {"containers": busy_host["docker"][:3] + busy_host["changed"]},
                            check=True)
    subjects = {(finding["container"], finding["subject"]) for finding in result["findings"]}
    assert subjects == {(name, busy_host["dirs"]["app"]) for name in busy_host["changed"]}, result["findings"]
    assert all(tag in name for name, _subject in subjects)
