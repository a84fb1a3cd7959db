# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Where the collection may change owners: protected system paths, container storage and homes.

:func:`refusal_reason` says why a path must never be changed (a system tree, the root of a
home, container storage, found from the host's own storage.conf files too); :func:`human_homes`
and :func:`placement_problem` say whether a bind-mount source lies where the bind_mounts role
is allowed to change it (the allowed roots, or below a person's home directory).
"""

from __future__ import annotations

import json
import os
import pwd
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import (
    AccountsError,
    login_defs_int,
    parse_login_defs,
    read_text,
)

# --------------------------------------------------------------------------------------------
# Protected paths


# The path itself and everything below it is refused.
PROTECTED_TREES: tuple[str, ...] = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/lock",
    "/var/lib/docker",
    "/var/lib/containers",
    "/var/lib/containerd",
    "/var/lib/dpkg",
    "/var/lib/rpm",
    "/var/lib/kubelet",
    "/var/lib/systemd",
    "/var/spool/cron",
    "/root/.ssh",
    "/nix/store",
    "/efi",
    "/snap",
)
# Only the path itself is refused (its subdirectories are where data usually lives).
PROTECTED_EXACT: tuple[str, ...] = (
    "/",
    "/home",
    "/root",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/cache",
    "/var/spool",
    "/var/mail",
    "/var/tmp",
    "/tmp",
    "/opt",
    "/srv",
    "/mnt",
    "/media",
    "/nix",
)

_TREE_REASONS = {
    "/proc": "is the kernel's process filesystem",
    "/sys": "is the kernel's sysfs",
    "/dev": "holds device nodes",
    "/run": "holds the running system's state",
    "/var/run": "holds the running system's state",
    "/var/lock": "holds the running system's locks",
    "/boot": "holds the boot loader and kernels",
    "/etc": "holds the system's configuration",
    "/var/lib/dpkg": "is the package manager's database",
    "/var/lib/rpm": "is the package manager's database",
    "/var/lib/kubelet": "holds the kubelet's pods, volumes and credentials",
    "/var/lib/systemd": "holds systemd's state (credentials, timers, dynamic users)",
    "/var/spool/cron": "holds the users' crontabs (cron refuses files with other owners)",
    "/root/.ssh": "holds root's SSH keys and authorized_keys",
    "/nix/store": "is the Nix store (read-only, shared by every Nix profile)",
    "/efi": "holds the EFI system partition's boot loaders",
    "/snap": "holds the mounted snap packages",
}
# The .ssh directory of any home below /home (users of LDAP or SSSD are not in getpwall()).
_HOME_SSH = re.compile(r"^(/home/[^/]+/\.ssh)(/|$)")
_STORAGE_TREES = ("/var/lib/docker", "/var/lib/containers", "/var/lib/containerd")


def normalize_path(path: str) -> str:
    """An absolute, normalized path (``//x/../y/`` -> ``/y``) without touching the filesystem."""
    norm = os.path.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def _is_below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _inside(norm: str, top: str, what: str) -> str:
    if norm == top:
        return f"{top} {what}"
    return f"{norm} is inside {top}, which {what}"


def refusal_reason(
    path: str,
    homes: Iterable[str] = (),
    storage: Iterable[str] = (),
) -> str | None:
    """Why changing ownership at ``path`` is refused, or None when it is allowed.

    ``homes`` are the home directories of the host's users (each refused itself, not
    below); ``storage`` are container storage directories (refused with everything below).
    Pure: the caller gathers ``homes`` and ``storage`` (see :func:`host_protected_paths`).
    """
    if not path.startswith("/"):
        return f"{path} is not an absolute path"
    norm = normalize_path(path)
    for top in list(storage) + list(_STORAGE_TREES):
        top_norm = normalize_path(top)
        if top_norm != "/" and _is_below(norm, top_norm):
            return f"{norm} is container storage ({top_norm}), which only its container engine may change"
    first = norm.split("/")[1] if norm != "/" else ""
    if first.startswith("lib"):
        return _inside(norm, f"/{first}", "holds the operating system's libraries")
    for top in PROTECTED_TREES:
        if _is_below(norm, top):
            return _inside(norm, top, _TREE_REASONS.get(top, "holds the operating system's files"))
    if norm in PROTECTED_EXACT:
        return f"{norm} is a system directory shared by the whole host"
    ssh_dirs = [normalize_path(home).rstrip("/") + "/.ssh" for home in homes]
    match = _HOME_SSH.match(norm)
    if match:
        ssh_dirs.append(match.group(1))
    for ssh in ssh_dirs:
        if _is_below(norm, ssh):
            return _inside(norm, ssh, "holds a user's SSH keys (sshd refuses them with other owners)")
    for home in homes:
        home_norm = normalize_path(home)
        if home_norm == norm:
            return f"{norm} is a user's home directory itself (choose a directory inside it)"
    return None


# --------------------------------------------------------------------------------------------
# Mounts: where a mounted directory comes from


def unescape_mount_point(text: str) -> str:
    """A path of /proc/self/mountinfo with its octal escapes (``\\040`` for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


@dataclass(frozen=True)
class MountLine:
    """One line of /proc/self/mountinfo: id, device, the path inside its filesystem, where it is."""

    mnt_id: int
    device: str
    root: str
    point: str


def parse_mountinfo(text: str) -> list[MountLine]:
    """The mounts of a mountinfo text (lines that do not parse are left out)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        mounts.append(
            MountLine(int(fields[0]), fields[2], unescape_mount_point(fields[3]), unescape_mount_point(fields[4]))
        )
    return mounts


def mount_sources(mounts: Sequence[MountLine], mnt_id: int, inside: str = "") -> list[str]:
    """Every path at which what mount ``mnt_id`` shows at ``inside`` (a path relative to its mount
    point) is visible through another mount of the same device: for a bind mount of /etc at
    /srv/x, ``/etc``. Empty when the mount id is unknown."""
    mount = next((item for item in mounts if item.mnt_id == mnt_id), None)
    if mount is None:
        return []
    in_fs = normalize_path(os.path.join(mount.root, inside)) if inside else mount.root
    found = []
    for other in mounts:
        if other.device != mount.device or other.mnt_id == mnt_id:
            continue
        top = other.root.rstrip("/")
        if in_fs == other.root or in_fs.startswith(top + "/"):
            rest = in_fs[len(top):].lstrip("/")
            found.append(normalize_path(os.path.join(other.point, rest)) if rest else other.point)
    return found


_STORAGE_KEYS = re.compile(r"""^\s*(graphroot|runroot|rootless_storage_path)\s*=\s*["']([^"']+)["']""", re.M)


def host_protected_paths(etc: str = "/etc") -> tuple[list[str], list[str]]:
    """Return ``(homes, storage)`` for :func:`refusal_reason` as configured on this host."""
    import pwd  # local: only this function needs the user database

    homes: list[str] = []
    storage: list[str] = ["/var/lib/docker", "/var/lib/containers", "/var/lib/containerd"]
    try:
        entries = pwd.getpwall()
    except OSError:
        entries = []
    for entry in entries:
        home = entry.pw_dir or ""
        if home.startswith("/") and home != "/":
            homes.append(home)
            storage.append(os.path.join(home, ".local/share/containers"))
    try:
        with open(os.path.join(etc, "docker/daemon.json"), encoding="utf-8") as handle:
            daemon = json.load(handle)
        for key in ("data-root", "graph"):
            if isinstance(daemon.get(key), str) and daemon[key].startswith("/"):
                storage.append(daemon[key])
    except (OSError, ValueError, AttributeError):
        pass
    for conf in (os.path.join(etc, "containers/storage.conf"), "/usr/share/containers/storage.conf"):
        try:
            with open(conf, encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            continue
        for _key, value in _STORAGE_KEYS.findall(text):
            if value.startswith("/") and "$" not in value:
                storage.append(value)
    return homes, storage


# --------------------------------------------------------------------------------------------
# Where fixes are allowed


def human_homes(passwd: Sequence[Any] | None = None, login_defs: str | None = None) -> list[str]:
    """Home directories of root and of regular users (UID_MIN..UID_MAX of login.defs)."""
    if login_defs is None:
        try:
            login_defs = read_text("/etc/login.defs")
        except AccountsError:
            login_defs = ""
    values = parse_login_defs(login_defs)
    uid_min = login_defs_int(values, "UID_MIN", 1000)
    uid_max = login_defs_int(values, "UID_MAX", 60000)
    entries = passwd if passwd is not None else pwd.getpwall()
    homes = []
    for entry in entries:
        uid, home = entry.pw_uid, entry.pw_dir or ""
        if (uid == 0 or uid_min <= uid <= uid_max) and home.startswith("/") and normalize_path(home) != "/":
            homes.append(normalize_path(home))
    return sorted(set(homes))


def _below(path: str, top: str, strict: bool) -> bool:
    top = normalize_path(top)
    if path == top:
        return not strict
    return path.startswith(top.rstrip("/") + "/")


def placement_problem(
    real_path: str,
    allowed_roots: Sequence[str],
    homes: Sequence[str],
    allow_home_subdirs: bool,
) -> str | None:
    """Why ``real_path`` is outside where fixes are allowed, None when it is inside."""
    path = normalize_path(real_path)
    for root in allowed_roots:
        if _below(path, root, strict=False):
            return None
    if allow_home_subdirs:
        for home in homes:
            if _below(path, home, strict=True):
                return None
    roots = ", ".join(allowed_roots) or "none"
    extra = " or below a user's home directory" if allow_home_subdirs else ""
    return (
        f"{path} is outside the allowed roots ({roots}{extra}); add its parent to "
        f"bind_mounts_allowed_roots (allowed_roots) to let permfix change it"
    )
