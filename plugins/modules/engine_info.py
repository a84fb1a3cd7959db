#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_info
short_description: Report which container engines a host has, and its rootless podman users
version_added: 0.1.0
description:
  - Finds the Docker daemon (through its API socket) and podman (through its CLI), and the
    users other than root that have rootless podman state (C(~/.local/share/containers),
    C(~/.config/containers)) or a running rootless podman pause process.
  - An absent or stopped engine is not an error; it is reported as V(null) and explained in
    RV(notes).
  - The RV(engines) value is the C(engines) block of the C(permfix.report/v1) report.
author:
  - permfix.containers contributors (@permfix)
options:
  docker_host:
    description:
      - The Docker daemon to ask, as a C(unix://) address.
      - Defaults to the E(DOCKER_HOST) environment variable on the target, else
        C(unix:///var/run/docker.sock).
    type: str
  timeout:
    description: Seconds to wait for each engine to answer.
    type: int
    default: 60
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.attributes.info_module
seealso:
  - module: community.docker.docker_host_info
  - module: containers.podman.podman_container_info
"""

EXAMPLES = r"""
- name: Find the container engines of every host
  permfix.containers.engine_info:
  register: engines

- name: Show the rootless podman users
  ansible.builtin.debug:
    msg: "{{ engines.engines.rootless_users }}"
"""

RETURN = r"""
engines:
  description: The container engines of the host.
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
notes:
  description: Why an engine is reported as absent when that is not simply "not installed".
  returned: always
  type: list
  elements: str
  sample: ["docker is installed but its daemon is not running (no socket at /var/run/docker.sock)"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_detection
from ansible_collections.permfix.containers.plugins.module_utils._engines.detect import ENGINE_INFO


def main() -> None:
    module = AnsibleModule(argument_spec=ENGINE_INFO.argument_spec, supports_check_mode=True)
    run_detection(module, ENGINE_INFO)


if __name__ == "__main__":
    main()
