# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""The Docker daemon through the Docker SDK for Python, as the detections need it.

Only low-level ``APIClient`` calls that both the SDK on controllers (7.x) and Debian 12's
``python3-docker`` (5.0.3) have: ``containers``, ``inspect_container``, ``inspect_image``,
``get_archive`` and ``info``. Every SDK or transport error becomes one
:class:`DockerEngineError` whose message names the daemon and what to do.

Also here: the daemon's ``userns-remap`` setting (from ``/etc/docker/daemon.json`` and the
running dockerd's command line) and the ID maps it implies.


The Docker options every module shares (``docker_host``, ``timeout``: :func:`docker_options`),
the one rule for "is Docker there" (:func:`docker_presence`), a plain GET over the unix socket
for callers that need no SDK (:func:`docker_api_get`), and reading a container's file through
tar archives for both engines (:func:`read_through_links`).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import posixpath
import shutil
import socket
import tarfile
import threading
import traceback
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import (
    DetectionError,
    OptionError,
    PermfixError,
)
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import seconds
from ansible_collections.permfix.containers.plugins.module_utils._core.options import host_path
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import proc_by_comm
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import IdMap, userns_remap_map
from ansible_collections.permfix.containers.plugins.module_utils._host.subid_file import SubidError, read_subid_file

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

# The Docker connection options every module that asks the Docker daemon shares.
DOCKER_ARGUMENT_SPEC: dict[str, Any] = {
    "docker_host": {"type": "str"},
    "timeout": {"type": "int", "default": 60},
}


def docker_options(params: Mapping[str, Any]) -> tuple[str, int]:
    """The Docker daemon address (the option, else E(DOCKER_HOST), else the default socket) and the
    timeout, validated."""
    docker_host = params["docker_host"] or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if not docker_host.startswith("unix://"):
        raise OptionError(f"docker_host must be a unix:// address such as {DEFAULT_DOCKER_HOST}, not {docker_host!r}")
    try:
        host_path(docker_host[len("unix://"):], "the socket path of docker_host")
    except OptionError as exc:
        raise OptionError(f"docker_host must be unix:// and an absolute socket path such as {DEFAULT_DOCKER_HOST}: "
                          f"{exc}") from None
    return docker_host, seconds(params["timeout"], "timeout")


class _UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection over a unix socket (the Docker API without the Docker SDK)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def docker_api_get(socket_path: str, path: str, timeout: float = 10.0) -> Any:
    """GET ``path`` from the Docker API on the unix socket ``socket_path`` and parse the JSON answer.

    Raises OSError when nobody answers and ValueError for any answer but 200 with JSON.
    """
    connection = _UnixHTTPConnection(socket_path, timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise ValueError(f"the Docker daemon at {socket_path} answered HTTP {response.status} to GET {path}")
    return json.loads(body)


def docker_api_version(docker_host: str = DEFAULT_DOCKER_HOST, timeout: float = 10.0) -> dict[str, Any]:
    """GET /version from the Docker daemon. Raises OSError or ValueError when it does not answer."""
    path = docker_socket_path(docker_host)
    if path is None:
        raise ValueError(f"only unix:// Docker hosts are supported here, not {docker_host!r}")
    data = docker_api_get(path, "/version", timeout)
    if not isinstance(data, dict):
        raise ValueError("the Docker daemon's /version answer is not an object")
    return data


try:
    import docker  # noqa: F401  (the SDK's presence is what HAS_DOCKER_SDK reports)
    from docker.errors import DockerException, NotFound

    HAS_DOCKER_SDK = True
    DOCKER_SDK_IMPORT_ERROR: str | None = None
except ImportError:  # pragma: no cover - depends on the target
    HAS_DOCKER_SDK = False
    DOCKER_SDK_IMPORT_ERROR = traceback.format_exc()

    class DockerException(Exception):  # type: ignore[no-redef]
        """Stand-in so that ``except DockerException`` works without the SDK."""

    class NotFound(DockerException):  # type: ignore[no-redef]
        """Stand-in so that ``except NotFound`` works without the SDK."""

DAEMON_JSON = "/etc/docker/daemon.json"
# Symbolic links followed inside a container when reading a file (/etc/passwd -> ...).
MAX_LINKS = 8
# A container file we read (passwd, group) is never larger than this.
MAX_FILE_BYTES = 4 * 1024 * 1024


class DockerEngineError(PermfixError):
    """The Docker daemon could not be asked; the message says which daemon and why."""


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    explanation = getattr(exc, "explanation", None)
    if explanation:
        text = str(explanation).strip()
    return text or exc.__class__.__name__


def docker_socket_path(docker_host: str) -> str | None:
    """The filesystem path of a ``unix://`` Docker host, None for any other scheme."""
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://"):]
    return None


@dataclass(frozen=True)
class DockerPresence:
    """Whether there is a Docker daemon to ask at ``host``: the one rule every detection follows.

    No socket at the default address is an engine the host does not run (``absent``, not an
    error; worth no note at all when Docker is not even installed: ``silent``); no socket at an
    address the user gave is a daemon that should be there and is not.
    """

    host: str
    socket: str | None
    exists: bool
    installed: bool

    @property
    def absent(self) -> bool:
        return not self.exists and self.host == DEFAULT_DOCKER_HOST

    @property
    def silent(self) -> bool:
        return self.absent and not self.installed


def docker_presence(docker_host: str) -> DockerPresence:
    """Look for the daemon's socket (without connecting) and for an installed Docker."""
    path = docker_socket_path(docker_host)
    exists = path is None or os.path.exists(path)
    installed = bool(shutil.which("dockerd") or shutil.which("docker"))
    return DockerPresence(docker_host, path, exists, installed)


class DockerEngine:
    """A connection to one Docker daemon (created by :func:`connect`)."""

    def __init__(self, client: Any, docker_host: str) -> None:
        self.client = client
        self.docker_host = docker_host
        self._images: dict[str, dict[str, Any]] = {}

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NotFound:
            raise
        except DockerException as exc:
            raise DockerEngineError(
                f"the Docker daemon at {self.docker_host} failed to {what}: {_reason(exc)}"
            ) from exc
        except (OSError, ValueError) as exc:
            raise DockerEngineError(f"the Docker daemon at {self.docker_host} failed to {what}: {exc}") from exc

    def info(self) -> dict[str, Any]:
        return self._call("report its configuration", self.client.info)

    def version(self) -> str:
        data = self._call("report its version", self.client.version)
        return str(data.get("Version") or "unknown")

    def container_ids(self) -> list[str]:
        """Every container, running or stopped."""
        listed = self._call("list containers", self.client.containers, all=True)
        return [str(item["Id"]) for item in listed or [] if item.get("Id")]

    def inspect_container(self, container_id: str) -> dict[str, Any] | None:
        """The container's inspect data, None when it vanished since it was listed."""
        try:
            return self._call(f"inspect container {container_id[:12]}", self.client.inspect_container, container_id)
        except NotFound:
            return None

    def container_inspector(self) -> tuple[Callable[[str], dict[str, Any] | None], Callable[[], None]]:
        """A thread-safe ``inspect_container`` for many calls, and the function that closes it.

        The SDK opens a connection per container (its pool is keyed by URL); this keeps one
        keep-alive connection to the daemon's unix socket per thread, asks the same API version,
        and applies the client's timeout to each call. The SDK's call when the host is not unix://.
        """
        path = docker_socket_path(self.docker_host)
        version = str(getattr(self.client, "api_version", "") or "")
        if path is None or not version[:1].isdigit():
            return self.inspect_container, lambda: None
        timeout = float(getattr(self.client, "timeout", 60) or 60)
        local = threading.local()
        opened: list[_UnixHTTPConnection] = []
        lock = threading.Lock()

        def inspect(container_id: str) -> dict[str, Any] | None:
            what = f"the Docker daemon at {self.docker_host} failed to inspect container {container_id[:12]}"
            connection = getattr(local, "connection", None)
            if connection is None:
                connection = local.connection = _UnixHTTPConnection(path, timeout)
                with lock:
                    opened.append(connection)
            try:
                connection.request("GET", f"/v{version}/containers/{urllib.parse.quote(container_id, safe='')}/json")
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                local.connection = None
                raise DockerEngineError(f"{what}: {exc}") from exc
            if response.status == 404:
                return None
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if response.status != 200 or not isinstance(data, dict):
                message = data.get("message") if isinstance(data, dict) else body[:200].decode("utf-8", "replace")
                raise DockerEngineError(f"{what}: HTTP {response.status} {message}")
            return data

        def close() -> None:
            for connection in opened:
                connection.close()

        return inspect, close

    def inspect_image(self, image_id: str) -> dict[str, Any] | None:
        """The image's inspect data (cached), None when the image is gone."""
        if image_id not in self._images:
            try:
                self._images[image_id] = self._call(
                    f"inspect image {image_id[:19]}", self.client.inspect_image, image_id
                )
            except NotFound:
                return None
        return self._images[image_id]

    def read_file(self, container_id: str, path: str) -> str | None:
        """The text of ``path`` inside the container (running or stopped), None when absent.

        Reads through the archive API, so nothing runs in the container; symbolic links are
        followed inside the container's own tree, at most MAX_LINKS times.
        """

        def fetch(current: str) -> bytes | None:
            try:
                return self._call(
                    f"copy {current} out of container {container_id[:12]}", self._archive, container_id, current
                )
            except NotFound:
                return None

        return read_through_links(fetch, path)

    def _archive(self, container_id: str, path: str) -> bytes:
        stream, _stat = self.client.get_archive(container_id, path)
        return b"".join(_limited(stream))

    # Volumes and the containers that use them

    def volumes(self) -> list[dict[str, Any]]:
        """Every volume as the listing reports it (for the local driver the same fields as its inspect)."""
        listed = self._call("list volumes", self.client.volumes) or {}
        return [item for item in listed.get("Volumes") or [] if isinstance(item, dict) and item.get("Name")]

    def volume_names(self) -> list[str]:
        """The names of every volume."""
        return [str(item["Name"]) for item in self.volumes()]

    def inspect_volume(self, name: str) -> dict[str, Any] | None:
        """The volume's inspect data, None when there is no such volume."""
        try:
            return self._call(f"inspect volume {name}", self.client.inspect_volume, name)
        except NotFound:
            return None

    def stop(self, name: str) -> None:
        self._call(f"stop container {name}", self.client.stop, name)

    def start(self, name: str, what: str = "") -> None:
        """Start a container (``what`` names it in an error, default ``container NAME``)."""
        self._call(f"start {what or 'container ' + name}", self.client.start, name)

    # Images and one-off containers (the volume fixer)

    def image_exists(self, image: str) -> bool:
        try:
            self._call(f"inspect image {image}", self.client.inspect_image, image)
        except NotFound:
            return False
        return True

    def pull(self, repository: str, tag: str) -> None:
        """Pull ``repository:tag``; NotFound or DockerEngineError when it cannot."""
        self._call(f"pull {repository}:{tag}", self.client.pull, repository, tag=tag)

    def import_image(self, data: bytes, repository: str, tag: str, changes: Sequence[str]) -> None:
        self._call(
            f"import the image {repository}:{tag}",
            self.client.import_image_from_data, data, repository=repository, tag=tag, changes=list(changes),
        )

    def create_container(self, what: str, image: str, host_config: Mapping[str, Any], **options: Any) -> str:
        """Create a container (``host_config`` as keyword arguments of the SDK's create_host_config)
        and return its id."""
        config = self.client.create_host_config(**host_config)
        created = self._call(f"create {what}", self.client.create_container, image, host_config=config, **options)
        return str(created.get("Id") or options.get("name") or "")

    def wait(self, container_id: str, timeout: int, what: str = "the container") -> int:
        """Wait for a container to exit and return its exit status."""
        status = self._call(f"wait for {what}", self.client.wait, container_id, timeout=timeout)
        return int(status.get("StatusCode", 1)) if isinstance(status, dict) else int(status)

    def logs(self, container_id: str, stream: str, what: str = "the container's output") -> bytes:
        """The container's ``stdout`` or ``stderr`` output (``what`` names it in an error)."""
        data = self._call(
            f"read {what}", self.client.logs, container_id, stdout=stream == "stdout", stderr=stream == "stderr"
        )
        return data if isinstance(data, bytes) else str(data or "").encode()

    def remove(self, container_id: str) -> None:
        """Remove a container, running or not (best effort: errors are ignored)."""
        try:
            self.client.remove_container(container_id, force=True)
        except Exception:  # noqa: BLE001 - best effort; leftovers carry a label  # pylint: disable=broad-except
            pass


def _limited(stream: Iterable[bytes]) -> Iterable[bytes]:
    total = 0
    for chunk in stream:
        total += len(chunk)
        if total > MAX_FILE_BYTES + 1024 * 1024:
            raise DockerEngineError(f"a container file is larger than {MAX_FILE_BYTES} bytes; not read")
        yield chunk


def file_from_tar(data: bytes) -> tuple[str, str]:
    """The first member of a tar archive: ``("file", text)``, ``("link", target)`` or
    ``("other", "")``. Text that is not UTF-8 survives as surrogate escapes."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            member = archive.next()
            if member is None:
                return "other", ""
            if member.issym():
                return "link", member.linkname
            if not member.isfile() or member.size > MAX_FILE_BYTES:
                return "other", ""
            handle = archive.extractfile(member)
            if handle is None:
                return "other", ""
            return "file", handle.read().decode("utf-8", "surrogateescape")
    except tarfile.TarError as exc:
        raise DockerEngineError(f"the archive of a container file could not be read: {exc}") from exc


def read_through_links(fetch: Callable[[str], bytes | None], path: str) -> str | None:
    """The text of ``path`` in a container, read as tar archives by ``fetch`` (None: no such path).

    Both engines hand out a container's files this way (Docker's archive endpoint, ``podman cp``);
    a symbolic link is followed inside the container's own tree, at most MAX_LINKS times, never on
    the host. None when the path is absent or not a regular file.
    """
    current = path
    for _step in range(MAX_LINKS + 1):
        data = fetch(current)
        if data is None:
            return None
        kind, payload = file_from_tar(data)
        if kind == "file":
            return payload
        if kind != "link":
            return None
        current = posixpath.normpath(posixpath.join(posixpath.dirname(current), payload))
    return None


class MissingDockerSdk(PermfixError):
    """The Docker daemon is there but the Docker SDK for Python is not; the argument is the daemon's
    address (the module reports ``missing_required_lib``)."""


def examine_engines(report: Callable[[], Any], what: str, objects: str) -> dict[str, Any]:
    """``report().as_dict()`` of a detection that asks the engines; DetectionError when it cannot run.

    ``report`` raises MissingDockerSdk when the Docker SDK for Python is missing; ``what`` names
    the things examined in a sentence (``bind mounts``), ``objects`` what Docker holds
    of them (``containers``).
    """
    try:
        return report().as_dict()
    except MissingDockerSdk as exc:
        raise DetectionError(
            missing_required_lib("docker", reason=f"to examine the {objects} of the Docker daemon at {exc}"),
            exception=DOCKER_SDK_IMPORT_ERROR,
        ) from None
    except (OSError, ValueError) as exc:
        raise DetectionError(f"{what} could not be examined: {exc}") from None


def connect(docker_host: str = DEFAULT_DOCKER_HOST, timeout: int = 10) -> DockerEngine:
    """Connect to the daemon (``version="auto"`` asks it which API version to speak).

    Raises DockerEngineError when the SDK is missing or the daemon does not answer.
    """
    if not HAS_DOCKER_SDK:
        raise DockerEngineError("the Docker SDK for Python (docker) is not installed")
    try:
        client = docker.APIClient(base_url=docker_host, version="auto", timeout=timeout)
    except DockerException as exc:
        raise DockerEngineError(f"the Docker daemon at {docker_host} does not answer: {_reason(exc)}") from exc
    except (OSError, ValueError) as exc:
        raise DockerEngineError(f"the Docker daemon at {docker_host} does not answer: {exc}") from exc
    return DockerEngine(client, docker_host)


# --------------------------------------------------------------------------------------------
# userns-remap


@dataclass(frozen=True)
class RemapSetting:
    """Docker's ``userns-remap`` value: ``user[:group]`` (``default`` means ``dockremap``)."""

    user: str
    group: str

    @classmethod
    def parse(cls, value: str) -> RemapSetting | None:
        text = value.strip()
        if not text:
            return None
        user, _sep, group = text.partition(":")
        if user == "default":
            return cls("dockremap", "dockremap")
        return cls(user, group or user)


def remap_from_daemon_json(text: str) -> str | None:
    """The ``userns-remap`` value of a daemon.json text (None when absent or not JSON)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("userns-remap"), str):
        return data["userns-remap"]
    return None


def remap_from_cmdline(argv: Iterable[str]) -> str | None:
    """The ``--userns-remap`` value of a dockerd command line (the last one wins)."""
    found = None
    args = list(argv)
    for index, arg in enumerate(args):
        if arg.startswith("--userns-remap="):
            found = arg.split("=", 1)[1]
        elif arg == "--userns-remap" and index + 1 < len(args):
            found = args[index + 1]
    return found


def dockerd_cmdlines(proc_root: str = "/proc") -> list[list[str]]:
    """The command lines of running dockerd processes."""
    return [list(process.argv) for process in proc_by_comm("dockerd", proc_root)]


def remap_setting(daemon_json: str = DAEMON_JSON, proc_root: str = "/proc") -> RemapSetting | None:
    """The daemon's ``userns-remap`` (command line first, then daemon.json), None when off."""
    for argv in dockerd_cmdlines(proc_root):
        value = remap_from_cmdline(argv)
        if value is not None:
            return RemapSetting.parse(value)
    try:
        with open(daemon_json, encoding="utf-8") as handle:
            value = remap_from_daemon_json(handle.read())
    except OSError:
        value = None
    return RemapSetting.parse(value) if value is not None else None


def remap_enabled(info: dict[str, Any]) -> bool:
    """Whether ``docker info`` says user namespaces are on (``name=userns``)."""
    options = info.get("SecurityOptions") or []
    return any("name=userns" in str(option) for option in options)


def remap_maps(
    setting: RemapSetting,
    accounts: AccountDatabase,
    subuid_path: str = "/etc/subuid",
    subgid_path: str = "/etc/subgid",
) -> tuple[IdMap, IdMap]:
    """The uid and gid maps Docker uses for ``setting``, from /etc/subuid and /etc/subgid.

    Raises DockerEngineError when the remap user or its ranges are missing.
    """
    user = accounts.resolve_user(setting.user)
    if user is None:
        raise DockerEngineError(f"the Docker daemon remaps to user {setting.user!r}, which does not exist on this host")
    group_entry = accounts.group(setting.group)
    group_name = group_entry.name if group_entry is not None else setting.group
    try:
        subuid = read_subid_file("subuid", subuid_path)
        subgid = read_subid_file("subgid", subgid_path)
    except SubidError as exc:
        raise DockerEngineError(str(exc)) from exc
    uid_ranges = [(line.range.start, line.range.count) for line in subuid.lines_of(user, accounts) if line.range]
    gid_ranges = [
        (line.range.start, line.range.count)
        for line in subgid.entries
        if line.range and line.owner in (group_name, str(group_entry.gid) if group_entry else group_name)
    ]
    if not uid_ranges or not gid_ranges:
        raise DockerEngineError(
            f"the Docker daemon remaps to {setting.user}:{setting.group}, "
            f"which has no ranges in {subuid_path} or {subgid_path}"
        )
    return userns_remap_map(uid_ranges), userns_remap_map(gid_ranges)
