# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The subids role and the remediate playbook on this machine's real files, for users the test
makes. Discovery stays off here (other tests on this machine have rootless users of their own);
the molecule scenario (molecule/subids) runs the role with no variables at all."""

from __future__ import annotations

import permfix_testlib as lib

PLAYBOOK = lib.REPO_ROOT / "playbooks" / "remediate.yml"


def role_play(**role_vars) -> list:
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "apply subids",
                    "ansible.builtin.include_role": {"name": "permfix.containers.subids"},
                    "vars": role_vars,
                }
            ],
        }
    ]


def lines_of(user: lib.User) -> dict:
    found = {}
    for kind in ("subuid", "subgid"):
        with open(f"/etc/{kind}", encoding="utf-8", errors="replace") as handle:
            found[kind] = [line.rstrip("\n") for line in handle if line.split(":")[0] == user.name]
    return found


ROLE = "permfix.containers.subids : "  # how the json callback names the role's tasks
RUN = lib.RoleRun("permfix.containers.subids", "Give the named users their subordinate UIDs and GIDs", "subids_result")


def changed_tasks(result: lib.PlaybookResult) -> list:
    return [task["_task"].replace(ROLE, "") for task in result.tasks() if task.get("changed")]


def test_named_users_get_their_ranges_and_a_podman_user_is_migrated(make_user) -> None:
    plain, big, podman_user = make_user("pfrole"), make_user("pfrole"), make_user("pfrole")
    lib.podman_import_busybox(podman_user)  # rootless podman state (and a pause process)
    role_vars = {
        "subids_users": [{"name": plain.name}, {"name": big.name, "count": 100000}, {"name": str(podman_user.uid)}],
        "subids_discover": False,
    }
    before = {user.name: lines_of(user) for user in (plain, big, podman_user)}
    assert all(v == {"subuid": [], "subgid": []} for v in before.values())

    check = lib.run_playbook(role_play(**role_vars), check=True, diff=True)
    assert check.rc == 0, check.stdout + check.stderr
    assert "Give the named users their subordinate UIDs and GIDs" in changed_tasks(check)
    assert {user.name: lines_of(user) for user in (plain, big, podman_user)} == before

    applied = lib.run_playbook(role_play(**role_vars))
    assert applied.rc == 0, applied.stdout + applied.stderr
    results = {
        item["user"]: item
        for item in applied.task(ROLE + "Give the named users their subordinate UIDs and GIDs")["results"]
    }
    recorded = RUN.result(applied)
    assert recorded["changed"] is True
    assert {item["user"] for item in recorded["fixed"]} == {plain.name, big.name, podman_user.name}
    assert results[plain.name]["subuid"]["count"] == 65536
    assert results[big.name]["subuid"]["count"] == results[big.name]["subgid"]["count"] == 100000
    assert results[podman_user.name]["changed"] is True
    handler = applied.task(ROLE + "Run podman system migrate as each user whose subordinate IDs changed")
    migrated = {item["user"]: item["migrate"] for item in handler["results"]}
    assert migrated[podman_user.name]["ran"] is True and migrated[podman_user.name]["rc"] == 0
    assert migrated[plain.name]["ran"] is False
    for user in (plain, big, podman_user):
        assert len(lines_of(user)["subuid"]) == 1 and len(lines_of(user)["subgid"]) == 1
    # podman as that user now maps a high UID
    run = lib.run_as(
        podman_user,
        ["podman", "run", "--rm", "--network", "none", "--user", "65000", lib.IMAGE_BUSYBOX, "id", "-u"],
        check=False,
    )
    assert run.returncode == 0 and run.stdout.strip() == "65000", run.stderr

    for check_mode in (True, False):
        again = lib.run_playbook(role_play(**role_vars), check=check_mode)
        assert again.rc == 0, again.stdout
        assert changed_tasks(again) == [], changed_tasks(again)


def test_overlaps_are_reported_not_changed(make_user) -> None:
    first, second = make_user("pfover"), make_user("pfover")
    assert lib.run_module("subid", {"name": first.name, "migrate": "never"})["changed"]
    start = int(lib.sh("getsubids", first.name).stdout.split()[2])
    block = f"{start}-{start + 65535}"
    lib.sh("usermod", "--add-subuids", block, "--add-subgids", block, second.name)
    before = {user.name: lines_of(user) for user in (first, second)}

    result = lib.run_playbook(
        role_play(subids_users=[{"name": first.name}, {"name": second.name}], subids_discover=False)
    )
    assert result.rc == 0, result.stdout
    assert changed_tasks(result) == []
    assert {user.name: lines_of(user) for user in (first, second)} == before
    findings = RUN.result(result)["findings"]
    overlapping = {f["user"] for f in findings if f["id"].startswith("subid:overlap:")}
    assert {first.name, second.name} <= overlapping
    skipped = {item["id"]: item["reason"] for item in RUN.result(result)["skipped"]}
    assert {f["id"] for f in findings if f["id"].startswith("subid:overlap:")} <= set(skipped)


def test_an_unknown_user_stops_the_role_before_any_change(make_user) -> None:
    user = make_user("pfunk")
    result = lib.run_playbook(
        role_play(subids_users=[{"name": user.name}, {"name": "nosuchuserxyz"}], subids_discover=False)
    )
    assert result.rc != 0
    failed = result.task(ROLE + "Check that the users exist and that the files are what shadow-utils uses")
    assert failed["failed"] is True
    assert "user 'nosuchuserxyz' does not exist" in failed["msg"]
    assert lines_of(user) == {"subuid": [], "subgid": []}


def test_bad_role_variables_are_refused() -> None:
    result = lib.run_playbook(role_play(subids_users=[{"name": "root", "count": 0}]))
    assert result.rc != 0
    assert "count of at least 1" in result.task(ROLE + "Check the role variables")["msg"]
    result = lib.run_playbook(role_play(subids_users=["root"]))
    assert result.rc != 0
    assert "subids_users" in result.stdout + result.stderr


def test_the_remediate_playbook_applies_the_role(make_user) -> None:
    user = make_user("pfrem")
    extra = {"permfix_hosts": "localhost", "subids_users": [{"name": user.name}], "subids_discover": False}
    check = lib.run_playbook(str(PLAYBOOK), extra_vars=extra, check=True, args=["--tags", "subids"])
    assert check.rc == 0, check.stdout + check.stderr
    assert lines_of(user) == {"subuid": [], "subgid": []}
    result = lib.run_playbook(str(PLAYBOOK), extra_vars=extra, args=["--tags", "subids"])
    assert result.rc == 0, result.stdout + result.stderr
    assert len(lines_of(user)["subuid"]) == 1
    skipped = lib.run_playbook(
        str(PLAYBOOK), extra_vars=dict(extra, permfix_remediate_subids=False), args=["--tags", "subids"]
    )
    assert skipped.rc == 0
    # the role is switched off: its include is skipped and nothing changes (the before/after checks
    # and the summary run under any --tags: they are tagged always)
    ran = [t["_task"] for t in skipped.tasks() if not t.get("skipped")]
    assert "Give rootless container users enough subordinate UIDs and GIDs" not in ran, ran
    assert [t["_task"] for t in skipped.tasks() if t.get("changed")] == []
    assert len(lines_of(user)["subuid"]) == 1
