#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: path_owner
short_description: Give a container's host identity a directory tree, changing only what differs, safely
version_added: 0.1.0
description:
  - Makes the entries of O(path) owned by O(owner) and O(group) (strategy V(chown)), or grants
    that identity read, write and search access with POSIX ACLs while the owner stays as it is
    (strategy V(acl)). This is the fix for a bind-mounted directory that a container's process
    cannot use.
  - Only entries that differ are changed; the count and a bounded sample of them are returned,
    in check mode too, where nothing is changed. Diff mode shows the sample before and after.
  - The tree is walked through directory file descriptors and never through a symbolic link
    (links themselves are changed, as C(chown -R) does, and never followed); a directory
    replaced by a link while it is walked is reported, not entered. Device nodes are left alone
    (owning one grants access to the device). Sockets and FIFOs are never opened.
  - Files of any type with more than one hard link (regular files, FIFOs, sockets, symbolic
    links) are left alone and reported, unless O(allow_hardlinks) is set, because their other
    names can be outside the tree.
  - The walk does not enter other filesystems or bind mounts below O(path) unless
    O(one_file_system) is false. A mount made while the walk runs is found too; the mount id of
    every directory is compared with its parent's once the mount table has changed.
  - A file that is a mount point (a file bind-mounted into the tree, for example a jail's
    C(/etc/passwd)) is never changed, whatever O(one_file_system) says; it is listed in
    RV(skipped_entries.mounts) with the reason. With O(one_file_system=false), a mount below
    O(path) that shows a protected directory (see below) is not entered either.
  - When a directory changes while it is walked (entries created, removed or renamed, so that its
    modification time or link count differs after its listing), entries may have been missed;
    O(path) itself is left unchanged, RV(complete) is false, RV(changed_while_walked) lists those
    directories and a warning says so, so that the next run (also with
    O(change_policy=on_root_mismatch)) walks the tree again.
  - Names that are not valid UTF-8 are returned with each undecodable byte written as C(\xNN)
    (C(caf\xe9)), so that the result is valid JSON; the entries themselves are changed all
    the same.
  - Directories are changed after their content and O(path) itself last, and O(path) is left
    unchanged when something below it could not be changed, so that an interrupted or partial
    run is found again by the next one (see O(change_policy)).
  - Entries that cannot be changed (for example immutable files, C(chattr +i)) are reported,
    the rest is changed, and the module fails with the list so the problem is not missed.
  - Refuses system paths (V(/), C(/etc), C(/usr), C(/bin), C(/sbin), C(/lib*), C(/boot),
    C(/dev), C(/proc), C(/sys), C(/run), C(/var/run), C(/tmp), C(/var) and similar), a home
    directory itself, and container storage (C(/var/lib/docker), C(/var/lib/containers),
    each user's C(~/.local/share/containers), and the storage directories configured for Docker
    and Podman). Also refused with everything below them - C(/root/.ssh) and every home's
    C(.ssh), C(/var/lib/dpkg), C(/var/lib/rpm), C(/var/spool/cron), C(/var/lib/kubelet),
    C(/var/lib/systemd), C(/nix/store), C(/efi) and C(/snap). O(path) itself must not be a
    symbolic link, and must not be a mount of a protected directory (C(mount --bind /etc /srv/x)
    is refused for V(/srv/x); the mount's source is checked too).
  - "Residual race: a process that can write a directory of the tree could swap a file for a
    hard link between the check and the change of that file. With C(fs.protected_hardlinks=1),
    the default on current distributions, it can only link files it owns or can already read
    and write."
author:
  - permfix.containers contributors (@permfix)
options:
  path:
    description:
      - The directory (or, with O(recurse=false), the single entry) to change. Must be absolute.
    type: path
    required: true
  owner:
    description:
      - With strategy V(chown), the owner to give, as a user name or a numeric uid.
      - With strategy V(acl), the user granted access through a named ACL entry.
      - At least one of O(owner) and O(group) is required.
    type: str
  group:
    description:
      - With strategy V(chown), the group to give, as a group name or a numeric gid.
      - With strategy V(acl), the group granted access through a named ACL entry.
    type: str
  recurse:
    description:
      - Change the whole tree below O(path). With V(false) only O(path) itself is changed (and it
        may then be a file).
      - With V(true), O(path) must be a directory.
    type: bool
    default: true
  from_owner:
    description:
      - Change only entries currently owned by this owner and group, in the syntax of
        C(chown --from) - C(OWNER), C(OWNER:GROUP) or C(:GROUP), names or numbers. Other entries
        are counted in RV(counts.not_from_owner) and left alone.
    type: str
  strategy:
    description:
      - V(chown) changes the owner and group of the entries that differ.
      - V(acl) leaves owners and modes as they are and adds POSIX ACL entries granting O(owner)
        (C(user:UID)) and O(group) (C(group:GID)) C(rwX) (execute only on directories and on
        files that already have an execute bit), plus the same as a default ACL on directories
        so new entries inherit it. The ACL mask is widened by those permissions only. For a
        directory that a host user and a container must both write. Symbolic links get no ACL.
        The filesystem must support POSIX ACLs.
      - The ACLs are written by the module itself (the kernel's C(system.posix_acl_access) and
        C(system.posix_acl_default) attributes) through the directory descriptors of the walk,
        never by a path name that could lead through a symbolic link.
    type: str
    choices: [chown, acl]
    default: chown
  change_policy:
    description:
      - V(always) examines every entry of the tree on every run.
      - V(on_root_mismatch) examines the tree only when O(path) itself differs from what is
        wanted (like Kubernetes' C(fsGroupChangePolicy=OnRootMismatch)); because O(path) is
        changed last and only when everything below it was changed, a tree whose root is right
        was completely done by an earlier run. Much faster on big trees; misses entries changed
        by something else later.
    type: str
    choices: [always, on_root_mismatch]
    default: always
  one_file_system:
    description:
      - Stay on the filesystem of O(path); other filesystems mounted below it (and bind mounts)
        are not entered and are listed in RV(skipped_entries.mounts).
    type: bool
    default: true
  allow_hardlinks:
    description:
      - Also change files (of any type but directories and device nodes) that have more than one
        hard link. Their other names can be anywhere on the same filesystem, also outside O(path).
    type: bool
    default: false
  sample_size:
    description:
      - How many changed entries (and skipped or failed ones) to return and show in diff mode.
    type: int
    default: 20
  workers:
    description:
      - How many processes walk a large tree. V(0) uses one per CPU the module may run on (its
        affinity, which containers and cgroups narrow), at most 4; V(1) walks in one process.
      - Helper processes start only once the walk has seen 4096 entries, so small trees always
        walk in one process. Each helper walks a subdirectory handed to it as an open,
        checked descriptor, with the same rules; the root is still changed last.
      - With O(allow_hardlinks=true) the walk uses one process.
      - A larger value is lowered to 4 and to the number of usable CPUs (more processes than CPUs
        only compete for them); RV(notes) says so.
    type: int
    default: 0
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.attributes.fix_module
notes:
  - Run as root (C(become)) to change owners; the module reports each entry it could not change.
  - The kernel clears the set-user-ID and set-group-ID bits and file capabilities of a regular
    file whose owner changes, as it does for C(chown).
  - With strategy V(acl) the group permission bits shown by C(ls -l) become the ACL mask.
seealso:
  - module: permfix.containers.bind_mount_info
  - module: ansible.builtin.file
  - module: ansible.posix.acl
    description: POSIX ACLs, what O(strategy=acl) grants.
  - module: community.docker.docker_container_info
  - module: containers.podman.podman_container_info
"""

EXAMPLES = r"""
- name: Give the container user 1000 its bind-mounted data directory
  permfix.containers.path_owner:
    path: /srv/app/data
    owner: "1000"
    group: "1000"

- name: Only hand over what still belongs to the old image's user
  permfix.containers.path_owner:
    path: /srv/app/data
    owner: app
    group: app
    from_owner: "999:999"

- name: Let a rootless container (host uid 100999) write a directory the deploy user keeps owning
  permfix.containers.path_owner:
    path: /home/deploy/shared
    owner: "100999"
    strategy: acl

- name: Big tree - look at it only when its root is wrong
  permfix.containers.path_owner:
    path: /srv/media
    owner: "1000"
    group: "1000"
    change_policy: on_root_mismatch

- name: Only the mount point itself, not its content
  permfix.containers.path_owner:
    path: /srv/app/socket-dir
    owner: "1000"
    recurse: false
"""

RETURN = r"""
path:
  description: The path, normalized.
  returned: always
  type: str
  sample: /srv/app/data
real_path:
  description: Where the path really is (symbolic links in its parent directories resolved).
  returned: success
  type: str
  sample: /data/app
owner_id:
  description: The numeric uid O(owner) resolved to (null when not given).
  returned: success
  type: int
  sample: 1000
group_id:
  description: The numeric gid O(group) resolved to (null when not given).
  returned: success
  type: int
  sample: 1000
strategy:
  description: The strategy used.
  returned: success
  type: str
  sample: chown
walked:
  description: Whether the tree below O(path) was examined (false with O(recurse=false), or with
    O(change_policy=on_root_mismatch) when O(path) was already right).
  returned: success
  type: bool
  sample: true
complete:
  description: Whether every directory of the tree could be walked, and none changed while it was walked.
  returned: success
  type: bool
  sample: true
root:
  description: O(path) itself as found before any change.
  returned: success
  type: dict
  sample: {"uid": 0, "gid": 0, "mode": "0755", "type": "directory"}
root_mismatched:
  description: Whether O(path) itself differed from what is wanted.
  returned: success
  type: bool
  sample: true
root_deferred:
  description: Why O(path) itself was left unchanged although it differs (null when it was not).
  returned: success
  type: str
  sample: null
counts:
  description:
    - Numbers of entries. C(entries) were examined (O(path) included); C(mismatched) differ from
      what is wanted; C(to_change) are the ones this run changes (in check mode, would change);
      C(changed) were changed (0 in check mode); C(not_from_owner) differ but are not owned by
      O(from_owner); C(skipped_hardlinks), C(skipped_devices) and C(skipped_mounts) were left
      alone; C(vanished) disappeared during the walk; C(failed) could not be changed or walked.
  returned: success
  type: dict
  contains:
    entries:
      description: Entries examined, O(path) included.
      type: int
    mismatched:
      description: Entries that differ from what is wanted.
      type: int
    to_change:
      description: Entries this run changes (in check mode, would change).
      type: int
    changed:
      description: Entries changed (0 in check mode).
      type: int
    not_from_owner:
      description: Entries that differ but are not owned by O(from_owner).
      type: int
    skipped_hardlinks:
      description: Files (of any type but directories) with more than one hard link, left alone.
      type: int
    skipped_devices:
      description: Device nodes, left alone.
      type: int
    skipped_mounts:
      description: Mount points below O(path) (other filesystems, bind mounts of directories or files), not
        entered and not changed.
      type: int
    vanished:
      description: Entries that disappeared during the walk.
      type: int
    failed:
      description: Entries that could not be changed or walked.
      type: int
    changed_while_walked:
      description: Directories that changed while they were walked (entries may have been missed).
      type: int
  sample:
    entries: 1310
    mismatched: 1204
    to_change: 1204
    changed: 1204
    not_from_owner: 0
    skipped_hardlinks: 0
    skipped_devices: 0
    skipped_mounts: 0
    vanished: 0
    failed: 0
    changed_while_walked: 0
sample:
  description: Up to O(sample_size) of the entries changed (or to change),
      with their owner (or ACL entries) before and after.
  returned: success
  type: list
  elements: dict
  sample: [{"path": "/srv/app/data/db", "before": "0:0", "after": "1000:1000"}]
skipped_entries:
  description: Samples of the entries left alone, by reason.
  returned: success
  type: dict
  contains:
    hardlinks:
      description: Files with more than one hard link (C(path), C(type), C(links), C(owner)).
      type: list
      elements: dict
    devices:
      description: Device nodes (C(path), C(owner)).
      type: list
      elements: dict
    mounts:
      description: Mount points not entered or changed (C(path), C(reason)).
      type: list
      elements: dict
  sample: {"hardlinks": [{"path": "/srv/app/data/x", "type": "regular file", "links": 2, "owner": "0:0"}],
      "devices": [], "mounts": [{"path": "/srv/app/data/passwd", "reason": "a file mounted over this name"}]}
failures:
  description: Up to O(sample_size) entries that could not be changed or walked, with the reason.
  returned: success
  type: list
  elements: dict
  sample: [{"path": "/srv/app/data/locked",
      "error": "operation not permitted (an immutable or append-only entry, or a filesystem that refuses it)"}]
changed_while_walked:
  description: Up to O(sample_size) directories that changed while they were walked (C(path)); when
    not empty, RV(complete) is false and O(path) itself was left for the next run.
  returned: success
  type: list
  elements: dict
  sample: []
notes:
  description: Remarks about how the walk ran, for example that O(workers) was lowered.
  returned: success
  type: list
  elements: str
  sample: ["workers=16 was lowered to 4 (at most 4, and at most one per usable CPU: 8)"]
summary:
  description: One sentence saying what was (or would be) done.
  returned: success
  type: str
  sample: "chown 1000:1000 on 1,204 of 1,310 entries"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.path_owner import PATH_OWNER_FIX
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_fix


def main() -> None:
    module = AnsibleModule(
        argument_spec=PATH_OWNER_FIX.argument_spec, supports_check_mode=True, **PATH_OWNER_FIX.module_options
    )
    run_fix(module, PATH_OWNER_FIX)


if __name__ == "__main__":
    main()
