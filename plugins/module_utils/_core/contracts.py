# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The two contracts every module is written against: Detection and Fix.

A :class:`Detection` is what one read-only ``*_info`` module does, cut in two so that a caller
can validate every option before anything runs:

1. ``request(params)``: the module's validated parameters (``module.params``) become a typed
   request, or :class:`OptionError` with the sentence the module fails with;
2. ``run(request, runner)``: the module's return values (``findings`` among them), or a
   :class:`PermfixError` (usually ``DetectionError``) with the sentence the module fails with.

A :class:`Fix` has the same shape for a module that changes the host:
``run(request, runner, check_mode, diff)`` returns the module's return values, with ``changed``
(computed the same way in check mode, where nothing is changed), ``diff`` when asked for, and
``warnings`` (sentences for ``module.warn``); a fix that fails after it started raises
:class:`FixFailed` whose details are the return values so far (``changed``, ``diff``...).

A module is its documentation plus ``run_detection(module, X_INFO)`` or ``run_fix(module, X_FIX)``:
validation lives once, in the request builders, and errors are caught once, here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import json_safe
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner, module_runner


@dataclass(frozen=True)
class Detection:
    """One read-only detection: its module's argument spec, request builder and runner.

    ``name`` is the finding class it reports, ``module`` the single module that runs it alone;
    ``warnings_from`` names a list in the result whose sentences the module also warns with.
    """

    name: str
    module: str
    argument_spec: Mapping[str, Any]
    request: Callable[[Mapping[str, Any]], Any]
    run: Callable[[Any, Runner], dict[str, Any]]
    docker_scoped: bool = False  # its request has an ``engines`` tuple that may name docker
    warnings_from: str | None = None

    def defaults(self) -> dict[str, Any]:
        """The parameters the module gets when no option is set."""
        return {name: copy.deepcopy(spec.get("default")) for name, spec in self.argument_spec.items()}


def take(params: Mapping[str, Any], *names: str, **renamed: str) -> dict[str, Any]:
    """The parameters ``names``, then each ``field=parameter`` of ``renamed``: the keyword arguments
    of a request built from a module's parameters."""
    values = {name: params[name] for name in names}
    values.update({field: params[name] for field, name in renamed.items()})
    return values


class FixFailed(PermfixError):
    """A fix that started and failed; ``details`` are the module's return values so far."""


@dataclass(frozen=True)
class Fix:
    """One fix module: argument spec (plus other AnsibleModule options), request builder and runner."""

    name: str
    module: str
    argument_spec: Mapping[str, Any]
    request: Callable[[Mapping[str, Any]], Any]
    run: Callable[[Any, Runner, bool, bool], dict[str, Any]]
    module_options: Mapping[str, Any] = field(default_factory=dict)  # required_one_of, ...


def _fail(module: Any, exc: PermfixError) -> NoReturn:
    details = dict(exc.details)
    for warning in details.pop("warnings", []):
        module.warn(json_safe(warning))
    module.fail_json(msg=json_safe(str(exc)), **json_safe(details))
    raise AssertionError("fail_json returned")  # pragma: no cover - fail_json exits


def run_detection(module: Any, detection: Detection) -> None:
    """Validate the module's parameters, run the detection and exit; any failure becomes ``fail_json``."""
    try:
        request = detection.request(module.params)
        result = detection.run(request, module_runner(module))
    except PermfixError as exc:
        _fail(module, exc)
    if detection.warnings_from:
        for warning in result[detection.warnings_from]:
            module.warn(json_safe(warning))
    module.exit_json(changed=False, **json_safe(result))


def run_fix(module: Any, fix: Fix) -> None:
    """Validate the module's parameters, run the fix (in the module's check and diff mode) and exit."""
    try:
        request = fix.request(module.params)
        result = fix.run(request, module_runner(module), bool(module.check_mode), bool(module._diff))
    except PermfixError as exc:
        _fail(module, exc)
    for warning in result.pop("warnings", []):
        module.warn(json_safe(warning))
    module.exit_json(**json_safe(result))
