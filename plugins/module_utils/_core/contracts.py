# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TODO docstring (_info)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import DetectionError, OptionError
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner, module_runner


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
