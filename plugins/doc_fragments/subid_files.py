# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The files subid_info reads and subid reads and writes (tests point them elsewhere)."""

    DOCUMENTATION = r"""
notes:
  - Every file option must be an absolute path given as a string, without a NUL byte; anything
    else (a relative path, a number, a dictionary) is refused before a file is read or written.
options:
  subuid_path:
    description: The subordinate UID file.
    type: path
    default: /etc/subuid
  subgid_path:
    description: The subordinate GID file.
    type: path
    default: /etc/subgid
  login_defs_path:
    description: Where C(SUB_UID_MIN), C(SUB_UID_MAX), C(SUB_UID_COUNT) and the GID ones are read.
    type: path
    default: /etc/login.defs
  passwd_path:
    description:
      - The passwd file, for the users and the account IDs that new ranges keep clear of. With the
        default, users not in the file (LDAP, SSSD) are looked up in the passwd database too.
    type: path
    default: /etc/passwd
  group_path:
    description: The group file, for the GIDs that new ranges keep clear of.
    type: path
    default: /etc/group
  nsswitch_path:
    description: Where the C(subid:) source is read.
    type: path
    default: /etc/nsswitch.conf
"""
