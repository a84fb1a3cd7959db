#!/usr/bin/env bash
# ansible-test --venv downloads a pip bootstrap script from a host this machine cannot reach.
# It looks for a saved copy first (~/.ansible/test/cache/get_pip_<version>.py): write a
# stand-in there that bootstraps pip with ensurepip and then installs the arguments it is
# given (without --no-setuptools/--no-wheel), from PyPI through the ordinary pip set-up.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv_python=$repo/.venv/bin/python
version=$("$venv_python" - <<'PY'
import re
from pathlib import Path
import ansible_test
source = Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
match = re.search(r"\bpip=.([0-9.]+).", source.read_text())
print(match.group(1) if match else "")
PY
)
if [ -z "$version" ]; then
  version=$("$venv_python" -c 'import pip; print(pip.__version__)')
fi
cache_dir=${HOME:-/root}/.ansible/test/cache
mkdir -p "$cache_dir"
target="$cache_dir/get_pip_${version//./_}.py"
cat >"$target.tmp" <<'PY'
"""Offline stand-in for the get-pip bootstrap script (written by permfix tests/setup)."""
import subprocess
import sys

DROPPED = {"--no-setuptools", "--no-wheel"}
args = [arg for arg in sys.argv[1:] if arg not in DROPPED]
subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True,
               stdout=subprocess.DEVNULL)
subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--upgrade"] + args,
               check=True)
PY
if ! cmp -s "$target.tmp" "$target" 2>/dev/null; then
  mv "$target.tmp" "$target"
  echo "[ansible-test] offline pip bootstrap stand-in: $target"
else
  rm -f "$target.tmp"
fi
