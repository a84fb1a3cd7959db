#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume_owner_info
short_description: Find named volumes whose owners are stale for the containers that use them
version_added: 0.1.0
description:
  - Docker and podman set a named volume's owner only while it is empty. A volume reused after
    the image changed its user keeps the old owners and the new container gets C(permission denied).
  - Lists the named volumes of Docker (through the Docker SDK for Python), rootful podman and the
    rootless podman of every user.
  - The expected owner of each volume is the effective identity of the containers (running or
    stopped) that mount it, resolved with each container's own C(/etc/passwd) and C(/etc/group) and
    mapped through its user namespace to host ids, or the owner declared in O(owners). Containers
    that run as different users make a finding of their own (not fixable without a declared owner).
    Root containers keep C(CAP_DAC_OVERRIDE) and do not decide the owner.
  - The observed owners are read on the host from the local driver's mountpoint with the collection's
    ownership engine (never following a symbolic link); the volume root, and with O(scan=full) every
    entry with a count of those that differ. When the mountpoint is not reachable (a local volume
    backed by a mount), a read-only inspector container (the same locked-down container as
    M(permfix.containers.volume_owner)'s fixer, with the volume mounted read-only) counts instead, if
    O(inspector) is set and O(fixer_image) is present; this module never pulls or builds an image.
  - Volumes of other drivers (plugins) are reported as not inspectable.
  - Returns C(named_volume) findings (the subject is the volume name) and a fix plan for
    M(permfix.containers.volume_owner). Changes nothing.
author:
  - permfix.containers contributors (@permfix)
options:
  engines:
    description: The container engines whose volumes are examined.
    type: list
    elements: str
    choices: [docker, podman]
    default: [docker, podman]
  podman_users:
    description:
      - The users whose podman volumes are examined; V(root) is rootful podman.
      - Default is root and every user with rootless podman state or a running pause process.
    type: list
    elements: str
  volumes:
    description: Only these volume names. Empty means all.
    type: list
    elements: str
    default: []
  owners:
    description:
      - Declared owners, a mapping of volume names to C(uid:gid) strings, with numeric ids as the
        engine's containers see them (for a rootless podman volume, ids inside that user's containers).
        A declared owner wins over the containers' users.
    type: dict
    default: {}
  scan:
    description:
      - V(full) walks every entry of each volume that has an expected owner and counts those that differ.
      - V(root) only looks at the volume's root directory (fast on huge volumes; the counts then cover the root only).
    type: str
    choices: [full, root]
    default: full
  sample_size:
    description: How many differing entries to return per volume as examples.
    type: int
    default: 10
  inspector:
    description:
      - Count through a read-only inspector container when the volume's mountpoint is not reachable from
        the host. The container is removed afterwards.
    type: bool
    default: true
  fixer_image:
    description: The image of the inspector container (it needs C(sh), C(find), C(stat) and C(wc)).
    type: str
    default: localhost/permfix-fixer:busybox
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.docker
  - permfix.containers.attributes.info_module
notes:
  - Path names in the result that are not valid UTF-8 show each undecodable byte as C(\xNN)
    (C(caf\xe9)), so that the result stays valid JSON.
  - Run as root (C(become)) so that every volume's mountpoint can be read.
  - Engines that are absent or do not answer become RV(notes), not errors.
seealso:
  - module: permfix.containers.volume_owner
  - module: permfix.containers.bind_mount_info
  - module: community.docker.docker_volume_info
  - module: containers.podman.podman_volume_info
  - module: community.docker.docker_volume
    description: Recreating a volume fixes its owners too, but deletes its data.
  - module: containers.podman.podman_volume
    description: Recreating a volume fixes its owners too, but deletes its data.
"""

EXAMPLES = r"""
- name: Find named volumes with stale owners on every engine
  permfix.containers.volume_owner_info:
  register: volumes

- name: Show what is wrong
  ansible.builtin.debug:
    msg: "{{ volumes.findings | map(attribute='message') | list }}"

- name: Check one volume against a declared owner, root only
  permfix.containers.volume_owner_info:
    engines: [docker]
    volumes: [pgdata]
    owners:
      pgdata: "999:999"
    scan: root
"""

RETURN = r"""
extends_documentation_fragment:
  - permfix.containers.findings
findings:
  description: C(named_volume) findings in the C(permfix.report/v1) schema; the subject is the volume name.
  returned: always
  type: list
  elements: dict
  sample:
    - id: "named_volume:docker:pgdata"
      class: named_volume
      severity: error
      subject: pgdata
      container: db
      engine: docker
      user: null
      observed: {method: host, uid: 1000, gid: 1000, mode: "0755", entries: 12, mismatched: 12}
      expected: {uid: 999, gid: 999, host_uid: 999, host_gid: 999, source: containers, containers: [db]}
      message: >-
        docker volume pgdata (used by db) should be owned by 999:999, but its root is owned by 1000:1000
        and 12 of 12 entries differ; db cannot write it
      fixable: true
      fix: "chown 999:999 on 12 of 12 entries with a fixer container"
volumes:
  description: Every volume examined, with its status (C(ok), C(stale), C(conflict), C(unused),
      C(not_inspectable), C(not_inspected), C(error)).
  returned: always
  type: list
  elements: dict
  sample:
    - name: pgdata
      engine: docker
      user: null
      driver: local
      mountpoint: /var/lib/docker/volumes/pgdata/_data
      status: stale
      access_method: host
      containers: [{container: db, running: false, access: rw, destination: /data, uid: 999, gid: 999,
          host_uid: 999, host_gid: 999}]
fix_plan:
  description: One entry per fixable volume, the arguments for M(permfix.containers.volume_owner).
  returned: always
  type: list
  elements: dict
  sample:
    - volume: pgdata
      engine: docker
      user: null
      owner: "999:999"
      host_owner: "999:999"
      containers: [db]
      mismatched: 12
      finding: "named_volume:docker:pgdata"
notes:
  description: Engines, users and containers that could not be examined, and why.
  returned: always
  type: list
  elements: str
  sample: ["podman is not installed on this host; no podman volumes were examined"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.named_volume import VOLUME_INFO
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_detection


def main() -> None:
    module = AnsibleModule(argument_spec=VOLUME_INFO.argument_spec, supports_check_mode=True)
    run_detection(module, VOLUME_INFO)


if __name__ == "__main__":
    main()
