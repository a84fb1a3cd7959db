# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module of the collection, every option, called with bad values: never a traceback.

The cases are made from ``ansible-doc --json`` of this checkout (so a new module or option is
swept without editing this file): for each option, values of the wrong type (dict, list, int,
bool where a string is expected and the other way round), empty strings, NUL bytes, relative
paths and files or directories of the wrong kind (one holding non-UTF-8 bytes) for path options,
huge and negative numbers, and one unknown option per module. Each call must end in a
``fail_json`` sentence or a successful result: "Traceback", "MODULE FAILURE", "Module failed: "
(an exception that escaped, such as "embedded null byte") and audit_info's "stopped on an
unexpected error" are offences, reported all at once per module.

Nothing on the host changes: every task runs in check mode, and the modules that write get
scratch files for every file option (BASELINE), so even a bad value that were accepted would
point into the scratch tree. AnsibleModule's own syslog line is switched off
(``_ansible_no_log``, what ANSIBLE_NO_TARGET_SYSLOG sets): it refuses NUL bytes in string
options before the module's code runs, which hosts with journald do not, so the sweep lets
them reach the module's code.

Speed: every module is imported once and each case runs in a forked child of that process
(sweep_runner.py), with the parameters a module started by ansible-core gets. Cases that
ansible-core's own argument validation refuses (``ArgumentSpecValidator`` on the documented
spec says so) never reach the module's code; only the first of them per module is run, to
check that they fail with core's sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

import permfix_testlib as lib

MODULES_DIR = lib.REPO_ROOT / "plugins" / "modules"
MODULES = sorted(path.stem for path in MODULES_DIR.glob("*.py") if not path.name.startswith("_"))

HUGE = 10**30
NUL = "a\x00b"
# A module call that has not ended after this long is stuck (ansible-core ends it: "The task timed out").
TASK_TIMEOUT = 180
# What the result of a call must not contain (searched in every text of the result).
OFFENCES = ("Traceback", "MODULE FAILURE", "Module failed: ", "unexpected error (", "expected time frame")

# Valid values for the options a module needs and for the options naming files it would write, so
# that each case changes one option only; ``{scratch}`` is the scratch tree below.  A module not
# listed here is called with its documented defaults (in check mode).
BASELINE: dict[str, dict[str, Any]] = {
    "subid": {
        "name": "pfsweep",
        "count": 65536,
        "migrate": "never",
        "passwd_path": "{scratch}/etc/passwd",
        "group_path": "{scratch}/etc/group",
        "login_defs_path": "{scratch}/etc/login.defs",
        "nsswitch_path": "{scratch}/etc/nsswitch.conf",
        "subuid_path": "{scratch}/etc/subuid",
        "subgid_path": "{scratch}/etc/subgid",
    },
    "subid_info": {
        "users": ["pfsweep"],
        "discover": False,
        "passwd_path": "{scratch}/etc/passwd",
        "group_path": "{scratch}/etc/group",
        "login_defs_path": "{scratch}/etc/login.defs",
        "nsswitch_path": "{scratch}/etc/nsswitch.conf",
        "subuid_path": "{scratch}/etc/subuid",
        "subgid_path": "{scratch}/etc/subgid",
    },
    "unprivileged_port": {
        "ports": [80],
        "discover": False,
        "proc_path": "{scratch}/proc/ip_unprivileged_port_start",
        "local_port_range_path": "{scratch}/proc/ip_local_port_range",
        "sysctl_conf": "{scratch}/etc/sysctl.conf",
        "sysctl_dirs": ["{scratch}/etc/sysctl.d"],
    },
    "unprivileged_port_info": {
        "ports": [80],
        "discover": False,
        "proc_path": "{scratch}/proc/ip_unprivileged_port_start",
        "local_port_range_path": "{scratch}/proc/ip_local_port_range",
        "sysctl_conf": "{scratch}/etc/sysctl.conf",
        "sysctl_dirs": ["{scratch}/etc/sysctl.d"],
    },
    "path_owner": {"path": "{scratch}/tree", "owner": "4242", "group": "4242"},
    "volume_owner": {"volume": "{volume}", "owner": "4242"},
    "volume_owner_info": {"volumes": ["{volume}"], "podman_users": ["root"]},
    "bind_mount_info": {"containers": ["{volume}"], "podman_users": ["root"]},
    # the detections an audit_info option belongs to: the choice its name starts with (the rest: all)
    "audit_info": {"subid_users": ["pfsweep"], "bind_mount_scan": False},
}

# audit_info's options that every detection asking an engine uses.
DOCKER_OPTIONS = ("docker_host", "timeout")

# A valid element of each list-of-dict option, to sweep its suboptions one at a time.
ELEMENTS: dict[str, dict[str, Any]] = {
    "specs": {"path": "{scratch}/tree", "uid": 4242},
    "bind_mount_specs": {"path": "{scratch}/tree", "uid": 4242},
}

PASSWD = "root:x:0:0:root:/root:/bin/sh\npfsweep:x:4242:4242::/nonexistent:/bin/false\n"
GROUP = "root:x:0:\npfsweep:x:4242:\n"
LOGIN_DEFS = "SUB_UID_MIN 100000\nSUB_UID_MAX 600100000\nSUB_UID_COUNT 65536\n" \
             "SUB_GID_MIN 100000\nSUB_GID_MAX 600100000\nSUB_GID_COUNT 65536\n"
NOT_UTF8 = b"\xff\xfe\xc3(\x80 pfsweep:\xe9t\xe9:1:2\n\x00\x01\n"


@dataclass(frozen=True)
class Case:
    module: str
    option: str  # "option", "option[].suboption", "(baseline)" or "(unknown option)"
    label: str
    args: dict[str, Any]
    core_refuses: bool = False  # ansible-core's argument validation refuses it before the module runs
    params: str = ""  # the parameters the module gets after core's conversions (JSON), when it runs

    def describe(self) -> str:
        return f"{self.module} {self.option}={self.label}"


@dataclass
class Scratch:
    root: str
    volume: str
    garbage: str = field(init=False)

    def __post_init__(self) -> None:
        self.garbage = f"{self.root}/not-utf8"

    def fill(self, value: Any) -> Any:
        """``value`` with ``{scratch}`` and ``{volume}`` replaced, in every string it holds."""
        if isinstance(value, str):
            return value.replace("{scratch}", self.root).replace("{volume}", self.volume)
        if isinstance(value, list):
            return [self.fill(item) for item in value]
        if isinstance(value, dict):
            return {key: self.fill(item) for key, item in value.items()}
        return value


def make_scratch(root: str) -> Scratch:
    """The files the baseline points at: account and subid files, sysctl files, a small tree."""
    files = {
        "etc/passwd": PASSWD, "etc/group": GROUP, "etc/login.defs": LOGIN_DEFS,
        "etc/nsswitch.conf": "passwd: files\ngroup: files\n", "etc/subuid": "", "etc/subgid": "",
        "etc/sysctl.conf": "", "etc/sysctl.d/10-other.conf": "net.ipv4.ip_forward = 1\n",
        "proc/ip_unprivileged_port_start": "1024\n", "proc/ip_local_port_range": "32768\t60999\n",
        "tree/file": "x", "tree/sub/file": "y",
    }
    for name, text in files.items():
        path = Path(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    scratch = Scratch(root, lib.random_name("pfsweep"))
    Path(scratch.garbage).write_bytes(NOT_UTF8)
    return scratch


def module_docs() -> dict[str, Any]:
    """``ansible-doc --json`` of every module of this checkout, by short name."""
    names = [f"permfix.containers.{name}" for name in MODULES]
    proc = subprocess.run(
        [str(lib.VENV_BIN / "ansible-doc"), "--json", "-t", "module", *names],
        env=lib.ansible_env(), capture_output=True, text=True, check=True, timeout=120,
    )
    docs = json.loads(proc.stdout)
    return {name.rsplit(".", 1)[1]: entry["doc"] for name, entry in docs.items()}


def core_spec(options: Mapping[str, Any]) -> dict[str, Any]:
    """The argument spec the documented options describe (validate-modules keeps them equal)."""
    spec: dict[str, Any] = {}
    for name, doc in options.items():
        entry = {key: doc[key] for key in ("type", "elements", "choices", "default", "required") if key in doc}
        if "suboptions" in doc:
            entry["options"] = core_spec(doc["suboptions"])
        spec[name] = entry
    return spec


def bad_values(doc: Mapping[str, Any], scratch: Scratch) -> list[tuple[str, Any]]:
    """(label, value) for one option: the bad values of its type.

    ansible-core turns a dict, a list, an int or a bool given for a string into its text
    (``{'a': 1}``, ``-1``...) before the module runs: one of each kind of text is enough.
    """
    kind, elements = doc.get("type", "str"), doc.get("elements")
    relative = "relative/dir"
    if kind == "path":
        return [("empty", ""), ("NUL", "/tmp/a\x00b"), ("relative", relative), ("not-utf8-file", scratch.garbage),
                ("directory", f"{scratch.root}/tree")]
    if kind == "str":
        return [("dict", {"a": 1}), ("empty", ""), ("NUL", NUL), ("huge-int", HUGE)]
    if kind == "int":
        return [("str", "abc"), ("bool", True), ("negative", -1), ("huge", HUGE)]
    if kind == "bool":
        return [("str", "maybe"), ("int", 2), ("dict", {"a": 1})]
    if kind == "raw":
        return [("dict", {"a": 1}), ("list", [1]), ("bool", True), ("negative", -1), ("huge", HUGE),
                ("float", 1.5), ("empty", ""), ("NUL", NUL), ("huge-number-text", str(HUGE))]
    if kind == "dict":
        return [("str", "a"), ("empty-key", {"": "x"}), ("NUL-key", {NUL: "x"}), ("nested-dict", {"a": {"b": 1}}),
                ("null-value", {"a": None}), ("huge-value", {"a": HUGE}), ("NUL-value", {"a": NUL})]
    if kind == "list":
        common = [("empty-list", []), ("list-of-dict", [{"a": 1}])]
        if elements == "int":
            return common + [("negative", [-1]), ("huge", [HUGE]), ("bool", [True])]
        if elements == "path":
            return common + [("relative", [relative]), ("empty", [""]), ("NUL", ["/tmp/a\x00b"]),
                             ("not-utf8-file", [scratch.garbage])]
        if elements == "dict":
            return common + [("list-of-str", ["a"]), ("list-of-empty-dict", [{}])]
        return common + [("empty", [""]), ("NUL", [NUL]), ("huge-int", [HUGE])]
    raise AssertionError(f"option type {kind!r} has no bad values here: add them")


def module_cases(module: str, doc: Mapping[str, Any], scratch: Scratch) -> list[Case]:
    """Every case of one module: its baseline, an unknown option, each bad value of each option."""
    options = doc.get("options", {})
    validator = ArgumentSpecValidator(core_spec(options))
    baseline = scratch.fill(BASELINE.get(module, {}))
    detections = options.get("detections", {}).get("choices", [])

    def case(option: str, label: str, name: str, value: Any) -> Case:
        args = dict(baseline, **{name: value})
        if detections and name != "detections":
            # audit_info: run only the detection the option belongs to; an option of all of them
            # (docker_host, timeout) with one that asks Docker; the others with the cheapest
            owners = [choice for choice in detections if name.startswith(f"{choice}_")]
            args["detections"] = owners or (["named_volume"] if name in DOCKER_OPTIONS else ["subid"])
        validated = validator.validate(args)
        if validated.error_messages:
            return Case(module, option, label, args, True)
        return Case(module, option, label, args, False, json.dumps(validated.validated_parameters, sort_keys=True,
                                                                   default=repr))

    cases = [Case(module, "(baseline)", "", dict(baseline)),
             Case(module, "(unknown option)", "1", dict(baseline, permfix_no_such_option=1), True)]
    for name, option_doc in options.items():
        for label, value in bad_values(option_doc, scratch):
            cases.append(case(name, label, name, value))
        element = ELEMENTS.get(name)
        if option_doc.get("suboptions") and element is not None:
            for sub, sub_doc in option_doc["suboptions"].items():
                for label, value in bad_values(sub_doc, scratch):
                    cases.append(case(f"{name}[].{sub}", label, name, [dict(scratch.fill(element), **{sub: value})]))
        elif option_doc.get("suboptions"):
            raise AssertionError(f"{module} {name} has suboptions: add a valid element to ELEMENTS")
    return cases


def chosen(cases: list[Case]) -> list[Case]:
    """The cases to run: the first refused by core, and each set of parameters the module's code gets once
    (core turns ``-1`` and ``"-1"`` for a string into the same ``"-1"``)."""
    picked, seen = [], set()
    for case in cases:
        key = "(refused)" if case.core_refuses else case.params
        if key not in seen:
            seen.add(key)
            picked.append(case)
    return picked


def offence(case: Case, result: Mapping[str, Any] | None) -> str | None:
    """Why ``result`` is not a clear sentence or a success (None when it is)."""
    if result is None:
        return "no result (the task did not run)"
    text = json.dumps(result, ensure_ascii=False)
    for marker in OFFENCES:
        if marker in text:
            index = text.find(marker)
            return f"{marker!r} in the result: ...{text[max(0, index - 200):index + 300]}..."
    if result.get("failed"):
        msg = result.get("msg")
        if not isinstance(msg, str) or not msg.strip():
            return f"failed without a message: {text[:500]}"
    elif case.core_refuses:
        return f"ansible-core's validation refuses it, yet the module succeeded: {text[:500]}"
    return None


RUNNER = Path(__file__).with_name("sweep_runner.py")


def sweep(modules: list[str], scratch: Scratch) -> dict[str, list[str]]:
    """Run every chosen case of ``modules``; the offending ones, described, by module.

    sweep_runner.py imports every module once and forks a child per case (two at a time), which
    gets its parameters the way a module started by ansible-core does (see its docstring).
    """
    docs = module_docs()
    cases = [case for module in modules for case in chosen(module_cases(module, docs[module], scratch))]
    os.makedirs(f"{scratch.root}/cwd")
    os.makedirs(f"{scratch.root}/run")
    numbered = list(enumerate(cases))
    cases_path = Path(scratch.root, "run", "cases.json")
    results_path = Path(scratch.root, "run", "results.json")
    cases_path.write_text(json.dumps([{"index": index, "module": case.module, "args": case.args,
                                       "cwd": f"{scratch.root}/cwd"} for index, case in numbered]), encoding="utf-8")
    env = lib.ansible_env({"PYTHONPATH": str(lib.collections_dir()), "PERMFIX_SWEEP_TIMEOUT": str(TASK_TIMEOUT)})
    proc = subprocess.run([str(lib.VENV_BIN / "python"), str(RUNNER), str(cases_path), str(results_path)],
                          env=env, capture_output=True, text=True, timeout=TASK_TIMEOUT * 4 + 600, check=False)
    if proc.returncode != 0 or not results_path.exists():
        raise AssertionError(f"sweep_runner.py failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    results = {int(index): result for index, result in json.loads(results_path.read_text(encoding="utf-8")).items()}
    offending: dict[str, list[str]] = {module: [] for module in modules}
    for index, case in numbered:
        why = offence(case, results.get(index))
        if why is not None:
            offending[case.module].append(f"{case.describe()} (args {case.args!r}): {why}")
    return offending


def selected_modules(session: pytest.Session) -> list[str]:
    names = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if item.name.startswith("test_bad_input[") and callspec is not None:
            names.append(callspec.params["module"])
    return sorted(set(names)) or MODULES


@pytest.fixture(scope="module")
def offending(request: pytest.FixtureRequest) -> Iterator[dict[str, list[str]]]:
    with lib.scratch_dir("permfix-sweep-") as root:
        scratch = make_scratch(root)
        yield sweep(selected_modules(request.session), scratch)


def test_modules_are_found() -> None:
    """The sweep covers the modules directory (a rename must not make it sweep nothing)."""
    assert {"subid", "path_owner", "engine_info", "audit_info"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_bad_input(module: str, offending: dict[str, list[str]]) -> None:
    """Each bad value of each option ends in a fail_json sentence or a success, never an exception."""
    found = offending[module]
    assert not found, f"{len(found)} bad-input cases of {module} end without a sentence:\n" + "\n".join(found)
