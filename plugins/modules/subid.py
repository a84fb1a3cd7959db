#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: subid
short_description: Give a user at least N subordinate UIDs and GIDs, safely, then run podman system migrate
version_added: 0.1.0
description:
  - Makes sure a user holds at least O(count) subordinate UIDs in C(/etc/subuid) and GIDs in
    C(/etc/subgid), which rootless podman needs to map the IDs of a container.
  - Never moves or shrinks an existing range, because the files in the user's container storage
    are owned by those IDs. A range is widened in place when the IDs after it are free;
    otherwise a new range is added at the first free block within C(SUB_UID_MIN)..C(SUB_UID_MAX)
    (C(SUB_GID_MIN)..C(SUB_GID_MAX)) of login.defs that overlaps no other range (malformed
    lines included) and no account's UID or GID, the way shadow's C(useradd) chooses. When both
    files need a new range, a start that is free in both is preferred.
  - Every other line stays byte for byte, comments, blank lines, other users' entries and
    malformed lines included.
  - Additions to the system files are written with C(usermod --add-subuids/--add-subgids),
    which takes shadow-utils' locks. Widening a range, other files, or a host without a usermod
    that knows those options use an atomic replacement (temporary file, fsync, rename, same
    owner, mode and SELinux label) under shadow-utils' locks (C(.pwd.lock) and C(FILE.lock)).
    Runs of this module also serialise among themselves, so two runs for different users never
    pick the same block, through a lock in C(/run/permfix-containers), a directory only root may
    write (made mode 0700; the module refuses to use it when it is a symbolic link, not owned by
    root, or writable by its group or others). Another local user can therefore neither block
    nor break a run. A run that has nothing to change takes no lock; one that has fails with a
    sentence when C(/run) is not writable (read-only, or the module does not run as root).
    A lock held for more than 60 seconds fails the run with a sentence naming the holder's process.
  - When C(/etc/subuid) or C(/etc/subgid) (or the files of O(subuid_path) and O(subgid_path)) is a
    symbolic link, the file it leads to is replaced atomically in its own directory and the link is
    kept, because shadow-utils and podman follow the link. A link that leads nowhere, to something
    other than a regular file, or into a directory its group or others can write (where anyone
    could swap the file) is refused and nothing is changed. C(usermod) is not used then.
  - When the second file cannot be written (immutable, no space) after the first was, the first
    gets its previous text back, so the two files never disagree and the run reports no change. If
    even that fails, the run fails with C(changed=true) and C(changed_files) naming the file that
    keeps the new range.
  - New ranges end at 4294967294 at most (4294967295 is "no ID"), whatever C(SUB_UID_MAX) or
    C(SUB_GID_MAX) in login.defs allows; a value above it is reported as a warning.
  - Overlaps with other users' ranges are reported as warnings, never "fixed".
  - Refuses to change anything when C(/etc/nsswitch.conf) names a C(subid:) source other than
    C(files), because the files are not what shadow-utils uses then.
  - After the user's ranges change, runs C(podman system migrate) as that user (with HOME and,
    when C(/run/user/UID) exists, XDG_RUNTIME_DIR) so the new ranges take effect.
    B(This stops every running container of that user.) It is skipped when podman is not
    installed or the user has no rootless podman state, and with O(migrate=never).
author:
  - permfix.containers contributors (@permfix)
options:
  name:
    description: The user, by name or numeric UID.
    type: str
    required: true
    aliases: [user]
  count:
    description:
      - The least number of subordinate UIDs and of subordinate GIDs the user must hold
        (distinct IDs over all its ranges).
      - Defaults to C(SUB_UID_COUNT) and C(SUB_GID_COUNT) from O(login_defs_path), else 65536.
      - To let a container use UID or GID N, the user needs at least N.
    type: int
  migrate:
    description:
      - When to run C(podman system migrate) as the user, which stops its running containers.
      - V(on_change) runs it after this module changed the user's ranges.
      - V(always) runs it even when nothing changed (for handlers that run after the change).
      - V(never) skips it; the new ranges then take effect only after the user's podman pause
        process ends (for example at the next reboot) or a later migrate.
    type: str
    choices: [on_change, always, never]
    default: on_change
  backup:
    description:
      - Keep a copy of each file this module changes, with a timestamp in its name, before changing it.
    type: bool
    default: false
notes:
  - Run as root (C(become=true)).
  - Subordinate IDs are read and written as shadow-utils reads them; see M(permfix.containers.subid_info)
    for what counts as malformed.
seealso:
  - module: permfix.containers.subid_info
  - name: subuid(5)
    description: The format of C(/etc/subuid).
    link: https://man7.org/linux/man-pages/man5/subuid.5.html
  - name: podman-system-migrate(1)
    description: Why the new ranges need a migrate.
    link: https://docs.podman.io/en/latest/markdown/podman-system-migrate.1.html
  - name: linux-system-roles.podman
    description: >-
      The role that manages podman and its rootless users; its facts C(podman_subuid_info) and
      C(podman_subgid_info) have the shape that
      RV(permfix.containers.subid_info#module:podman_subuid_info) returns.
    link: https://github.com/linux-system-roles/podman
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.subid_files
  - permfix.containers.attributes.fix_module
"""

EXAMPLES = r"""
- name: Give app the login.defs default number of subordinate IDs (65536), then migrate
  permfix.containers.subid:
    name: app
  become: true

- name: Let ci run containers whose processes use UIDs up to 200000
  permfix.containers.subid:
    name: ci
    count: 200000
    backup: true
  become: true

- name: Extend ranges now, migrate later from a handler
  permfix.containers.subid:
    name: app
    migrate: never
  become: true
  notify: Migrate app's podman storage

# in handlers:
- name: Migrate app's podman storage
  permfix.containers.subid:
    name: app
    migrate: always
  become: true
"""

RETURN = r"""
user:
  description: The user's name.
  returned: success
  type: str
  sample: app
uid:
  description: The user's UID.
  returned: success
  type: int
  sample: 1001
subuid:
  description: The user's subordinate UIDs after the change (or, in check mode, as they would be).
  returned: success
  type: dict
  sample:
    count: 65536
    wanted: 65536
    ranges: [{start: 100000, count: 65536}]
    changes:
      - {action: widen, start: 101000, count: 64536, line: 3,
         range_before: {start: 100000, count: 1000}, range_after: {start: 100000, count: 65536}}
  contains:
    count:
      description: Distinct subordinate UIDs the user holds.
      type: int
    wanted:
      description: The least number asked for.
      type: int
    ranges:
      description: The user's ranges.
      type: list
      elements: dict
    changes:
      description:
        - "What was (or, in check mode, would be) done: V(widen) the range on line C(line) in place, or
          V(add) a range. C(start) and C(count) are the IDs the user gains; C(range_before) and
          C(range_after) are the widened range before and after (C(range_before) is V(null) for V(add))."
      type: list
      elements: dict
subgid:
  description: The user's subordinate GIDs, in the same shape as RV(subuid).
  returned: success
  type: dict
  sample:
    count: 65536
    wanted: 65536
    ranges: [{start: 100000, count: 65536}]
    changes: []
method:
  description:
    - How the files were written, V(usermod) or V(file) (atomic replacement under shadow's locks);
      V(null) when nothing was written.
  returned: success
  type: str
  sample: usermod
changed_files:
  description:
    - The files that keep their new ranges although the run failed, when the second file could not be
      written and the first could not be given its previous text back (the run then fails with
      C(changed=true)).
  returned: failure, in that case only
  type: list
  elements: str
  sample: [/etc/subuid]
backup_files:
  description: The backup of each changed file, by kind, when O(backup=true).
  returned: success
  type: dict
  sample: {subuid: "/etc/subuid.12345.2026-11-22@20:00:00~"}
migrate:
  description: What became of C(podman system migrate) as the user.
  returned: success
  type: dict
  sample:
    ran: true
    would_run: true
    rc: 0
    stdout: ""
    stderr: ""
    reason: null
    warning: podman system migrate stops every running container of the user
  contains:
    ran:
      description: Whether it ran.
      type: bool
    would_run:
      description: Whether it ran or, in check mode, would run.
      type: bool
    rc:
      description: Its exit code, V(null) when it did not run.
      type: int
    stdout:
      description: What it printed.
      type: str
    stderr:
      description: What it printed on standard error.
      type: str
    reason:
      description: Why it did not run.
      type: str
    warning:
      description: That it stops the user's running containers, when it runs or would run.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.subid_fix import SUBID_FIX
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_fix


def main() -> None:
    module = AnsibleModule(argument_spec=SUBID_FIX.argument_spec, supports_check_mode=True)
    run_fix(module, SUBID_FIX)


if __name__ == "__main__":
    main()
