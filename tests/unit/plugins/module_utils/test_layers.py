# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The import rule of plugins/module_utils (docs/development.md, "Code map").

module_utils is four layers, ``_core`` < ``_host`` < ``_engines`` < ``_classes``; a file imports
only from its own layer or the ones below it, and a ``_classes`` file (one finding class) imports
no other ``_classes`` file, except ``audit.py``, which runs them all. Modules, filters and tests
may import anything. No public name is defined in two module_utils files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import permfix_testlib as lib

pytestmark = pytest.mark.unit

MODULE_UTILS = lib.REPO_ROOT / "plugins" / "module_utils"
PACKAGE = "ansible_collections.permfix.containers.plugins.module_utils"
LAYERS = ("_core", "_host", "_engines", "_classes")
MAX_LINES = 1000
LONG_FILE_EXCEPTIONS = {"_engines/walk.py"}  # the walker's hot loop is one unit


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of this collection's module_utils in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:  # from ...module_utils import _core  (a whole layer)
                found.extend((node.lineno, f"{PACKAGE}.{alias.name}") for alias in node.names)
            elif node.module.startswith(PACKAGE + "."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names if alias.name.startswith(PACKAGE + "."))
    return found


def violations(root: Path) -> list[str]:
    """Every import in the module_utils tree at ``root`` that breaks the rule, as a sentence."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        layer = relative.parts[0]
        if layer not in LAYERS:
            problems.append(f"{relative}: module_utils files live in one of the layers {', '.join(LAYERS)}")
            continue
        for line, module in imports_of(path):
            parts = module[len(PACKAGE) + 1:].split(".")
            target = parts[0]
            if target not in LAYERS:
                problems.append(f"{relative}:{line} imports {module}, which is in no layer")
            elif LAYERS.index(target) > LAYERS.index(layer):
                problems.append(
                    f"{relative}:{line} imports {module}: {layer} must not import from the higher layer {target}"
                )
            elif (
                layer == target == "_classes"
                and relative.name != "audit.py"
                and len(parts) > 1
                and parts[1] != relative.stem
            ):
                problems.append(
                    f"{relative}:{line} imports {module}: one finding class must not import another (only audit.py may)"
                )
    return problems


def test_module_utils_imports_only_go_down() -> None:
    assert violations(MODULE_UTILS) == []


@pytest.mark.parametrize(
    ("layer", "name", "statement", "expected"),
    [
        (
            "_core",
            "errors.py",
            "from {p}._host.accounts import Account",
            "_core must not import from the higher layer _host",
        ),
        (
            "_host",
            "accounts.py",
            "from {p}._engines import podman",
            "_host must not import from the higher layer _engines",
        ),
        (
            "_engines",
            "docker.py",
            "import {p}._classes.audit",
            "_engines must not import from the higher layer _classes",
        ),
        ("_classes", "subid.py", "from {p}._classes.bind_mount import X", "one finding class must not import another"),
        ("_core", "x.py", "from {p} import _classes", "_core must not import from the higher layer _classes"),
    ],
)
def test_an_upward_import_is_found(tmp_path: Path, layer: str, name: str, statement: str, expected: str) -> None:
    for other in LAYERS:
        (tmp_path / other).mkdir()
        (tmp_path / other / "__init__.py").write_text("")
    (tmp_path / layer / name).write_text(statement.format(p=PACKAGE) + "\n")
    (tmp_path / "_classes" / "audit.py").write_text(f"from {PACKAGE}._classes.subid import SUBID_INFO\n")
    (tmp_path / "_host" / "paths.py").write_text(
        f"from {PACKAGE}._core.errors import PermfixError\nfrom {PACKAGE}._host import acl\n"
    )
    problems = violations(tmp_path)
    assert len(problems) == 1 and expected in problems[0], problems


def test_no_public_name_is_defined_twice() -> None:
    homes: dict[str, list[str]] = {}
    for path in sorted(MODULE_UTILS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [target.id for target in node.targets if isinstance(target, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            for name in names:
                if not name.startswith("_"):
                    homes.setdefault(name, []).append(str(path.relative_to(MODULE_UTILS)))
    assert {name: files for name, files in homes.items() if len(files) > 1} == {}


def test_no_plugin_file_is_too_long() -> None:
    long_files = []
    for path in sorted((lib.REPO_ROOT / "plugins").rglob("*.py")):
        relative = str(path.relative_to(MODULE_UTILS)) if MODULE_UTILS in path.parents else str(path)
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and relative not in LONG_FILE_EXCEPTIONS:
            long_files.append(f"{relative}: {lines} lines")
    assert long_files == []
