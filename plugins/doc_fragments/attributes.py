# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared attribute documentation for permfix.containers modules."""

from __future__ import annotations


class ModuleDocFragment:
    # Every module: the attributes block.
    DOCUMENTATION = r"""
options: {}
attributes:
  platform:
    description: Target operating system.
    support: full
    platforms: posix
"""

    # Read-only (_info) modules.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - This module never changes anything, so check mode returns the same result.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: N/A
    details:
      - This module never changes anything.
"""

    # Modules that change the target.
    FIX_MODULE = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Check mode predicts exactly what a real run would change.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
"""
