# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bind_mounts role against real containers: check, apply, check again, apply again."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

import test_bind_mount_info as shared

import permfix_testlib as lib

# The fixtures and helpers of the bind_mount_info tests.
docker_container = shared.docker_container
srv_dir = shared.srv_dir
rootless_user = shared.rootless_user

ROLE = "permfix.containers.bind_mounts"
RUN = lib.RoleRun(ROLE, "Give each container's host identity the access its bind mount needs", "bind_mounts_result")
FIX_TASK, play, run_role, changed, role_result, rhythm = RUN.helpers()


def test_docker_user_1000_can_write_after_the_role(docker_container, srv_dir) -> None:
    path = srv_dir()
    os.makedirs(os.path.join(path, "sub"))
    container = docker_container(user="1000:1000", volumes={path: {"bind": "/data", "mode": "rw"}})
    assert container.exec_run(["touch", "/data/probe"]).exit_code != 0

    role_vars = {"bind_mounts_engines": ["docker"], "bind_mounts_containers": [container.name]}
    first_check = run_role(True, **role_vars)
    assert changed(first_check) == 1
    assert os.stat(path).st_uid == 0, "check mode changed the directory"
    assert container.exec_run(["touch", "/data/probe"]).exit_code != 0

    results = rhythm(**role_vars)
    applied = results[1]
    fixed = applied.task(FIX_TASK)["results"][0]
    assert fixed["counts"]["changed"] == 2
    assert [item["path"] for item in role_result(applied)["fixed"]] == [path]
    assert role_result(applied)["changed"] is True
    for entry in (path, os.path.join(path, "sub")):
        st = os.stat(entry)
        assert (st.st_uid, st.st_gid) == (1000, 1000)
    written = container.exec_run(["touch", "/data/probe"])
    assert written.exit_code == 0, written.output


def test_rootless_podman_container_writes_after_the_role(make_user) -> None:
    user, start = rootless_user(make_user)
    data = os.path.join(user.home, "data")
    lib.run_as(user, ["mkdir", data])
    name = lib.random_name("pfbm")
    lib.run_as(user, ["podman", "run", "-d", "--name", name, "--network", "none", "--user", "999",
                      "-v", f"{data}:/data", lib.IMAGE_BUSYBOX, "sleep", "3600"])
    assert lib.run_as(user, ["podman", "exec", name, "touch", "/data/probe"], check=False).returncode != 0

    rhythm(bind_mounts_engines=["podman"], bind_mounts_podman_users=[user.name], bind_mounts_containers=[name])
    st = os.stat(data)
    assert (st.st_uid, st.st_gid) == (start + 998, start + 998)
    written = lib.run_as(user, ["podman", "exec", name, "touch", "/data/probe"], check=False)
    assert written.returncode == 0, written.stderr
    # The user's home itself was not touched.
    assert os.stat(user.home).st_uid == user.uid


def test_sockets_single_files_and_paths_outside_the_roots_are_left_alone(docker_container, srv_dir) -> None:
    path = srv_dir()
    server, sock_path, single = lib.socket_and_file(path, "agent.sock", "localtime", "UTC")
    outside = tempfile.mkdtemp(prefix="pfbm-", dir="/var/tmp")
    os.chmod(outside, 0o755)
    try:
        container = docker_container(
            start=False,
            user="1000:1000",
            volumes={
                sock_path: {"bind": "/run/agent.sock", "mode": "rw"},
                single: {"bind": "/etc/localtime", "mode": "ro"},
                outside: {"bind": "/data", "mode": "rw"},
            },
        )
        role_vars = {"bind_mounts_engines": ["docker"], "bind_mounts_containers": [container.name]}
        for check in (True, False):
            result = run_role(check, **role_vars)
            assert changed(result) == 0
        reasons = {item["path"]: item["reason"] for item in role_result(result)["skipped"]}
        assert "socket, not a directory" in reasons[sock_path]
        assert "regular file, not a directory" in reasons[single]
        assert "outside the allowed roots" in reasons[outside]
        for entry in (sock_path, single, outside):
            assert os.lstat(entry).st_uid == 0
        assert stat.S_IMODE(os.lstat(single).st_mode) == 0o600
    finally:
        server.close()
        shutil.rmtree(outside, ignore_errors=True)


def test_two_users_sharing_a_directory_get_acls_not_a_chown(docker_container, srv_dir) -> None:
    path = srv_dir()
    app = docker_container(user="1000:1000", volumes={path: {"bind": "/data", "mode": "rw"}})
    db = docker_container(user="999:999", volumes={path: {"bind": "/data", "mode": "rw"}})
    role_vars = {"bind_mounts_engines": ["docker"], "bind_mounts_containers": [app.name, db.name]}

    chown_run = run_role(False, **role_vars)
    assert changed(chown_run) == 0
    reasons = [item["reason"] for item in role_result(chown_run)["skipped"]]
    assert any("needed by different owners (999:999, 1000:1000)" in reason for reason in reasons), reasons
    assert os.stat(path).st_uid == 0

    results = [run_role(check, bind_mounts_strategy="acl", **role_vars) for check in (True, False, True, False)]
    assert [changed(result) for result in results] == [1, 1, 0, 0]
    assert os.stat(path).st_uid == 0, "the acl strategy must keep the owner"
    for container in (app, db):
        written = container.exec_run(["touch", f"/data/{container.name}"])
        assert written.exit_code == 0, written.output


def test_declared_spec_without_containers(srv_dir) -> None:
    path = srv_dir()
    rhythm(bind_mounts_discover=False, bind_mounts_specs=[{"path": path, "uid": 4242, "gid": 4343}])
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (4242, 4343)


def test_bad_role_variables_fail_before_any_change(srv_dir) -> None:
    path = srv_dir()
    result = lib.run_playbook(play(bind_mounts_discover=False, bind_mounts_strategy="chmod",
                                   bind_mounts_specs=[{"path": path, "uid": 1000}]))
    assert result.rc != 0
    assert "bind_mounts_strategy" in result.stdout
    assert os.stat(path).st_uid == 0
