#!/usr/bin/python
# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: subid_info
short_description: Find missing, short, overlapping and malformed subordinate UID and GID ranges
version_added: 0.1.0
description:
  - Reads C(/etc/subuid) and C(/etc/subgid) the way shadow-utils (C(newuidmap), C(newgidmap),
    C(getsubids)) reads them and reports, as findings of class C(subid), everything that makes
    rootless containers fail or share host IDs.
  - "The users it looks at: every user with an entry in either file, the users named in O(users),
    and (with O(discover)) every user with rootless podman state (C(~/.local/share/containers),
    C(~/.config/containers)) or a running podman pause process."
  - "Per user and separately for UIDs and GIDs: the ranges, their total, and the shortfall against
    O(min_count) and O(required_id)."
  - "Findings: a missing entry; too few IDs; a range that overlaps another user's range; a range
    that contains the user's own UID or any account's UID or GID; an entry for a user that does not
    exist; malformed lines (which shadow-utils ignores, for example a DOS line ending) and lines it
    reads differently from what they seem to say (octal or hexadecimal numbers, extra fields, an
    empty range); duplicate lines; subordinate UIDs and GIDs of a user that disagree; and
    C(newuidmap) or C(newgidmap) missing or without setuid or file capability. Line numbers are
    part of every line-level finding."
  - When C(/etc/nsswitch.conf) names a C(subid:) source other than C(files) (for example C(sss)),
    the ranges are read with C(getsubids) and the files are reported as not authoritative.
  - RV(podman_subuid_info) and RV(podman_subgid_info) have the shape of the facts of the same names
    that the C(linux-system-roles.podman) role sets, so playbooks written for it can use this module.
  - Never changes anything. Use M(permfix.containers.subid) to extend ranges.
author:
  - permfix.containers contributors (@permfix)
options:
  users:
    description:
      - Users (names or numeric UIDs) to examine even when they have no entry and no podman state.
      - A user that does not exist is an error.
    type: list
    elements: str
    default: []
  discover:
    description:
      - Also examine every user with rootless podman state or a running podman pause process.
    type: bool
    default: true
  min_count:
    description:
      - How many subordinate UIDs and GIDs each examined user should have.
      - Defaults to C(SUB_UID_COUNT) and C(SUB_GID_COUNT) from O(login_defs_path), else 65536.
    type: int
  counts:
    description:
      - Per user name, how many subordinate UIDs and GIDs that user should have; wins over O(min_count)
        for that user (what the C(permfix.containers.subids) role's C(subids_users[].count) asks for).
      - Each count is a number from 1 to 4294967295.
    type: dict
    default: {}
  required_id:
    description:
      - The highest container UID or GID the users must be able to map, for example V(65534)
        for C(nobody). A user with fewer subordinate IDs than this gets an C(error) finding,
        because such a container fails now.
    type: int
  newuidmap_path:
    description: The C(newuidmap) program to check. Defaults to the one on E(PATH).
    type: path
  newgidmap_path:
    description: The C(newgidmap) program to check. Defaults to the one on E(PATH).
    type: path
notes:
  - Run as root (C(become=true)) so that every user's home directory can be examined.
seealso:
  - module: permfix.containers.subid
  - name: subuid(5)
    description: The format of C(/etc/subuid).
    link: https://man7.org/linux/man-pages/man5/subuid.5.html
  - name: linux-system-roles.podman
    description: >-
      The role that manages podman and its rootless users; RV(podman_subuid_info) and
      RV(podman_subgid_info) have the shape of its facts of the same names.
    link: https://github.com/linux-system-roles/podman
extends_documentation_fragment:
  - permfix.containers.attributes
  - permfix.containers.subid_files
  - permfix.containers.attributes.info_module
"""

EXAMPLES = r"""
- name: Check every rootless podman user's subordinate IDs
  permfix.containers.subid_info:
  register: subids

- name: Fail when a user cannot map the nobody user (65534) of an image
  permfix.containers.subid_info:
    users: [app]
    required_id: 65534
  register: subids
  failed_when: subids.findings | selectattr('severity', 'equalto', 'error') | list | length > 0

- name: Show the first subordinate UID range of each user (linux-system-roles.podman shape)
  ansible.builtin.debug:
    msg: "{{ subids.podman_subuid_info }}"

- name: Examine copies of the files instead of the host's own
  permfix.containers.subid_info:
    subuid_path: /srv/backup/subuid
    subgid_path: /srv/backup/subgid
    discover: false
"""

RETURN = r"""
extends_documentation_fragment:
  - permfix.containers.findings
findings:
  description: Findings of class C(subid) in the C(permfix.report/v1) shape, errors first.
  returned: always
  type: list
  elements: dict
  sample:
    - id: "subid:too_few:subuid:app"
      class: subid
      severity: error
      subject: app
      container: null
      engine: null
      user: app
      observed: {count: 1000, ranges: [{start: 100000, count: 1000}]}
      expected: {count: 65536}
      message: "app has 1000 subordinate UIDs in /etc/subuid and container UID 5000 needs at least 5000; ..."
      fixable: true
      fix: "give app 64536 more subordinate UIDs (permfix.containers.subid)"
users:
  description: Every examined user, by name.
  returned: always
  type: dict
  sample:
    app:
      uid: 1001
      gid: 1001
      home: /home/app
      named: false
      rootless_podman: true
      subuid:
        ranges: [{start: 100000, count: 1000, line: 3}]
        count: 1000
        min_count: 65536
        required_id: null
        required: 65536
        shortfall: 64536
        shortfall_min_count: 64536
        shortfall_required_id: 0
      subgid:
        ranges: [{start: 100000, count: 1000, line: 3}]
        count: 1000
        min_count: 65536
        required_id: null
        required: 65536
        shortfall: 64536
        shortfall_min_count: 64536
        shortfall_required_id: 0
  contains:
    uid:
      description: The user's UID.
      type: int
    gid:
      description: The user's primary GID.
      type: int
    home:
      description: The user's home directory.
      type: str
    named:
      description: Whether the user was named in O(users).
      type: bool
    rootless_podman:
      description: Whether the user has rootless podman state or a running pause process.
      type: bool
    subuid:
      description:
        - The user's subordinate UIDs. C(ranges) lists each range with its line number (V(null)
          when read with C(getsubids)); C(count) is the number of distinct IDs; C(required) is the
          larger of C(min_count) and O(required_id); C(shortfall), C(shortfall_min_count) and
          C(shortfall_required_id) say how many are missing against each.
      type: dict
    subgid:
      description: The user's subordinate GIDs, in the same shape as RV(users.subuid).
      type: dict
podman_subuid_info:
  description:
    - The first subordinate UID range of each examined user that has one, in the shape of the
      C(linux-system-roles.podman) role's fact of the same name.
  returned: always
  type: dict
  sample: {app: {start: 100000, range: 65536}}
podman_subgid_info:
  description: The same for subordinate GIDs.
  returned: always
  type: dict
  sample: {app: {start: 100000, range: 65536}}
source:
  description: Where subordinate IDs come from.
  returned: always
  type: dict
  sample: {nss: files, authoritative: true, getsubids: null, nsswitch_path: /etc/nsswitch.conf}
  contains:
    nss:
      description: The C(subid:) source named in nsswitch.conf, V(files) when there is none.
      type: str
    authoritative:
      description: Whether the files are what shadow-utils uses (the source is V(files)).
      type: bool
    getsubids:
      description: The C(getsubids) program used to read ranges from another source, else V(null).
      type: str
    nsswitch_path:
      description: The nsswitch.conf that was read.
      type: str
files:
  description: What each file holds, by kind (V(subuid), V(subgid)).
  returned: always
  type: dict
  sample:
    subuid: {path: /etc/subuid, exists: true, authoritative: true, lines: 4, entries: 2, comments: 1, blank: 0,
        malformed: 1}
    subgid: {path: /etc/subgid, exists: true, authoritative: true, lines: 2, entries: 2, comments: 0, blank: 0,
        malformed: 0}
helpers:
  description: Whether C(newuidmap) and C(newgidmap) can map subordinate IDs.
  returned: always
  type: dict
  sample:
    newuidmap: {path: /usr/bin/newuidmap, exists: true, setuid_root: true, file_capability: false, ok: true}
    newgidmap: {path: /usr/bin/newgidmap, exists: true, setuid_root: true, file_capability: false, ok: true}
bounds:
  description: C(SUB_UID_MIN), C(SUB_UID_MAX) and C(SUB_UID_COUNT) (and the GID ones) in effect.
  returned: always
  type: dict
  sample:
    subuid: {min: 100000, max: 600100000, count: 65536}
    subgid: {min: 100000, max: 600100000, count: 65536}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.permfix.containers.plugins.module_utils._classes.subid import SUBID_INFO
from ansible_collections.permfix.containers.plugins.module_utils._core.contracts import run_detection


def main() -> None:
    module = AnsibleModule(argument_spec=SUBID_INFO.argument_spec, supports_check_mode=True)
    run_detection(module, SUBID_INFO)


if __name__ == "__main__":
    main()
