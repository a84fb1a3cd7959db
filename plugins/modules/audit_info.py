#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_info
short_description: Run every permfix detection on a host in one module call
version_added: 0.1.0
description:
  - Finds the container engines (what M(permfix.containers.engine_info) returns) and runs the
    detections M(permfix.containers.subid_info), M(permfix.containers.unprivileged_port_info),
    M(permfix.containers.bind_mount_info) and M(permfix.containers.volume_owner_info) in one
    module run, so that a fleet audit costs one round trip per host.
  - The findings are exactly those the single modules return for the same options, concatenated
    in the order C(subid), C(unprivileged_port), C(bind_mount), C(named_volume).
  - A detection that fails does not stop the others. Its error sentence is returned in
    RV(detections) and RV(errors) and the module still succeeds. The module fails only for invalid
    options, with the message the single module gives.
  - When Docker should answer and does not (a socket without a daemon, a O(docker_host) that is not
    there, an error answer), the detections that look at Docker record that as their error and still
    examine podman.
  - This is the module the C(permfix.containers.audit) playbook runs. Never changes anything.
author:
  - permfix.containers contributors (@permfix)
options:
  detections:
    description: The detections to run. The engines are always found.
    type: list
    elements: str
    choices: [subid, unprivileged_port, bind_mount, named_volume]
    default: [subid, unprivileged_port, bind_mount, named_volume]
  subid_users:
    description:
      - Users (names or numeric UIDs) whose subordinate IDs are examined even when they have no entry
        and no podman state, like O(permfix.containers.subid_info#module:users).
      - A user that does not exist is an error of the C(subid) detection.
    type: list
    elements: str
    default: []
  subid_discover:
    description:
      - Also examine every user with rootless podman state or a running pause process, like
        O(permfix.containers.subid_info#module:discover).
    type: bool
    default: true
  subid_min_count:
    description:
      - How many subordinate UIDs and GIDs each examined user should have, like
        O(permfix.containers.subid_info#module:min_count).
      - Defaults to C(SUB_UID_COUNT) and C(SUB_GID_COUNT) from C(/etc/login.defs), else 65536.
    type: int
  subid_counts:
    description:
      - Per user name, how many subordinate UIDs and GIDs that user should have, like
        O(permfix.containers.subid_info#module:counts).
    type: dict
    default: {}
  unprivileged_ports:
    description:
      - Host ports that rootless containers need in addition to the discovered ones, like
        O(permfix.containers.unprivileged_port_info#module:ports).
    type: list
    elements: int
    default: []
  unprivileged_port_discover:
    description:
      - Ask podman and rootless Docker which host ports their containers publish, like
        O(permfix.containers.unprivileged_port_info#module:discover).
    type: bool
    default: true
  unprivileged_port_sysctl_dirs:
    description:
      - Where the sysctl configuration lives, like O(permfix.containers.unprivileged_port_info#module:sysctl_dirs).
    type: list
    elements: path
    default: [/etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d, /lib/sysctl.d]
  unprivileged_port_sysctl_conf:
    description:
      - The main sysctl file, like O(permfix.containers.unprivileged_port_info#module:sysctl_conf).
    type: path
    default: /etc/sysctl.conf
  bind_mount_engines:
    description:
      - The engines whose containers' bind mounts are examined, like
        O(permfix.containers.bind_mount_info#module:engines); V([]) examines only O(bind_mount_specs).
    type: list
    elements: str
    choices: [docker, podman]
    default: [docker, podman]
  bind_mount_podman_users:
    description:
      - Users whose podman containers are examined (V(root) is rootful podman), like
        O(permfix.containers.bind_mount_info#module:podman_users). Default is root and every rootless user.
    type: list
    elements: str
  bind_mount_containers:
    description:
      - Only these containers (names or ids), like O(permfix.containers.bind_mount_info#module:containers).
    type: list
    elements: str
    default: []
  bind_mount_specs:
    description:
      - Declared needs for containers that do not exist yet, like
        O(permfix.containers.bind_mount_info#module:specs).
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
          - With O(bind_mount_specs[].rootless_user), a numeric uid inside that user's rootless podman containers.
        type: raw
        required: true
      gid:
        description:
          - The group (name or number). Default is the user's primary group, or O(bind_mount_specs[].uid)
            when the uid has no account.
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
          - The ids are inside the default rootless podman namespace of this user.
        type: str
  bind_mount_allowed_roots:
    description:
      - Directories below which a bind mount fix may change ownership, like
        O(permfix.containers.bind_mount_info#module:allowed_roots).
    type: list
    elements: path
    default: [/srv, /opt, /data, /mnt]
  bind_mount_allow_home_subdirs:
    description:
      - A fix may change ownership below (never at) home directories, like
        O(permfix.containers.bind_mount_info#module:allow_home_subdirs).
    type: bool
    default: true
  bind_mount_docker_host:
    description:
      - The Docker daemon of the C(bind_mount) detection, like
        O(permfix.containers.bind_mount_info#module:docker_host).
        Default is O(docker_host).
    type: str
  bind_mount_scan:
    description:
      - For each bind mount with a finding, walk the directory and count the entries a C(chown) would
        change, like O(permfix.containers.bind_mount_info#module:scan).
    type: bool
    default: true
  named_volume_engines:
    description:
      - The engines whose named volumes are examined, like O(permfix.containers.volume_owner_info#module:engines).
    type: list
    elements: str
    choices: [docker, podman]
    default: [docker, podman]
  named_volume_podman_users:
    description:
      - Users whose podman volumes are examined, like O(permfix.containers.volume_owner_info#module:podman_users).
    type: list
    elements: str
  named_volume_volumes:
    description:
      - Only these volume names, like O(permfix.containers.volume_owner_info#module:volumes); V([]) means all.
    type: list
    elements: str
    default: []
  named_volume_owners:
    description:
      - Declared owners of named volumes (volume name to C(uid:gid)), like
        O(permfix.containers.volume_owner_info#module:owners).
    type: dict
    default: {}
  named_volume_fixer_image:
    description:
      - The image of the read-only inspector container for volumes the host cannot read directly, like
        O(permfix.containers.volume_owner_info#module:fixer_image).
    type: str
    default: localhost/permfix-fixer:busybox
  named_volume_docker_host:
    description:
      - The Docker daemon of the C(named_volume) detection, like
        O(permfix.containers.volume_owner_info#module:docker_host).
        Default is O(docker_host).
    type: str
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.docker
  - permfix.containers.attributes.info_module
notes:
  - Without the Docker SDK for Python on a host where a Docker daemon runs, the Docker-based detections
    record an error and the others still run.
  - Run as root (C(become)) so that every user's files, containers and volumes can be examined.
seealso:
  - module: permfix.containers.engine_info
  - module: permfix.containers.subid_info
  - module: permfix.containers.unprivileged_port_info
  - module: permfix.containers.bind_mount_info
  - module: permfix.containers.volume_owner_info
  - module: community.docker.docker_container_info
  - module: containers.podman.podman_container_info
"""

EXAMPLES = r"""
- name: Audit a host in one module call
  permfix.containers.audit_info:
  register: audit

- name: Show the findings and what could not be examined
  ansible.builtin.debug:
    msg: "{{ audit.findings | map(attribute='message') | list + audit.errors }}"

- name: Only subordinate IDs and ports, with the roles' inputs
  permfix.containers.audit_info:
    detections: [subid, unprivileged_port]
    subid_users: [app]
    subid_min_count: 65536
    unprivileged_ports: [80, 443]

- name: Check a declared bind mount and a volume owner too
  permfix.containers.audit_info:
    bind_mount_specs:
      - path: /srv/app/data
        uid: 1000
        name: app
    named_volume_owners:
      pgdata: "999:999"
"""

RETURN = r"""
extends_documentation_fragment:
  - permfix.containers.findings
engines:
  description: The container engines of the host, what M(permfix.containers.engine_info) returns as RV(engines).
  returned: always
  type: dict
  contains:
    docker:
      description: The Docker daemon's version, V(null) when no daemon answers.
      type: str
      sample: 20.10.24
    podman:
      description: The podman version, V(null) when podman is not installed.
      type: str
      sample: 4.3.1
    rootless_users:
      description: Users with rootless podman state or a running pause process.
      type: list
      elements: str
      sample: [app]
  sample: {"docker": "20.10.24", "podman": "4.3.1", "rootless_users": ["app"]}
findings:
  description:
    - The findings of the detections that ran, in the C(permfix.report/v1) shape, in the order
      C(subid), C(unprivileged_port), C(bind_mount), C(named_volume); within each, the single module's order.
  returned: always
  type: list
  elements: dict
  sample:
    - id: "subid:missing:subuid:app"
      class: subid
      severity: error
      subject: app
      container: null
      engine: null
      user: app
      observed: {count: 0, ranges: []}
      expected: {count: 65536}
      message: "app has no subordinate UIDs in /etc/subuid: rootless podman cannot start a container"
      fixable: true
      fix: "give app 65536 subordinate UIDs (permfix.containers.subid)"
detections:
  description:
    - Per detection (V(subid), V(unprivileged_port), V(bind_mount), V(named_volume)) whether it ran to
      its end, how many findings it returned and its error sentence (V(null) when none).
    - A detection can have run and have an error, for example when Docker did not answer and only podman was examined.
  returned: always
  type: dict
  sample:
    subid: {ran: true, findings: 2, error: null}
    unprivileged_port: {ran: true, findings: 0, error: null}
    bind_mount: {ran: true, findings: 0,
        error: "Docker was not examined: the Docker daemon at unix:///run/d.sock does not answer: ..."}
    named_volume: {ran: false, findings: 0, error: null}
errors:
  description: "One C(<detection>: <sentence>) entry per detection that failed or could not examine everything."
  returned: always
  type: list
  elements: str
  sample: ["bind_mount: Docker was not examined: the Docker daemon at unix:///run/d.sock does not answer: ..."]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.audit import AUDIT_INFO
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_detection


def main() -> None:
    module = AnsibleModule(argument_spec=AUDIT_INFO.argument_spec, supports_check_mode=True)
    run_detection(module, AUDIT_INFO)


if __name__ == "__main__":
    main()
