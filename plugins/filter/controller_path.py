# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side filter: a path made absolute against the directory ansible-playbook runs in.

Ansible runs lookups (``pipe``) and local modules in the playbook's directory, so neither
``lookup('pipe', 'pwd')`` nor a relative ``dest`` means "where the user started the run"; the
controller process's own working directory does (ansible-runner and ansible-navigator start
ansible-playbook there, or in the job's project directory). ``lookup('env', 'PWD')`` is the
shell's idea of it and goes stale when a runner changes directory without a shell.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleFilterError


def controller_path(path: Any, variable: str = "the path") -> str:
    """``path`` itself when absolute, else joined to the controller's working directory; normalised."""
    if not isinstance(path, str) or not path.strip():
        raise AnsibleFilterError(f"{variable} must be a directory path, not {path!r}")
    if "\0" in path:
        raise AnsibleFilterError(f"{variable} must not contain a NUL byte: {path!r}")
    expanded = os.path.expanduser(path)
    return os.path.normpath(expanded if os.path.isabs(expanded) else os.path.join(os.getcwd(), expanded))


class FilterModule:
    """permfix.containers controller path filter."""

    def filters(self) -> dict[str, Any]:
        return {"controller_path": controller_path}
