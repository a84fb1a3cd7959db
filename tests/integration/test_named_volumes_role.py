# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The named_volumes role against real volumes: check, apply, check again, apply again."""

from __future__ import annotations

import os
import time

import test_volume_owner as shared

import permfix_testlib as lib

# Fixtures and helpers of the volume_owner tests.
docker_volume = shared.docker_volume
fixer_image = shared.fixer_image
rootless_user = shared.rootless_user

ROLE = "permfix.containers.named_volumes"
RUN = lib.RoleRun(
    ROLE, "Give each volume the owner its containers need, with a one-off fixer container", "named_volumes_result"
)
FIX_TASK, play, run_role, changed, role_result, rhythm = RUN.helpers()


def test_docker_container_999_can_write_after_the_role(docker_client, docker_volume, fixer_image) -> None:
    started = time.time_ns()
    images_before = {tag for image in docker_client.images.list() for tag in image.tags}
    volume = docker_volume()
    docker_client.containers.create(
        lib.IMAGE_BUSYBOX, ["sleep", "3600"], name=lib.random_name("pfvc"), user="999:999",
        volumes={volume: {"bind": "/data", "mode": "rw"}}, network_mode="none",
    )
    code, output = shared.can_write(docker_client, volume)
    assert code != 0 and b"Permission denied" in output

    def no_container_started(mark: int) -> None:
        assert shared.fixer_events(docker_client, volume, mark) == [], "the second run started a container"

    results = rhythm(
        no_container_started,
        named_volumes_engines=["docker"],
        named_volumes_volumes=[volume],
        named_volumes_fixer_image=fixer_image,
        named_volumes_pull_fixer_image=False,
    )
    fixed = results[1].task(FIX_TASK)["results"][0]
    assert fixed["fixer"]["image_source"] == "imported"
    code, output = shared.can_write(docker_client, volume)
    assert code == 0, output
    assert shared.pull_events(docker_client, started) == []
    images_after = {tag for image in docker_client.images.list() for tag in image.tags}
    assert images_after - images_before <= {fixer_image}


def test_rootless_podman_container_999_can_write_after_the_role(make_user) -> None:
    user, start = rootless_user(make_user)
    volume = lib.random_name("pfvol")
    image = f"localhost/{lib.random_name('pffix')}:1"
    lib.run_as(user, ["podman", "volume", "create", volume])
    populate = ["podman", "run", "--rm", "--network", "none", "-v", f"{volume}:/v", lib.IMAGE_BUSYBOX, "sh", "-c"]
    lib.run_as(user, [*populate, shared.POPULATE])
    lib.run_as(user, ["podman", "create", "--name", lib.random_name("pfvc"), "--network", "none", "--user", "999:999",
                      "-v", f"{volume}:/data", lib.IMAGE_BUSYBOX, "sleep", "3600"])
    probe = ["podman", "run", "--rm", "--network", "none", "--user", "999:999", "-v", f"{volume}:/data",
             lib.IMAGE_BUSYBOX, "sh", "-c", "touch /data/a/b/probe"]
    denied = lib.run_as(user, probe, check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr

    def fixer_containers() -> str:
        return lib.run_as(
            user, ["podman", "ps", "-a", "--filter", f"label={shared.LABEL_VOLUME}={volume}", "-q"]
        ).stdout.strip()

    results = rhythm(
        named_volumes_engines=["podman"],
        named_volumes_podman_users=[user.name],
        named_volumes_fixer_image=image,
        named_volumes_pull_fixer_image=False,
    )
    assert results[3].task(FIX_TASK).get("results", []) == []  # nothing planned, so no fixer on the second run
    assert fixer_containers() == ""
    mountpoint = os.path.join(user.home, ".local/share/containers/storage/volumes", volume, "_data")
    assert os.stat(os.path.join(mountpoint, "a", "b", "f")).st_uid == start + 998
    allowed = lib.run_as(user, probe, check=False)
    assert allowed.returncode == 0, allowed.stderr


def test_declared_owner_without_discovery(docker_client, docker_volume, fixer_image) -> None:
    volume = docker_volume()
    mountpoint = docker_client.api.inspect_volume(volume)["Mountpoint"]
    rhythm(
        named_volumes_discover=False,
        named_volumes_engines=["docker"],
        named_volumes_owners={volume: "70:71"},
        named_volumes_fixer_image=fixer_image,
        named_volumes_pull_fixer_image=False,
    )
    st = os.stat(os.path.join(mountpoint, "a", "b", "f"))
    assert (st.st_uid, st.st_gid) == (70, 71)


def test_bad_owner_fails_before_any_change() -> None:
    result = lib.run_playbook(play(named_volumes_owners={"x": "postgres"}, named_volumes_engines=["docker"]))
    assert result.rc != 0
    assert "numeric" in result.stdout
