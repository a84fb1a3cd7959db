#!/usr/bin/env bash
# Prepare this machine for the permfix.containers tests (or, with "runtime", for the audit):
# Debian packages, a running Docker daemon, the virtual environment, the collection link and
# the local images. Every step is idempotent and skips itself when it is already done.
#
#   tests/setup/prepare.sh            everything the tests need
#   tests/setup/prepare.sh runtime    only what the audit needs (packages, dockerd if
#                                     installed, a small venv)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
mode=${1:-test}
cache=${PERMFIX_CACHE:-/var/cache/permfix-tests}
export PERMFIX_CACHE=$cache
mkdir -p "$cache"

log() { printf '[prepare] %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "tests/setup/prepare.sh must run as root: it installs packages, starts dockerd and creates users" >&2
    exit 2
  fi
}

# --- Debian packages ---------------------------------------------------------------------
runtime_packages=(python3 python3-venv python3-docker ca-certificates git)
test_packages=(docker.io podman uidmap slirp4netns fuse-overlayfs busybox-static debootstrap acl
  e2fsprogs iproute2 util-linux procps sudo passwd rsync chromium chromium-driver)

install_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$cache/apt.log" 2>&1 \
      || { tail -30 "$cache/apt.log"; exit 1; }
  fi
  # crun fails on hosts with hybrid cgroups (v1 controllers with an empty v2 tree): let podman use runc.
  if dpkg-query -W -f='${Status}' crun 2>/dev/null | grep -q "install ok installed" && [ -d /sys/fs/cgroup/unified ]; then
    log "removing crun (unusable with this host's hybrid cgroups; podman falls back to runc)"
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq crun >>"$cache/apt.log" 2>&1
  fi
}

# --- Docker daemon -----------------------------------------------------------------------
start_dockerd() {
  command -v dockerd >/dev/null 2>&1 || return 0
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  log "starting dockerd (log: /var/log/permfix-dockerd.log)"
  rm -f /var/run/docker.pid
  setsid nohup dockerd >/var/log/permfix-dockerd.log 2>&1 </dev/null &
  local waited=0
  until docker info >/dev/null 2>&1; do
    sleep 1
    waited=$((waited + 1))
    if [ $waited -ge 90 ]; then
      echo "dockerd did not answer within 90 s; its log:" >&2
      tail -30 /var/log/permfix-dockerd.log >&2
      exit 1
    fi
  done
}

# --- Python virtual environment -------------------------------------------------------
pick_python() {
  local candidate
  # Python 3.12 is what the pinned tool chain is tested with; 3.13 works as a fall-back.
  for candidate in "${PERMFIX_PYTHON:-}" python3.12 python3.13; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv, ensurepip' >/dev/null 2>&1; then
      command -v "$candidate"
      return
    fi
  done
  for candidate in "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3 "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3; do
    [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
  command -v python3
}

make_venv() {
  local requirements=$1 venv=$repo/.venv python stamp want
  python=$(pick_python)
  want="$("$python" -c 'import sys; print(sys.version.split()[0])') $(sha256sum "$requirements" | cut -c1-16)"
  stamp=$venv/.permfix-$(basename "$requirements")
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  if [ "$("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)" != "${want%% *}" ]; then
    log "python venv at .venv ($python)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
  fi
  log "pip install -r ${requirements#"$repo"/}"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >"$cache/pip.log" 2>&1 \
    || { grep -v '^WARNING: Location' "$cache/pip.log" | tail -30; exit 1; }
  echo "$want" >"$stamp"
}

# A copy of this collection in the default collections path (left by molecule's prerun, or an
# earlier `ansible-galaxy collection install`) would shadow the checkout for ansible-lint,
# which always searches ~/.ansible/collections first.
remove_shadowing_copy() {
  local copy=${HOME:-/root}/.ansible/collections/ansible_collections/permfix/containers
  if [ -e "$copy" ]; then
    log "removing $copy (it would shadow this checkout)"
    rm -rf "$copy"
  fi
}

need_root
remove_shadowing_copy
case "$mode" in
  runtime)
    install_packages "${runtime_packages[@]}"
    start_dockerd
    if [ -x "$(pick_python)" ] && "$(pick_python)" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
      make_venv "$repo/requirements.txt"
    else
      make_venv "$repo/tests/setup/requirements-py311.txt"
    fi
    ;;
  test)
    install_packages "${runtime_packages[@]}" "${test_packages[@]}"
    start_dockerd
    make_venv "$repo/tests/requirements.txt"
    "$repo/tests/setup/images.sh"
    "$repo/tests/setup/ansible_test_offline.sh"
    ;;
  *)
    echo "usage: $0 [test|runtime]" >&2
    exit 2
    ;;
esac
log "ready ($mode)"
