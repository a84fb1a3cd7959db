#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: unprivileged_port_info
short_description: Find where net.ipv4.ip_unprivileged_port_start blocks rootless containers
version_added: 0.1.0
description:
  - Rootless podman and rootless Docker cannot publish a host port below C(net.ipv4.ip_unprivileged_port_start)
    (1024 by default); the container fails with C(rootlessport cannot expose privileged port 80).
  - Reads the runtime value of the network namespace the module runs in (the host's initial namespace when
    Ansible runs on the host, which is the one rootless publishing uses; a container's namespace has its own
    value, Docker starts new ones at 0).
  - Resolves the value the host applies at boot the way C(sysctl --system) and systemd-sysctl do, and reports
    the file and line that win and every other line that sets the key.
  - Lines are read as procps-ng reads them (they end only at a newline; a NUL byte ends a line; C(\\r),
    C(\\v), C(\\f) or U+2028 inside a comment do not start a new line), and a value counts only when the
    kernel takes it at that point of C(sysctl --system). A value above the lowest port of
    C(net.ipv4.ip_local_port_range) then is refused by the kernel; it is reported as a C(refused) finding and
    never as the persisted value.
  - Finds the lowest published host port below 1024 among rootless containers (podman for every rootless
    user, running or stopped; rootless Docker daemons with a socket at C(/run/user/UID/docker.sock)), plus the
    ports in O(ports).
  - Returns C(unprivileged_port) findings; changes nothing.
author:
  - permfix.containers contributors (@permfix)
options:
  ports:
    description:
      - Host ports that rootless containers need, in addition to the discovered ones.
      - Ports from 1024 up never need a change and are only listed.
    type: list
    elements: int
    default: []
  discover:
    description:
      - Ask podman (as every rootless user) and rootless Docker daemons which host ports their containers publish.
      - With V(false) only O(ports) count.
    type: bool
    default: true
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.sysctl_files
  - permfix.containers.attributes.info_module
notes:
  - Run it as root so that it can ask podman as every rootless user.
seealso:
  - module: permfix.containers.unprivileged_port
  - module: ansible.posix.sysctl
  - module: containers.podman.podman_container_info
  - module: community.docker.docker_container_info
"""

EXAMPLES = r"""
- name: Find rootless containers blocked by net.ipv4.ip_unprivileged_port_start
  permfix.containers.unprivileged_port_info:
  register: ports

- name: Show the findings
  ansible.builtin.debug:
    msg: "{{ ports.findings | map(attribute='message') | list }}"

- name: Also count a port a service will publish later, without asking the engines
  permfix.containers.unprivileged_port_info:
    ports: [443]
    discover: false
  register: ports

- name: Show which file and line set the value applied at boot
  ansible.builtin.debug:
    msg: "{{ ports.persisted.value }} from {{ ports.persisted.path | default('the kernel default', true) }}"
"""

RETURN = r"""
extends_documentation_fragment:
  - permfix.containers.findings
key:
  description: The kernel parameter.
  returned: always
  type: str
  sample: net.ipv4.ip_unprivileged_port_start
findings:
  description: Findings of class C(unprivileged_port) in the C(permfix.report/v1) schema.
  returned: always
  type: list
  elements: dict
  sample:
    - id: "unprivileged_port:web:blocked:app:80/tcp:net.ipv4.ip_unprivileged_port_start"
      class: unprivileged_port
      severity: error
      subject: net.ipv4.ip_unprivileged_port_start
      container: web
      engine: podman
      user: app
      observed: {value: 1024, port: 80}
      expected: {value: 80}
      message: "rootless podman container web of user app (host port 80/tcp) cannot start: ..."
      fixable: true
      fix: set net.ipv4.ip_unprivileged_port_start to 80 and persist it with permfix.containers.unprivileged_port
runtime:
  description: The runtime value in the module's network namespace.
  returned: always
  type: dict
  contains:
    path:
      description: The file read.
      type: str
      sample: /proc/sys/net/ipv4/ip_unprivileged_port_start
    supported:
      description: Whether the kernel has the parameter (Linux 4.11 and later).
      type: bool
      sample: true
    value:
      description: The value, V(null) when the kernel lacks the parameter.
      type: int
      sample: 1024
    writable:
      description: Whether the value can be changed here (V(false) when C(/proc/sys) is mounted read-only).
      type: bool
      sample: true
    netns:
      description: The network namespace of the module, as C(/proc/self/ns/net) names it.
      type: str
      sample: "net:[4026531840]"
    initial_netns:
      description: Whether that is the namespace of process 1, V(null) when that cannot be read.
      type: bool
      sample: true
  sample: {path: /proc/sys/net/ipv4/ip_unprivileged_port_start, supported: true, value: 1024, writable: true,
           netns: "net:[4026531840]", initial_netns: true}
persisted:
  description: The value the host applies at boot and the line it comes from.
  returned: always
  type: dict
  contains:
    value:
      description: The value at boot (the kernel default 1024 when no file sets it).
      type: int
      sample: 1024
    path:
      description: The file that wins, V(null) when no file sets the key.
      type: str
      sample: /etc/sysctl.d/99-custom.conf
    line:
      description: The winning line number, V(null) when no file sets the key.
      type: int
      sample: 3
    default:
      description: Whether no file sets the key, so the kernel default applies.
      type: bool
      sample: false
  sample: {value: 1024, path: /etc/sysctl.d/99-custom.conf, line: 3, default: false}
assignments:
  description:
    - Every line that sets the key, in the order C(sysctl --system) applies them, then lines of hidden files.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file as listed in its directory.
      type: str
      sample: /etc/sysctl.d/99-sysctl.conf
    real_path:
      description: The file after following symbolic links.
      type: str
      sample: /etc/sysctl.conf
    line:
      description: The line number.
      type: int
      sample: 12
    text:
      description: The line as written.
      type: str
      sample: net.ipv4.ip_unprivileged_port_start = 1024
    raw_value:
      description: The value as written.
      type: str
      sample: "1024"
    value:
      description: The value the kernel stores, V(null) when it refuses the value.
      type: int
      sample: 1024
    valid:
      description: Whether the kernel accepts the value.
      type: bool
      sample: true
    applied:
      description: Whether the file is applied (V(false) when a same-named file in a higher-priority directory
          hides it).
      type: bool
      sample: true
    refused:
      description:
        - Why C(sysctl --system) does not get this value into the kernel at boot, V(null) when it does.
        - For example the kernel refuses a value above the lowest port of C(net.ipv4.ip_local_port_range) at
          that point, and a pattern line does not apply to a key another line names exactly.
      type: str
      sample: null
    pattern:
      description: Whether the line is a pattern (such as C(net.ipv4.ip_unprivileged_port_*)) that matches the key.
      type: bool
      sample: false
    winner:
      description: Whether this line sets the value at boot (the last line whose value the kernel takes).
      type: bool
      sample: true
  sample:
    - {path: /etc/sysctl.conf, real_path: /etc/sysctl.conf, line: 12,
        text: "net.ipv4.ip_unprivileged_port_start = 1024",
       raw_value: "1024", value: 1024, valid: true, applied: true, winner: true}
files:
  description: Every configuration file considered, in the order they apply, then the hidden ones.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /usr/lib/sysctl.d/50-pid-max.conf
    applied:
      description: Whether the file is applied.
      type: bool
      sample: true
    masked_by:
      description: The same-named file that hides it, V(null) when it is applied.
      type: str
      sample: /etc/sysctl.d/50-pid-max.conf
  sample: [{path: /usr/lib/sysctl.d/50-pid-max.conf, applied: true, masked_by: null}]
needed:
  description: The lowest host port below 1024 that rootless containers need, and every port found.
  returned: always
  type: dict
  contains:
    value:
      description: The lowest needed port below 1024, V(null) when none is needed.
      type: int
      sample: 80
    ports:
      description: Every published or declared host port.
      type: list
      elements: dict
      sample: [{port: 80, end: 80, protocol: tcp, source: podman, engine: podman, container: web, user: app}]
  sample: {value: 80, ports: [{port: 80, end: 80, protocol: tcp, source: podman, engine: podman,
      container: web, user: app}]}
local_port_range:
  description: C(net.ipv4.ip_local_port_range) as low and high port, V(null) when it cannot be read.
  returned: always
  type: list
  elements: int
  sample: [32768, 60999]
notes:
  description: Engines or users that could not be asked, and why.
  returned: always
  type: list
  elements: str
  sample: ["could not list the rootless podman containers of user app: ..."]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.unprivileged_port import PORT_INFO
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_detection


def main() -> None:
    module = AnsibleModule(argument_spec=PORT_INFO.argument_spec, supports_check_mode=True)
    run_detection(module, PORT_INFO)


if __name__ == "__main__":
    main()
