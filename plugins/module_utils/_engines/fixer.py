# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The one-off, locked-down fixer (and read-only inspector) container for named volumes.

The fixer runs ``find`` and ``chown -h`` from a busybox image inside a container whose only
mount is the volume (at ``/v``), with no network, a read-only root filesystem, every
capability dropped except ``CHOWN`` and ``DAC_READ_SEARCH`` (to enter directories whatever
their mode), ``no-new-privileges``, as uid 0 of the engine's namespace (so a rootless podman
fixer changes owners in that user's namespace only), labelled ``permfix.containers.fixer``
and removed afterwards, also on failure.

Why ``find``/``chown -h`` in a container and not the ownership engine on the host: the
container is the safety boundary. ``find`` never follows a symbolic link (no ``-L``), stays
on the volume (``-xdev``), selects only entries whose owner or group differ (so nothing that
is already right is touched), skips regular files with more than one hard link and device
nodes (like the ownership engine) and lists directories after their content (``-depth``), so
the volume root is changed last. ``chown -h`` changes a symbolic link itself. A path
component swapped for a symbolic link between ``find`` and ``chown`` (by a process writing
the volume during the fix) can only lead to something the container sees: the volume or the
container's own read-only root, never the host's files. Stop the containers using the volume
(``stop_containers``) to close even that window.

Images: the fixer image is a parameter; when it is missing it is pulled (if allowed) and
otherwise built from the host's static busybox with ``docker import`` / ``podman import``.


The engines are reached through the :class:`FixerBackend` protocol (:class:`DockerFixer`,
:class:`PodmanFixer`).
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import pick
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DockerEngine,
    DockerEngineError,
    NotFound,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import PodmanError, run_podman
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account

try:
    from docker.types import Mount as DockerMount
except ImportError:  # pragma: no cover - depends on the target
    DockerMount = None

DEFAULT_FIXER_IMAGE = "localhost/permfix-fixer:busybox"
DEFAULT_BUSYBOX = "/bin/busybox"
MOUNT_POINT = "/v"
LABEL = "permfix.containers.fixer"
LABEL_VOLUME = "permfix.containers.volume"
CAPABILITIES: tuple[str, ...] = ("CHOWN", "DAC_READ_SEARCH")
APPLETS: tuple[str, ...] = ("sh", "find", "chown", "wc", "stat", "cat")
PODMAN_ROOTFUL_ULIMITS: tuple[str, ...] = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


class FixerError(PermfixError):
    """The fixer or inspector could not run; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Pure parts


def selection(uid: int, gid: int) -> list[str]:
    """``find`` tests selecting what a chown to ``uid:gid`` changes: not a device node, not a
    regular file with several hard links, owner or group different."""
    return [
        "(", "-type", "d", "-o", "-type", "l", "-o", "-type", "s", "-o", "-type", "p",
        "-o", "(", "-type", "f", "-links", "1", ")", ")",
        "(", "!", "-user", str(uid), "-o", "!", "-group", str(gid), ")",
    ]


def _shell_words(words: Sequence[str]) -> str:
    out = []
    for word in words:
        if word in ("(", ")", "!"):
            out.append(f"'{word}'")
        else:
            out.append(word)
    return " ".join(out)


def fix_script(uid: int, gid: int) -> str:
    """The fixer's shell script: chown -h only the mismatched entries, the root last; prints
    how many entries were selected."""
    _check_ids(uid, gid)
    find = _shell_words(["find", MOUNT_POINT, "-xdev", "-depth", *selection(uid, gid)])
    return f"set -o pipefail; {find} -print -exec chown -h {uid}:{gid} '{{}}' + | wc -l"


def inspect_script(uid: int, gid: int) -> str:
    """The read-only inspector's script: root owner and mode, entries, mismatched entries."""
    _check_ids(uid, gid)
    mismatched = _shell_words(["find", MOUNT_POINT, "-xdev", *selection(uid, gid)])
    return (
        f"set -o pipefail; stat -c '%u %g %a' {MOUNT_POINT}; find {MOUNT_POINT} -xdev | wc -l; "
        f"{mismatched} | wc -l"
    )


def _check_ids(uid: int, gid: int) -> None:
    for value in (uid, gid):
        if not isinstance(value, int) or value < 0 or value > ID_MAX:
            raise FixerError(f"{value!r} is not a valid numeric id")


@dataclass(frozen=True)
class InspectorCounts:
    uid: int
    gid: int
    mode: str
    entries: int
    mismatched: int


def parse_inspector(text: str) -> InspectorCounts:
    """Parse the inspector's output (three lines: ``uid gid mode``, entries, mismatched)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 3:
        raise FixerError(f"the inspector container printed something unexpected: {text.strip()[:200]!r}")
    parts = lines[0].split()
    if len(parts) != 3 or not all(part.isdigit() for part in parts) or not lines[1].isdigit() or not lines[2].isdigit():
        raise FixerError(f"the inspector container printed something unexpected: {text.strip()[:200]!r}")
    return InspectorCounts(int(parts[0]), int(parts[1]), f"{int(parts[2], 8):04o}", int(lines[1]), int(lines[2]))


def busybox_tarball(busybox_path: str = DEFAULT_BUSYBOX) -> bytes:
    """A tiny root filesystem (the static busybox and the applets the fixer needs) as a tar.

    Raises FixerError when ``busybox_path`` is missing or not a static busybox.
    """
    try:
        with open(busybox_path, "rb") as handle:
            binary = handle.read()
    except OSError as exc:
        raise FixerError(
            f"it cannot be built from busybox because {busybox_path} cannot be read ({exc.strerror or exc}). "
            f"Install a static busybox "
            f"(Debian/Ubuntu: busybox-static) and set busybox_path, or load an image with sh, find and "
            f"chown and set fixer_image to it"
        ) from None
    if not binary.startswith(b"\x7fELF") or b"BusyBox" not in binary:
        raise FixerError(f"{busybox_path} is not a busybox executable: set busybox_path to a static busybox")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name in (".", "bin", "etc", "tmp", MOUNT_POINT.lstrip("/"), "proc", "sys", "dev"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            archive.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(binary)
        info.mode = 0o755
        archive.addfile(info, io.BytesIO(binary))
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            archive.addfile(info)
    return out.getvalue()


def container_name() -> str:
    return f"permfix-fixer-{secrets.token_hex(6)}"


@dataclass
class FixerRun:
    """What one fixer or inspector container did."""

    name: str
    image: str
    image_source: str  # local, pulled or imported
    rc: int
    stdout: str
    stderr: str
    security: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return pick(self, "name", "image", "image_source", "rc", "security")


def security_view(inspect: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a container's inspect data that show how locked down it is."""
    host = inspect.get("HostConfig") or {}
    return {
        "network_mode": host.get("NetworkMode"),
        "cap_add": list(host.get("CapAdd") or []),
        "cap_drop": list(host.get("CapDrop") or []),
        "readonly_rootfs": bool(host.get("ReadonlyRootfs")),
        "security_opt": list(host.get("SecurityOpt") or []),
        "privileged": bool(host.get("Privileged")),
        "user": (inspect.get("Config") or {}).get("User"),
        "mounts": [
            {
                "type": item.get("Type"),
                "name": item.get("Name"),
                "destination": item.get("Destination"),
                "rw": item.get("RW"),
            }
            for item in inspect.get("Mounts") or []
        ],
    }


# --------------------------------------------------------------------------------------------
# Docker


class FixerBackend(Protocol):
    """What the volume fixer needs of an engine: images, and one locked-down container run."""

    engine_name: str

    def image_present(self, image: str) -> bool:
        ...

    def pull(self, image: str) -> str | None:
        ...

    def import_tarball(self, data: bytes, image: str) -> None:
        ...

    def run(self, volume: str, image: str, script: str, read_only: bool, image_source: str) -> FixerRun:
        ...


class DockerFixer:
    """Runs fixer and inspector containers on a Docker daemon."""

    engine_name = "docker"

    def __init__(self, engine: DockerEngine, timeout: int = 600) -> None:
        self.engine = engine
        self.timeout = timeout

    def image_present(self, image: str) -> bool:
        return self.engine.image_exists(image)

    def pull(self, image: str) -> str | None:
        """Pull ``image``; None on success, else why it failed."""
        repository, tag = _split_tag(image)
        try:
            self.engine.pull(repository, tag)
        except (NotFound, DockerEngineError) as exc:
            return str(exc)
        return None if self.image_present(image) else f"{image} is still missing after the pull"

    def import_tarball(self, data: bytes, image: str) -> None:
        repository, tag = _split_tag(image)
        self.engine.import_image(data, repository, tag, ['CMD ["/bin/sh"]'])

    def run(self, volume: str, image: str, script: str, read_only: bool, image_source: str) -> FixerRun:
        if DockerMount is None:  # pragma: no cover - the SDK is there when a DockerEngine is
            raise FixerError("the Docker SDK for Python is missing")
        name = container_name()
        host_config = {
            "network_mode": "none",
            "read_only": True,
            "cap_drop": ["ALL"],
            "cap_add": list(CAPABILITIES),
            "security_opt": ["no-new-privileges"],
            "mounts": [DockerMount(target=MOUNT_POINT, source=volume, type="volume", read_only=read_only)],
            "pids_limit": 64,
        }
        container_id = self.engine.create_container(
            "the fixer container",
            image,
            host_config,
            command=["-c", script],
            entrypoint=["/bin/sh"],
            user="0:0",
            name=name,
            labels={LABEL: "fixer" if not read_only else "inspector", LABEL_VOLUME: volume},
            network_disabled=True,
            working_dir="/",
        ) or name
        try:
            inspect = self.engine.inspect_container(container_id) or {}
            self.engine.start(container_id, "the fixer container")
            rc = self.engine.wait(container_id, self.timeout, "the fixer container")
            stdout = _text(self.engine.logs(container_id, "stdout", "the fixer's output"))
            stderr = _text(self.engine.logs(container_id, "stderr", "the fixer's errors"))
        finally:
            self.engine.remove(container_id)
        return FixerRun(name, image, image_source, rc, stdout, stderr, security_view(inspect))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value or "")


def _split_tag(image: str) -> tuple[str, str]:
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"


# --------------------------------------------------------------------------------------------
# podman


class PodmanFixer:
    """Runs fixer and inspector containers with rootful podman or as a rootless user."""

    engine_name = "podman"

    def __init__(self, runner: Runner, account: Account | None = None, timeout: int = 600) -> None:
        self.runner = runner
        self.account = account
        self.timeout = timeout

    def image_present(self, image: str) -> bool:
        result = run_podman(self.runner, ["image", "exists", image], self.account, check=False)
        return result.rc == 0

    def pull(self, image: str) -> str | None:
        result = run_podman(self.runner, ["pull", "--quiet", image], self.account, check=False)
        if result.rc != 0:
            return result.stderr.strip() or f"podman pull exited with {result.rc}"
        return None

    def import_tarball(self, data: bytes, image: str) -> None:
        directory = tempfile.mkdtemp(prefix="permfix-fixer-")
        try:
            os.chmod(directory, 0o755)
            path = os.path.join(directory, "rootfs.tar")
            with open(path, "wb") as handle:
                handle.write(data)
            os.chmod(path, 0o644)
            run_podman(self.runner, ["import", "--quiet", "--change", 'CMD ["/bin/sh"]', path, image], self.account)
        except PodmanError as exc:
            raise FixerError(f"the fixer image {image} could not be imported: {exc}") from None
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def run(self, volume: str, image: str, script: str, read_only: bool, image_source: str) -> FixerRun:
        name = container_name()
        args = [
            "create", "--name", name,
            "--network", "none",
            "--read-only", "--read-only-tmpfs=false",
            "--cap-drop", "all", "--cap-add", ",".join(CAPABILITIES),
            "--security-opt", "no-new-privileges",
            "--pids-limit", "64",
            "--user", "0:0",
            "--entrypoint", "/bin/sh",
            "--label", f"{LABEL}={'inspector' if read_only else 'fixer'}",
            "--label", f"{LABEL_VOLUME}={volume}",
            "--volume", f"{volume}:{MOUNT_POINT}:{'ro' if read_only else 'rw'}",
        ]
        if self.account is None:
            args += list(PODMAN_ROOTFUL_ULIMITS)
        args += [image, "-c", script]
        try:
            run_podman(self.runner, args, self.account)
            try:
                inspect = _first(run_podman(self.runner, ["container", "inspect", name], self.account).stdout)
                result = run_podman(self.runner, ["start", "--attach", name], self.account, check=False)
            finally:
                run_podman(self.runner, ["rm", "--force", name], self.account, check=False)
        except PodmanError as exc:
            raise FixerError(f"the fixer container could not run: {exc}") from None
        return FixerRun(name, image, image_source, result.rc, result.stdout, result.stderr, security_view(inspect))


def _first(text: str) -> dict[str, Any]:
    import json

    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0]
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# Images


def ensure_image(backend: FixerBackend, image: str, pull: bool, busybox_path: str) -> str:
    """Make ``image`` available to ``backend``; return how: local, pulled or imported.

    Raises FixerError (naming the options) when it is missing, cannot be pulled and cannot
    be built from busybox.
    """
    if backend.image_present(image):
        return "local"
    pull_error = None
    if pull:
        pull_error = backend.pull(image)
        if pull_error is None:
            return "pulled"
    try:
        data = busybox_tarball(busybox_path)
    except FixerError as exc:
        why = f" (pull failed: {pull_error})" if pull_error else ("" if pull else " (pull is off)")
        raise FixerError(f"fixer_image {image} is missing{why}; {exc}") from None
    backend.import_tarball(data, image)
    if not backend.image_present(image):
        raise FixerError(f"the fixer image {image} was imported but the engine does not list it")
    return "imported"
