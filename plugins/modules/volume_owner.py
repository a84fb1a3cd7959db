#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume_owner
short_description: Fix a named volume's stale owners with a one-off, locked-down fixer container
version_added: 0.1.0
description:
  - Makes every entry of a Docker or podman named volume owned by O(owner), or by the user the
    containers that mount it run as, changing only the entries that differ. Unlike
    C(docker run --rm -v vol:/data alpine chown -R ...) it is idempotent, works offline, and the
    fixer has almost no privileges; unlike recreating the volume it keeps the data.
  - The volume is examined first (on the host with the collection's ownership engine when the local
    driver's mountpoint is reachable, else with a read-only inspector container). When nothing
    differs, no container is started at all and the task reports no change. In check mode the counts are
    reported and nothing is started or changed.
  - "The fixer is a one-off container: the volume is its only mount (at C(/v)); C(--network none);
    a read-only root filesystem; every capability dropped except C(CHOWN) and C(DAC_READ_SEARCH)
    (to enter directories whatever their mode); C(no-new-privileges); run as uid 0 of the engine's
    namespace; labelled C(permfix.containers.fixer) and C(permfix.containers.volume=NAME) so that
    leftovers can be found; removed afterwards, also on failure. The C(security) key of RV(fixer) shows
    how it was configured, as the engine reported it."
  - "It runs C(find /v -xdev -depth) selecting only entries whose owner or group differ and that are
    not device nodes nor regular files with more than one hard link (like the ownership engine), and
    C(chown -h) on them: symbolic links are changed themselves and never followed, the volume's root
    last. Why a container and not the host: the container is the boundary. A path component swapped
    for a symbolic link between C(find) and C(chown) by a process writing the volume during the fix
    can only lead to what the container sees (the volume, its own read-only root), never to the
    host's files. O(stop_containers) closes that window too."
  - With rootless podman (O(podman_user)) the fixer runs as that user, so its C(chown) happens in the
    user's namespace (container uid 999 is host C(subuid_start+998)).
  - The fixer image is O(fixer_image). When it is missing it is pulled (O(pull)); when that fails it is
    built from the host's static busybox (O(busybox_path)) with C(docker import) / C(podman import),
    about 2 MB and without any registry. Without either the module fails naming those options.
  - Volumes of non-local drivers (plugins) are not inspectable and are never changed.
author:
  - permfix.containers contributors (@permfix)
options:
  volume:
    description: The name of the named volume.
    type: str
    required: true
  engine:
    description: The engine that owns the volume.
    type: str
    choices: [docker, podman]
    default: docker
  podman_user:
    description:
      - With O(engine=podman), the user whose rootless podman owns the volume. Empty or V(root) means rootful podman.
    type: str
  owner:
    description:
      - The owner to give, C(uid:gid) (or C(uid) for C(uid:uid)), numeric ids as the engine's containers
        see them (for rootless podman, ids inside that user's containers).
      - Default is the user the containers that mount the volume run as (they must agree).
    type: str
  fixer_image:
    description: The image of the fixer container; it needs C(/bin/sh), C(find), C(chown) and C(wc).
    type: str
    default: localhost/permfix-fixer:busybox
  pull:
    description: Try to pull O(fixer_image) when it is not present locally, before building it from busybox.
    type: bool
    default: true
  busybox_path:
    description: The host's static busybox, used to build O(fixer_image) when it is missing and cannot be pulled.
    type: path
    default: /bin/busybox
  stop_containers:
    description:
      - Stop the running containers that mount the volume before the fix, and start them again afterwards
        (also when the fix fails). Only when something differs.
    type: bool
    default: false
  fixer_timeout:
    description: Seconds the fixer container may run, from 1 to 604800 (a week).
    type: int
    default: 600
  sample_size:
    description: How many differing entries to return as examples.
    type: int
    default: 10
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.docker
  - permfix.containers.attributes.fix_module
notes:
  - Path names in the result that are not valid UTF-8 show each undecodable byte as C(\xNN)
    (C(caf\xe9)), so that the result stays valid JSON.
  - Run as root (C(become)).
  - Entries owned by ids the engine's namespace does not map cannot be changed by the fixer; the module
    then fails with the count.
  - The kernel clears set-user-ID and set-group-ID bits of a regular file whose owner changes.
seealso:
  - module: permfix.containers.volume_owner_info
  - module: permfix.containers.path_owner
  - module: community.docker.docker_volume
    description: Recreating a volume fixes its owners too, but deletes its data.
  - module: containers.podman.podman_volume
    description: Recreating a volume fixes its owners too, but deletes its data.
  - module: community.docker.docker_volume_info
  - module: containers.podman.podman_volume_info
"""

EXAMPLES = r"""
- name: Give the pgdata volume to the user its containers run as (postgres 999)
  permfix.containers.volume_owner:
    volume: pgdata

- name: Same, with a declared owner, stopping the database while it runs
  permfix.containers.volume_owner:
    volume: pgdata
    owner: "999:999"
    stop_containers: true

- name: A rootless podman volume of user app, offline (build the fixer from busybox)
  permfix.containers.volume_owner:
    volume: appdata
    engine: podman
    podman_user: app
    owner: "1000:1000"
    pull: false
"""

RETURN = r"""
volume:
  description: The volume name.
  returned: success
  type: str
  sample: pgdata
engine:
  description: The engine.
  returned: success
  type: str
  sample: docker
user:
  description: The rootless podman user, null for Docker and rootful podman.
  returned: success
  type: str
  sample: null
owner:
  description: The owner given, in the engine's namespace (C(uid), C(gid)) and on the host, and where it came from.
  returned: success
  type: dict
  sample: {uid: 999, gid: 999, host_uid: 999, host_gid: 999, source: containers, containers: [db]}
method:
  description: How the volume was examined, V(host) (its mountpoint) or V(container) (a read-only inspector).
  returned: success
  type: str
  sample: host
before:
  description: Root owner, mode, entries and entries that differ before the fix.
  returned: success
  type: dict
  sample: {method: host, uid: 1000, gid: 1000, mode: "0755", entries: 4, mismatched: 4, complete: true,
      skipped: {}, sample: []}
after:
  description: The same after the fix (equal to RV(before) when nothing differed; null in check mode when
      something differs).
  returned: success
  type: dict
  sample: {method: host, uid: 999, gid: 999, mode: "0755", entries: 4, mismatched: 0, complete: true,
      skipped: {}, sample: []}
fixer:
  description: The fixer container that ran (null when none ran),
      with its security settings as the engine reported them.
  returned: success
  type: dict
  sample:
    name: permfix-fixer-0a1b2c3d4e5f
    image: localhost/permfix-fixer:busybox
    image_source: imported
    rc: 0
    security: {network_mode: none, cap_add: [CHOWN, DAC_READ_SEARCH], cap_drop: [ALL], readonly_rootfs: true,
               security_opt: [no-new-privileges], privileged: false, user: "0:0",
               mounts: [{type: volume, name: pgdata, destination: /v, rw: true}]}
stopped_containers:
  description: The containers stopped for the fix (and started again); in check mode those that would be.
  returned: success
  type: list
  elements: str
  sample: [db]
notes:
  description: Things worth knowing that did not stop the module.
  returned: success
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.named_volume_fix import VOLUME_FIX
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_fix


def main() -> None:
    module = AnsibleModule(argument_spec=VOLUME_FIX.argument_spec, supports_check_mode=True)
    run_fix(module, VOLUME_FIX)


if __name__ == "__main__":
    main()
