#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: bind_mount_info
short_description: Find bind mounts that a container's user cannot read or write
version_added: 0.1.0
description:
  - Examines every bind mount of every container, running or stopped, of Docker (through the
    Docker SDK for Python), rootful podman and the rootless podman of every user, plus the
    declared O(specs) for hosts where the containers do not exist yet.
  - For each mount it resolves the user the container process runs as (its C(User) setting,
    else the image's C(USER), else root) with the container's own C(/etc/passwd) and
    C(/etc/group), copied out through the engine (so stopped containers work too).
  - That user is mapped through the container's user namespace to host ids (rootful engines use
    the same ids; Docker C(userns-remap); rootless podman, where container uid 0 is the user and
    uid N is C(subuid_start+N-1); C(keep-id); explicit C(--uidmap)). A running container's maps are
    read from the kernel (C(/proc/PID/uid_map)); a stopped one's from podman's C(IDMappings),
    the rootless user's namespace and C(/etc/subuid).
  - The host ids are checked against the host path like the kernel does (owner, POSIX ACL,
    group and supplementary groups, other; a container root's C(CAP_DAC_OVERRIDE)). A mount
    needs read and enter, and for C(rw) mounts write.
  - Returns one C(bind_mount) finding per mount whose identity lacks the access it needs, a
    fix plan for the directories it is safe to change, and what it would not change and why.
  - Changes nothing. Absent or silent engines become RV(notes), not errors.
author:
  - permfix.containers contributors (@permfix)
options:
  engines:
    description:
      - The container engines whose containers are examined. V([]) examines only O(specs).
    type: list
    elements: str
    choices: [docker, podman]
    default: [docker, podman]
  containers:
    description:
      - Only these containers (names, or ids of at least 12 characters). Empty means all.
    type: list
    elements: str
    default: []
  podman_users:
    description:
      - The users whose podman containers are examined; V(root) is rootful podman.
      - Default is root and every user with rootless podman state or a running pause process.
    type: list
    elements: str
  specs:
    description:
      - Declared needs, for containers that do not exist yet.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The host directory the container will mount.
        type: path
        required: true
      uid:
        description:
          - The host user (name or number) that needs access.
          - With O(specs[].rootless_user), a numeric uid inside that user's rootless podman containers.
        type: raw
        required: true
      gid:
        description:
          - The group (name or number). Default is the user's primary group, or O(specs[].uid) when
            the uid has no account.
        type: raw
      access:
        description: V(rw) needs read, write and enter; V(ro) read and enter.
        type: str
        choices: [rw, ro]
        default: rw
      name:
        description: A label (the future container's name), used as the finding's C(container).
        type: str
      rootless_user:
        description:
          - The ids are inside the default rootless podman namespace of this user and are mapped
            through its C(/etc/subuid) and C(/etc/subgid) ranges.
        type: str
  scan:
    description:
      - For each mount with a finding, walk the directory and count the entries a C(chown) would
        change (reported in the finding's C(fix) and C(observed.mismatched)).
    type: bool
    default: true
  allowed_roots:
    description:
      - Directories below which the fix plan may change ownership. Paths elsewhere are listed
        in RV(skipped_mounts) with the reason.
    type: list
    elements: path
    default: [/srv, /opt, /data, /mnt]
  allow_home_subdirs:
    description:
      - Also allow directories below the home directory of root and of regular users
        (C(UID_MIN) to C(UID_MAX)); never the home directory itself.
    type: bool
    default: true
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.docker
  - permfix.containers.attributes.info_module
notes:
  - Path names in the result that are not valid UTF-8 show each undecodable byte as C(\xNN)
    (C(caf\xe9)), so that the result stays valid JSON.
  - Run it as root, so that it can read every path and ask podman as every rootless user.
  - Sockets, device nodes and single files are checked but never planned for a change.
seealso:
  - module: permfix.containers.path_owner
  - module: community.docker.docker_container_info
  - module: containers.podman.podman_container_info
  - module: ansible.posix.acl
    description: POSIX ACLs, what a C(strategy=acl) fix grants.
"""

EXAMPLES = r"""
- name: Find bind mounts that containers cannot use
  permfix.containers.bind_mount_info:
  register: bind_mounts

- name: Show the findings
  ansible.builtin.debug:
    msg: "{{ bind_mounts.findings | map(attribute='message') | list }}"

- name: Check a directory for a container that will run as 1000:1000 later
  permfix.containers.bind_mount_info:
    engines: []
    specs:
      - path: /srv/app/data
        uid: 1000
        gid: 1000
        name: app

- name: Check a directory a rootless container of user app will mount as uid 999
  permfix.containers.bind_mount_info:
    engines: []
    specs:
      - path: /home/app/pgdata
        uid: 999
        rootless_user: app
"""

RETURN = r"""
extends_documentation_fragment:
  - permfix.containers.findings
findings:
  description: Findings of class C(bind_mount) in the C(permfix.report/v1) schema.
  returned: always
  type: list
  elements: dict
  sample:
    - id: "bind_mount:web:/srv/app/data"
      class: bind_mount
      severity: error
      subject: /srv/app/data
      container: web
      engine: docker
      user: null
      observed: {uid: 0, gid: 0, mode: "0755", type: directory, access: "r-x", via: other, entries: 1310,
          mismatched: 1204}
      expected: {uid: 1000, gid: 1000, access: rw, needs: rwx, container_uid: 1000, container_gid: 1000,
          container_path: /data}
      message: "docker container web runs as 1000:1000 and cannot write /srv/app/data (mounted rw at /data): ..."
      fixable: true
      fix: "chown 1000:1000 on 1,204 of 1,310 entries"
mounts:
  description:
    - Every bind mount and spec examined, with its outcome in C(status) - V(ok), V(denied),
      V(missing) (the source does not exist), V(unresolved) (the container user is unknown),
      V(unmapped) (the user is outside the container's user namespace), V(skipped) or V(error).
  returned: always
  type: list
  elements: dict
  sample:
    - container: web
      engine: docker
      user: null
      source: /srv/app/data
      real_path: /srv/app/data
      destination: /data
      access: rw
      status: denied
      type: directory
      container_uid: 1000
      container_gid: 1000
      host_uid: 1000
      host_gid: 1000
      host_groups: []
      map_source: kernel
      uid_map: ["0:0:4294967295"]
      gid_map: ["0:0:4294967295"]
      observed: {uid: 0, gid: 0, mode: "0755"}
      check: {granted: false, needed: rwx, has: r-x, via: other}
      reason: null
      finding: "bind_mount:web:/srv/app/data"
fix_plan:
  description:
    - The directories it is safe to change, one entry per path and host owner, for
      M(permfix.containers.path_owner). C(strategies) lists what would work (V(chown) is missing
      when different owners need the path or the mode's owner bits lack what is needed).
  returned: always
  type: list
  elements: dict
  sample:
    - path: /srv/app/data
      uid: 1000
      gid: 1000
      access: rw
      containers: [web]
      findings: ["bind_mount:web:/srv/app/data"]
      strategies: [chown, acl]
      reason: null
skipped_mounts:
  description: Denied mounts that will not be changed (not in RV(fix_plan)), and why.
  returned: always
  type: list
  elements: dict
  sample:
    - path: /var/run/docker.sock
      container: agent
      engine: docker
      user: null
      reason: "/var/run/docker.sock is a socket, not a directory: ..."
notes:
  description: What could not be examined and why (absent engines, unreadable files, unknown users).
  returned: always
  type: list
  elements: str
  sample: ["podman is not installed on this host; no podman containers were examined"]
containers_examined:
  description: How many containers were examined.
  returned: always
  type: int
  sample: 3
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.bind_mount import BIND_MOUNT_INFO
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_detection


def main() -> None:
    module = AnsibleModule(argument_spec=BIND_MOUNT_INFO.argument_spec, supports_check_mode=True)
    run_detection(module, BIND_MOUNT_INFO)


if __name__ == "__main__":
    main()
