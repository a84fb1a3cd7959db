# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read-only detections as plain functions, shared by the ``*_info`` modules and ``audit_info``.

A :class:`Detection` is what one info module does, cut in two so that a caller can validate
every option before anything runs:

1. ``request(params)``: the module's validated parameters (``module.params``) become a typed
   request, or :class:`OptionError` with the sentence the module fails with;
2. ``run(request, runner)``: the module's return values (``findings`` among them), or
   :class:`DetectionError` with the sentence the module fails with.

:func:`run_detection` is the whole body of a single info module; ``_audit`` runs several of them
in one module call and keeps going when one fails.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Tuple

from ansible_collections.permfix.containers.plugins.module_utils._podman import Runner, module_runner

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

# The Docker connection options every module that asks the Docker daemon shares.
DOCKER_ARGUMENT_SPEC: dict[str, Any] = {
    "docker_host": {"type": "str"},
    "timeout": {"type": "int", "default": 60},
}


class OptionError(Exception):
    """An option value the module refuses; the message says which one and what to give."""


class DetectionError(Exception):
    """A detection could not run; the message says why. ``details`` are extra ``fail_json`` values
    (``exception`` for a missing library)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Detection:
    """One read-only detection: its module's argument spec, request builder and runner.

    ``name`` is the finding class it reports, ``module`` the single module that runs it alone.
    """

    name: str
    module: str
    argument_spec: Mapping[str, Any]
    request: Callable[[Mapping[str, Any]], Any]
    run: Callable[[Any, Runner], dict[str, Any]]
    docker_scoped: bool = False  # its request has an ``engines`` tuple that may name docker

    def defaults(self) -> dict[str, Any]:
        """The parameters the module gets when no option is set."""
        return {name: copy.deepcopy(spec.get("default")) for name, spec in self.argument_spec.items()}


def docker_options(params: Mapping[str, Any]) -> Tuple[str, int]:
    """The Docker daemon address (the option, else E(DOCKER_HOST), else the default socket) and the
    timeout, validated."""
    docker_host = params["docker_host"] or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if not docker_host.startswith("unix://"):
        raise OptionError(f"docker_host must be a unix:// address such as {DEFAULT_DOCKER_HOST}, not {docker_host!r}")
    if params["timeout"] <= 0:
        raise OptionError("timeout must be a positive number of seconds")
    return docker_host, params["timeout"]


def run_detection(module: Any, detection: Detection) -> dict[str, Any]:
    """Validate the module's parameters and run the detection; any failure becomes ``fail_json``."""
    try:
        request = detection.request(module.params)
    except OptionError as exc:
        module.fail_json(msg=str(exc))
    try:
        return detection.run(request, module_runner(module))
    except DetectionError as exc:
        module.fail_json(msg=str(exc), **exc.details)
    return {}  # not reached: fail_json exits
