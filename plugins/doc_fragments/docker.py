# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The Docker connection options and requirement of every module that asks the Docker daemon."""

    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker daemon, as a C(unix://) address followed by the absolute path of its socket.
      - Defaults to E(DOCKER_HOST) on the target, else C(unix:///var/run/docker.sock).
    type: str
  timeout:
    description: Seconds to wait for the Docker daemon to answer one request, from 1 to 604800 (a week).
    type: int
    default: 60
requirements:
  - The Docker SDK for Python (C(docker), Debian's C(python3-docker)) on the target when a Docker
    daemon runs there.
"""
