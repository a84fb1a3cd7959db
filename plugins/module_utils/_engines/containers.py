# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Containers of every engine in one model: who they run as, how their ids map, what they mount.

Docker containers come from the Docker SDK (:mod:`._docker`); podman containers from
``podman ps -a --format json`` and ``podman container inspect``, as root and as each
rootless user (through the shared :mod:`._podman` helpers). Running and stopped containers
alike: a stopped container's /etc/passwd and /etc/group are copied out through the engine
(``get_archive``, ``podman cp CTR:/etc/passwd -``), never read through ``/proc/PID/root``
(a container's absolute symbolic links would resolve on the host).

ID maps, best source first:

- ``kernel``: ``/proc/PID/uid_map`` of a running container's process, read from the host's
  initial namespace, is already container -> host (also for rootless podman).
- ``engine``: podman's ``IDMappings`` (container -> host for rootful podman; container ->
  the user's rootless namespace for rootless podman, composed with that namespace).
- ``computed``: Docker's ``userns-remap`` from /etc/subuid, rootless podman's namespace when
  podman reports nothing (``podman unshare cat /proc/self/uid_map``, else /etc/subuid).


:func:`host_identity` is the one mapping of a container's user to host ids that every
container detection uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DockerEngine,
    DockerEngineError,
    read_through_links,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
    podman_json,
    rootless_namespace,
    run_podman,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.access import (
    HostIdentity,
    ProcessIdentity,
    choose_user,
    resolve_identity,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account, AccountDatabase
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import (
    IDENTITY,
    IdMap,
    in_host_namespaces,
    parse_colon_map,
    read_proc_maps,
)


class EngineObject:
    """A container or a volume of one engine; ``account`` is the rootless podman user (None for a
    rootful engine) and ``noun`` what it is, for messages."""

    noun = "container"
    engine: str
    name: str
    account: Account | None

    @property
    def owner(self) -> str | None:
        """The rootless podman user's name, None for a rootful engine."""
        return self.account.name if self.account is not None else None

    def describe(self) -> str:
        if self.account is not None:
            return f"rootless podman {self.noun} {self.name} of user {self.account.name}"
        return f"{self.engine} {self.noun} {self.name}"


@dataclass(frozen=True)
class Mount:
    """One mount of a container: ``source`` on the host, ``destination`` inside."""

    type: str
    source: str
    destination: str
    rw: bool
    options: tuple[str, ...] = ()

    @property
    def access(self) -> str:
        return "rw" if self.rw else "ro"


@dataclass
class Container(EngineObject):
    """A container of any engine, as the detections need it."""

    engine: str  # docker or podman
    id: str
    name: str
    state: str
    running: bool
    pid: int | None
    image: str
    user: str  # the effective --user value ("" is root)
    user_source: str  # container, image or default
    mounts: list[Mount] = field(default_factory=list)
    group_add: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    userns_mode: str = ""
    account: Account | None = None  # the rootless podman user; None for rootful engines
    uid_map: IdMap = IDENTITY
    gid_map: IdMap = IDENTITY
    map_source: str = "identity"  # kernel, engine, computed or identity
    accounts: AccountDatabase | None = None  # the container's /etc/passwd and /etc/group
    notes: list[str] = field(default_factory=list)

    def has_dac_override(self) -> bool:
        """Whether a root process in the container keeps CAP_DAC_OVERRIDE (both engines grant
        it by default; ``--cap-drop ALL`` or ``--cap-drop DAC_OVERRIDE`` take it away)."""
        if self.privileged:
            return True
        drop = {_cap_name(cap) for cap in self.cap_drop}
        add = {_cap_name(cap) for cap in self.cap_add}
        if "DAC_OVERRIDE" in add or "ALL" in add:
            return True
        return not ({"ALL", "DAC_OVERRIDE"} & drop)


def _cap_name(cap: str) -> str:
    name = str(cap).strip().upper()
    return name[4:] if name.startswith("CAP_") else name


def _strings(values: Any) -> tuple[str, ...]:
    if not values:
        return ()
    if isinstance(values, str):
        return (values,)
    return tuple(str(value) for value in values)


def _mounts(data: Sequence[Mapping[str, Any]]) -> list[Mount]:
    mounts = []
    for item in data or []:
        mounts.append(
            Mount(
                type=str(item.get("Type") or ""),
                source=str(item.get("Source") or ""),
                destination=str(item.get("Destination") or ""),
                rw=bool(item.get("RW", True)),
                options=_strings(item.get("Options"))
                + tuple(part for part in str(item.get("Mode") or "").split(",") if part),
            )
        )
    return mounts


def _name(data: Mapping[str, Any]) -> str:
    return str(data.get("Name") or data.get("Id", "")[:12]).lstrip("/")


# --------------------------------------------------------------------------------------------
# Docker


def _from_inspect(
    engine: str, data: Mapping[str, Any], image: str, image_user: str, account: Account | None = None
) -> Container:
    """What Docker's and podman's inspect data say alike: the model before its id maps."""
    config = data.get("Config") or {}
    host = data.get("HostConfig") or {}
    state = data.get("State") or {}
    user, source = choose_user(config.get("User"), image_user)
    running = bool(state.get("Running"))
    return Container(
        engine=engine,
        id=str(data.get("Id", "")),
        name=_name(data),
        state=str(state.get("Status") or ("running" if running else "exited")),
        running=running,
        pid=int(state.get("Pid") or 0) or None,
        image=image,
        user=user,
        user_source=source,
        mounts=_mounts(data.get("Mounts") or []),
        group_add=_strings(host.get("GroupAdd")),
        cap_add=_strings(host.get("CapAdd")),
        cap_drop=_strings(host.get("CapDrop")),
        privileged=bool(host.get("Privileged")),
        userns_mode=str(host.get("UsernsMode") or ""),
        account=account,
    )


def container_from_docker(
    data: Mapping[str, Any],
    image: Mapping[str, Any] | None = None,
    remap: tuple[IdMap, IdMap] | None = None,
) -> Container:
    """The model of a Docker container from its inspect data (pure).

    ``image`` is the image's inspect data (for its USER when the container sets none);
    ``remap`` the daemon's userns-remap maps (None when remapping is off).
    """
    config = data.get("Config") or {}
    image_user = ((image or {}).get("Config") or {}).get("User") or ""
    container = _from_inspect("docker", data, str(config.get("Image") or data.get("Image") or ""), image_user)
    userns = container.userns_mode
    if remap is not None and userns != "host":
        container.uid_map, container.gid_map = remap
        container.map_source = "computed"
    return container


def _complete(container: Container, kernel: bool, read: Callable[[str], str | None] | None) -> None:
    """What both engines add to a container's model: the kernel's id maps of a running container
    (when this process sees the host's /proc), and its /etc/passwd and /etc/group (``read``)."""
    if kernel and container.running:
        maps = read_proc_maps(container.pid)
        if maps is not None:
            container.uid_map, container.gid_map = maps
            container.map_source = "kernel"
    if read is not None:
        try:
            passwd, group = read("/etc/passwd"), read("/etc/group")
        except (DockerEngineError, PodmanError) as exc:
            container.notes.append(f"{container.describe()}: its /etc/passwd could not be read: {exc}")
        else:
            container.accounts = AccountDatabase.from_text(passwd or "", group or "")


def docker_containers(
    engine: DockerEngine,
    remap: tuple[IdMap, IdMap] | None = None,
    names: Iterable[str] = (),
    read_accounts: bool = True,
) -> list[Container]:
    """Every Docker container (running and stopped), or those called/identified by ``names``."""
    wanted = set(names)
    kernel = in_host_namespaces()
    containers = []
    for container_id in engine.container_ids():
        data = engine.inspect_container(container_id)
        if data is None:
            continue
        if wanted and not _selected(data, wanted):
            continue
        image = None
        if not ((data.get("Config") or {}).get("User") or "").strip():
            image = engine.inspect_image(str(data.get("Image") or ""))
        container = container_from_docker(data, image, remap)
        reader = partial(engine.read_file, container.id) if read_accounts else None
        _complete(container, kernel, reader)
        containers.append(container)
    return containers


def _selected(data: Mapping[str, Any], wanted: set) -> bool:
    container_id = str(data.get("Id", ""))
    return _name(data) in wanted or any(container_id.startswith(item) for item in wanted if len(item) >= 12)


# --------------------------------------------------------------------------------------------
# podman


def container_from_podman(
    data: Mapping[str, Any],
    account: Account | None = None,
    rootless_ns: tuple[IdMap, IdMap] | None = None,
    image_user: str = "",
) -> Container:
    """The model of a podman container from its inspect data (pure).

    ``account`` is the rootless user (None: rootful podman); ``rootless_ns`` that user's
    namespace (its ``uid_map`` and ``gid_map``), which podman's ``IDMappings`` are relative to.
    """
    config = data.get("Config") or {}
    host = data.get("HostConfig") or {}
    image = str(data.get("ImageName") or config.get("Image") or data.get("Image") or "")
    container = _from_inspect("podman", data, image, image_user, account)
    mappings = host.get("IDMappings") or data.get("IDMappings") or {}
    inner_uid = inner_gid = None
    try:
        if mappings.get("UidMap"):
            inner_uid = parse_colon_map(mappings["UidMap"])
        if mappings.get("GidMap"):
            inner_gid = parse_colon_map(mappings["GidMap"])
    except (ValueError, AttributeError) as exc:
        container.notes.append(f"{container.describe()}: podman reported id mappings that do not parse ({exc})")
    if account is None:
        container.uid_map = inner_uid or IDENTITY
        container.gid_map = inner_gid or (inner_uid or IDENTITY)
        container.map_source = "engine" if inner_uid else "identity"
    elif rootless_ns is not None:
        outer_uid, outer_gid = rootless_ns
        container.uid_map = inner_uid.compose(outer_uid) if inner_uid else outer_uid
        container.gid_map = inner_gid.compose(outer_gid) if inner_gid else outer_gid
        container.map_source = "engine" if inner_uid else "computed"
    else:
        container.map_source = "unknown"
    return container


def podman_read_file(runner: Runner, container_id: str, path: str, account: Account | None) -> str | None:
    """The text of ``path`` in a podman container (running or stopped), None when absent.

    ``podman cp CTR:PATH -`` writes a tar archive on stdout; the Runner decodes output with
    surrogate escapes (AnsibleModule.run_command does), so the bytes come back intact.
    """

    def fetch(current: str) -> bytes | None:
        result = run_podman(runner, ["cp", f"{container_id}:{current}", "-"], account, check=False)
        if result.rc != 0:
            if "no such file" in result.stderr.lower() or "not exist" in result.stderr.lower():
                return None
            raise PodmanError(f"'podman cp {container_id[:12]}:{current} -' failed: {result.stderr.strip()}")
        return result.stdout.encode("utf-8", "surrogateescape")

    try:
        return read_through_links(fetch, path)
    except DockerEngineError as exc:  # the archive itself could not be read
        raise PodmanError(str(exc)) from exc


def podman_containers(
    runner: Runner,
    account: Account | None = None,
    names: Iterable[str] = (),
    read_accounts: bool = True,
    rootless_ns: tuple[IdMap, IdMap] | None = None,
) -> tuple[list[Container], list[str]]:
    """Every podman container of root (``account`` None) or of a rootless user, and notes.

    ``rootless_ns`` is the user's namespace when the caller knows it already (else it is learnt
    here, once, when the user has containers). Raises PodmanError when podman cannot list the
    containers at all.
    """
    notes: list[str] = []
    listed = podman_json(runner, ["ps", "-a", "--format", "json"], account) or []
    ids = [str(item.get("Id")) for item in listed if isinstance(item, dict) and item.get("Id")]
    if not ids:
        return [], notes
    inspected = podman_json(runner, ["container", "inspect", *ids], account) or []
    if account is not None and rootless_ns is None:
        try:
            rootless_ns, _source = rootless_namespace(runner, account)
        except PodmanError as exc:
            notes.append(str(exc))
    wanted = set(names)
    kernel = in_host_namespaces()
    image_users: dict[str, str] = {}
    containers = []
    for data in inspected:
        if not isinstance(data, dict):
            continue
        if wanted and not _selected(data, wanted):
            continue
        image_user = ""
        if not ((data.get("Config") or {}).get("User") or "").strip():
            image_id = str(data.get("Image") or "")
            if image_id and image_id not in image_users:
                image_users[image_id] = _podman_image_user(runner, image_id, account)
            image_user = image_users.get(image_id, "")
        container = container_from_podman(data, account, rootless_ns, image_user)
        reader = partial(podman_read_file, runner, container.id, account=account) if read_accounts else None
        _complete(container, kernel, reader)
        containers.append(container)
    return containers, notes


def _podman_image_user(runner: Runner, image_id: str, account: Account | None) -> str:
    try:
        data = podman_json(runner, ["image", "inspect", image_id], account)
    except PodmanError:
        return ""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return str((data[0].get("Config") or {}).get("User") or "")
    return ""


# --------------------------------------------------------------------------------------------
# Who a container runs as on the host


class UnknownIdentity(PermfixError):
    """A container's user namespace is unknown, so its host ids are too (``identity``: its ids inside)."""

    def __init__(self, message: str, identity: ProcessIdentity) -> None:
        super().__init__(message)
        self.identity = identity


class UnmappedIdentity(UnknownIdentity):
    """A container's user or group is not mapped to any host id by its user namespace."""


def host_identity(container: Container) -> tuple[ProcessIdentity, HostIdentity]:
    """The ids a container's process runs with, and the host identity they map to: the one mapping
    of a container's user to host ids that every detection uses.

    Raises IdentityError (the user or a group is not in the container's files), UnknownIdentity
    (the container's user namespace is unknown) or UnmappedIdentity.
    """
    identity = resolve_identity(
        container.user, container.accounts, container.group_add, where=f"container {container.name}"
    )
    if container.map_source == "unknown":
        raise UnknownIdentity("its user namespace could not be determined", identity)
    host_uid = container.uid_map.to_host(identity.uid)
    host_gid = container.gid_map.to_host(identity.gid)
    if host_uid is None or host_gid is None:
        unmapped, idmap = (identity.uid, container.uid_map) if host_uid is None else (identity.gid, container.gid_map)
        raise UnmappedIdentity(
            f"container id {unmapped} is not mapped in the user namespace ({', '.join(idmap.lines())}); the container "
            f"cannot run as {identity.describe()} (see the subid findings)",
            identity,
        )
    groups = tuple(g for g in (container.gid_map.to_host(group) for group in identity.groups) if g is not None)
    dac = identity.uid == 0 and container.has_dac_override()
    return identity, HostIdentity(host_uid, host_gid, groups, dac, container.uid_map, container.gid_map)
