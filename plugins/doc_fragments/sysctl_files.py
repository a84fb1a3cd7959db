# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Where unprivileged_port_info and unprivileged_port read (and write) the port setting."""

    DOCUMENTATION = r"""
options:
  sysctl_dirs:
    description:
      - The sysctl drop-in directories, highest priority first. A file hides a same-named file in a later
        directory; the remaining files apply in the order of their names.
      - M(permfix.containers.unprivileged_port) writes its drop-in into the first one.
      - Each must be an absolute path given as a string, without NUL bytes; anything else is refused.
    type: list
    elements: path
    default: [/etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d, /lib/sysctl.d]
  sysctl_conf:
    description:
      - The main sysctl file, applied after every drop-in; V(null) for none.
      - This and the two options below must be absolute paths.
    type: path
    default: /etc/sysctl.conf
  proc_path:
    description: Where the kernel exposes the runtime value (in the module's network namespace).
    type: path
    default: /proc/sys/net/ipv4/ip_unprivileged_port_start
  local_port_range_path:
    description:
      - Where the kernel exposes C(net.ipv4.ip_local_port_range); the kernel refuses a value above its lowest port.
    type: path
    default: /proc/sys/net/ipv4/ip_local_port_range
"""
