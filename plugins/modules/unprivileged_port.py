#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: unprivileged_port
short_description: Let rootless containers publish the low ports they need, and make it last
version_added: 0.1.0
description:
  - Sets C(net.ipv4.ip_unprivileged_port_start) to the lowest host port below 1024 that rootless containers
    need (discovered like M(permfix.containers.unprivileged_port_info) does, plus O(ports)), or to O(value).
  - Least privilege. It sets exactly that port, never 0 unless O(value=0). It never raises a value that is
    already low enough (raising can break a running service) unless O(allow_raise=true).
  - Sets the runtime value and persists it. By default it writes a drop-in into the first of O(sysctl_dirs)
    (C(/etc/sysctl.d)), named so that it sorts after every other file that sets the key, so it wins at boot
    under C(sysctl --system) and systemd-sysctl. It replaces its own older drop-ins. With
    O(persist_mode=in_place) it changes the winning line where it is instead, when that line is in
    C(/etc/sysctl.conf) or the first directory.
  - Every other line and byte of an edited file is kept; files are written atomically, and if a write fails
    the runtime value and the files written before it are put back.
  - When C(/proc/sys) is read-only (an unprivileged container), it persists only and says so in RV(notes).
  - Files are read the way procps-ng C(sysctl --system) reads them (lines end only at a newline, a NUL byte
    ends a line, comments, C(-) prefixes, dot or slash keys, patterns such as C(net.ipv4.ip_unprivileged_port_*)),
    and each value goes through the kernel's checks, so a value the kernel refuses at boot (not a number, or
    above the lowest port of C(net.ipv4.ip_local_port_range) at that point) never counts as persisted.
    Before anything is written, the planned files are resolved again; a plan that would not win at boot fails
    and changes nothing.
  - RV(diff) is returned only in diff mode (C(--diff)).
author:
  - permfix.containers contributors (@permfix)
options:
  value:
    description:
      - The exact value to set, from 0 to 65535, instead of the lowest needed port.
      - V(0) lets every user bind every port; set it only on purpose.
      - Must not exceed the lowest port of C(net.ipv4.ip_local_port_range) (the kernel refuses it).
    type: int
  ports:
    description:
      - Host ports that rootless containers need, in addition to the discovered ones (each from 1 to 65535).
      - Ports from 1024 up never need a change.
    type: list
    elements: int
    default: []
  discover:
    description:
      - Ask podman (as every rootless user) and rootless Docker daemons which host ports their containers publish.
      - With V(false) only O(ports) or O(value) count.
    type: bool
    default: true
  allow_raise:
    description:
      - Raise the runtime or boot value when it is lower than the target.
      - Without it a lower value stays (it already lets the containers in), and RV(notes) says so.
    type: bool
    default: false
  persist_mode:
    description:
      - V(dropin) writes a drop-in that sorts after every other file setting the key. It fails when
        C(/etc/sysctl.conf) sets another value, because C(sysctl --system) applies that file last.
      - V(in_place) changes the value on the winning line when that line is in O(sysctl_conf) or in the first
        of O(sysctl_dirs); otherwise (a vendor file under C(/usr/lib), or no file) it writes the drop-in.
      - What counts is the file the line is really in, links resolved. A link in C(/etc/sysctl.d) to a vendor
        file (C(/usr/lib/sysctl.d), C(/lib/sysctl.d), C(/usr/local/lib/sysctl.d), C(/run/sysctl.d), or a later
        entry of O(sysctl_dirs)) or to a file elsewhere is never written through; a pattern line is never edited.
        The drop-in is written instead.
    type: str
    choices: [dropin, in_place]
    default: dropin
  dropin_name:
    description:
      - The file name of the drop-in in the first of O(sysctl_dirs).
      - When another file that sets the key sorts after it, the drop-in is named after that file instead,
        for example C(99-zz-local.permfix-unprivileged-port.conf) after C(99-zz-local.conf).
    type: str
    default: 99-permfix-unprivileged-port.conf
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.sysctl_files
  - permfix.containers.attributes.fix_module
notes:
  - Run it as root, on the host whose rootless containers publish the ports.
  - Unlike M(ansible.posix.sysctl), it takes the precedence of every sysctl directory into account.
seealso:
  - module: permfix.containers.unprivileged_port_info
  - module: ansible.posix.sysctl
  - module: containers.podman.podman_container_info
"""

EXAMPLES = r"""
- name: Let rootless containers publish the low ports they use, and nothing lower
  permfix.containers.unprivileged_port:
  register: result

- name: Also allow port 443 for a service that is not deployed yet
  permfix.containers.unprivileged_port:
    ports: [443]

- name: Change the line of /etc/sysctl.conf that sets the key instead of adding a drop-in
  permfix.containers.unprivileged_port:
    ports: [80]
    discover: false
    persist_mode: in_place

- name: Put the default back, even though it is higher than the current value
  permfix.containers.unprivileged_port:
    value: 1024
    discover: false
    allow_raise: true
"""

RETURN = r"""
key:
  description: The kernel parameter.
  returned: always
  type: str
  sample: net.ipv4.ip_unprivileged_port_start
value:
  description: The target value, V(null) when no rootless container needs a port below 1024 and none was declared.
  returned: always
  type: int
  sample: 80
runtime:
  description: The runtime value before and after.
  returned: always
  type: dict
  contains:
    path:
      description: The file in C(/proc/sys).
      type: str
      sample: /proc/sys/net/ipv4/ip_unprivileged_port_start
    before:
      description: The value before the module ran.
      type: int
      sample: 1024
    after:
      description: The value after (what it would be, in check mode).
      type: int
      sample: 80
    writable:
      description: Whether the runtime value can be changed here.
      type: bool
      sample: true
  sample: {path: /proc/sys/net/ipv4/ip_unprivileged_port_start, before: 1024, after: 80, writable: true}
persisted:
  description: The value applied at boot, before and after.
  returned: always
  type: dict
  contains:
    before:
      description: The boot value before (1024, the kernel default, when no file sets it).
      type: int
      sample: 1024
    after:
      description: The boot value after.
      type: int
      sample: 80
    path:
      description: The file that set the boot value before, V(null) when none did.
      type: str
      sample: /etc/sysctl.d/99-custom.conf
    line:
      description: The line of that file, V(null) when no file set it.
      type: int
      sample: 3
  sample: {before: 1024, after: 80, path: null, line: null}
file_changes:
  description: The files written or removed (that would be, in check mode), and why.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
      sample: /etc/sysctl.d/99-permfix-unprivileged-port.conf
    action:
      description: V(created), V(updated) or V(removed).
      type: str
      sample: created
    reason:
      description: Why.
      type: str
      sample: sets net.ipv4.ip_unprivileged_port_start = 80; its name sorts after every other file that sets the key
  sample: [{path: /etc/sysctl.d/99-permfix-unprivileged-port.conf, action: created, reason: "..."}]
actions:
  description: What the module did (would do, in check mode), one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["set /proc/sys/net/ipv4/ip_unprivileged_port_start from 1024 to 80"]
assignments:
  description: Every line that set the key before the change,
      as M(permfix.containers.unprivileged_port_info) returns them.
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/sysctl.conf, real_path: /etc/sysctl.conf, line: 12,
      text: "net.ipv4.ip_unprivileged_port_start=1024",
            raw_value: "1024", value: 1024, valid: true, applied: true, winner: true}]
files:
  description: Every configuration file considered before the change, in the order they apply, then the hidden ones.
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/sysctl.d/99-sysctl.conf, applied: true, masked_by: null}]
needed:
  description: The lowest needed port below 1024 and every port found.
  returned: always
  type: dict
  sample: {value: 80, ports: [{port: 80, end: 80, protocol: tcp, source: podman, engine: podman,
      container: web, user: app}]}
diff:
  description: The runtime value and every file before and after; only in diff mode.
  returned: in diff mode
  type: list
  elements: dict
  sample: [{before_header: /proc/sys/net/ipv4/ip_unprivileged_port_start (runtime), before: "1024\n", after: "80\n"}]
notes:
  description: Why something was not changed (already lower, read-only C(/proc/sys)) and discovery problems.
  returned: always
  type: list
  elements: str
  sample: ["net.ipv4.ip_unprivileged_port_start is already 0, below 80; not raised"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.unprivileged_port import PORT_FIX
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_fix


def main() -> None:
    module = AnsibleModule(argument_spec=PORT_FIX.argument_spec, supports_check_mode=True)
    run_fix(module, PORT_FIX)


if __name__ == "__main__":
    main()
