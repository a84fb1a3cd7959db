# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Containers of every engine in one model: who they run as, how their ids map, what they mount.

Docker containers come from the Docker SDK (:mod:`._docker`); podman containers from
``podman ps -a --format json`` and ``podman container inspect``, as root and as each
rootless user (through the shared :mod:`._podman` helpers): for podman one ``ps`` and one
``inspect`` batch per user; for Docker one listing and the per-container inspects with
bounded concurrency (:data:`ENGINE_WORKERS` threads; the client's timeout applies to each call).

A container's /etc/passwd and /etc/group (:class:`AccountFiles`) are read only when its user
needs them (:func:`needs_passwd`, :func:`needs_group`: a numeric ``uid:gid`` needs neither),
and then once per distinct source: containers whose own layers (the container layer, Docker's
``-init`` layer) do not touch the file share the read of their image's layers. The read goes
to the storage driver's layer directories on the host (:mod:`._layers`: overlay, every
component opened without following links, whiteouts and opaque directories honoured), and
falls back to the engine (``get_archive``, ``podman cp CTR:/etc/passwd -``) when that is not
safe; never through ``/proc/PID/root`` (a container's absolute symbolic links would resolve on
the host). ``PERMFIX_TEST_ACCOUNT_READS=engine`` in the module's environment is for tests
only: every file through the engine, per container, as before the layer reader existed.

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

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DockerEngine,
    DockerEngineError,
    read_through_links,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.layers import (
    LayerUnsafe,
    layer_changes,
    layer_dirs,
    read_layered_file,
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
    parse_user_spec,
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
    accounts: AccountDatabase | None = None  # the container's /etc/passwd and /etc/group (when its user needs them)
    layers: tuple[str, ...] = ()  # the overlay layer directories, the container's own first (none: not overlay)
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
    layers = layer_dirs(data.get("GraphDriver"))
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
        layers=tuple(layers or ()),
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


def _kernel_maps(container: Container, kernel: bool) -> None:
    """The kernel's id maps of a running container (when this process sees the host's /proc)."""
    if kernel and container.running:
        maps = read_proc_maps(container.pid)
        if maps is not None:
            container.uid_map, container.gid_map = maps
            container.map_source = "kernel"


# --------------------------------------------------------------------------------------------
# A container's /etc/passwd and /etc/group: only when needed, once per source

# Threads for the per-container calls that remain (Docker's inspect, its archive endpoint).
ENGINE_WORKERS = 4
# The test-only switch (module environment): ``engine`` reads every account file through the
# engine, per container, the way the collection did before the layer reader.
ACCOUNT_READS_ENV = "PERMFIX_TEST_ACCOUNT_READS"
PASSWD, GROUP = "/etc/passwd", "/etc/group"

_T = TypeVar("_T")
_R = TypeVar("_R")


def bounded_map(func: Callable[[_T], _R], items: Iterable[_T], workers: int = ENGINE_WORKERS) -> list[_R]:
    """``[func(item) for item in items]`` on at most ``workers`` threads, in order; the first
    exception is raised."""
    todo = list(items)
    if workers <= 1 or len(todo) <= 1:
        return [func(item) for item in todo]
    with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        return list(pool.map(func, todo))


def _numeric_id(text: str) -> bool:
    return text.isdigit() and int(text) <= ID_MAX


def needs_passwd(user: str) -> bool:
    """Whether resolving ``user`` (a ``--user`` value) reads the container's /etc/passwd the way
    :func:`resolve_identity` does: a name, or a uid (root when empty) without a group (its gid
    and supplementary groups come from its entry). A ``uid:group`` needs no passwd."""
    parsed = parse_user_spec(user)
    if not parsed.user or parsed.user.isdigit():
        return not parsed.group and (not parsed.user or _numeric_id(parsed.user))
    return True


def needs_group(user: str, group_add: Iterable[str], passwd: AccountDatabase | None) -> bool:
    """Whether resolving ``user`` with ``group_add`` reads the container's /etc/group: a group or
    an added group given by name, or a user without a group that has a passwd entry (its
    supplementary groups). ``passwd`` holds the container's passwd (None: not read)."""
    parsed = parse_user_spec(user)
    if parsed.group and not _numeric_id(parsed.group):
        return True
    for value in group_add:
        text = str(value).strip()
        if text and text != "keep-groups" and not _numeric_id(text):
            return True
    if parsed.group or passwd is None:
        return False
    if not parsed.user or parsed.user.isdigit():
        return _numeric_id(parsed.user or "0") and passwd.user_by_uid(int(parsed.user or "0")) is not None
    return passwd.user(parsed.user) is not None


def account_reads() -> str:
    """``engine`` when the test-only switch asks for engine reads, else ``auto``."""
    return "engine" if os.environ.get(ACCOUNT_READS_ENV, "").strip() == "engine" else "auto"


def _source_layers(container: Container, path: str) -> tuple[str, ...] | None:
    """The layers that decide ``path`` for ``container``: its layers without the leading ones
    (its own, Docker's -init) that do not touch the path; None when they cannot be read safely.

    A rootless user's layers count only below that user's home (the user writes its inspect data).
    """
    layers = list(container.layers)
    if not layers:
        return None
    if container.account is not None:
        home = container.account.home.rstrip("/") + "/"
        if home == "/" or not all(layer.startswith(home) for layer in layers):
            return None
    try:
        while len(layers) > 1 and not layer_changes(layers[0], [path]):
            layers.pop(0)
    except LayerUnsafe:
        return None
    return tuple(layers)


EngineRead = Callable[[Container, str], "str | None"]


class AccountFiles:
    """Reads the account files the containers' users need, each distinct source once.

    ``engine_read(container, path)`` asks the engine (raises DockerEngineError or PodmanError);
    ``workers`` threads run the engine reads (1 for podman: its Runner is not thread-safe).
    ``stats`` counts the reads by way: ``layers``, ``engine`` and ``shared`` (served from a read
    made for another container).
    """

    def __init__(self, engine_read: EngineRead, workers: int = 1, mode: str | None = None) -> None:
        self.engine_read = engine_read
        self.workers = workers
        self.mode = mode or account_reads()
        self.stats = {"layers": 0, "engine": 0, "shared": 0}

    def complete(self, containers: Sequence[Container]) -> None:
        """Give each container that needs them its ``accounts``; a failed read becomes a note."""
        passwd = self._read_all([item for item in containers if needs_passwd(item.user)], PASSWD)
        texts: dict[str, dict[str, str | None]] = {item.id: {PASSWD: None, GROUP: None} for item in containers}
        failed: dict[str, str] = {}
        for container_id, (text, error) in passwd.items():
            texts[container_id][PASSWD] = text
            if error is not None:
                failed[container_id] = error
        wanting: list[Container] = []
        for item in containers:
            if item.id in failed:
                continue
            database = AccountDatabase.from_text(texts[item.id][PASSWD] or "") if item.id in passwd else None
            if needs_group(item.user, item.group_add, database):
                wanting.append(item)
        for container_id, (text, error) in self._read_all(wanting, GROUP).items():
            texts[container_id][GROUP] = text
            if error is not None:
                failed[container_id] = error
        read = set(passwd) | {item.id for item in wanting}
        for item in containers:
            if item.id in failed:
                item.notes.append(f"{item.describe()}: its /etc/passwd could not be read: {failed[item.id]}")
            elif item.id in read:
                item.accounts = AccountDatabase.from_text(texts[item.id][PASSWD] or "", texts[item.id][GROUP] or "")

    def _read_all(self, containers: Sequence[Container], path: str) -> dict[str, tuple[str | None, str | None]]:
        """``{container id: (text, error)}`` for ``path`` of every container."""
        results: dict[str, tuple[str | None, str | None]] = {}
        groups: dict[tuple[str, ...], list[Container]] = {}
        engine: list[Container] = []
        for item in containers:
            source = _source_layers(item, path) if self.mode != "engine" else None
            if source is None:
                engine.append(item)
            else:
                groups.setdefault(source, []).append(item)
        for source, members in groups.items():
            try:
                data = read_layered_file(source, path)
            except LayerUnsafe:  # a link, a redirect...: each container through the engine
                engine.extend(members)
                continue
            text = data.decode("utf-8", "surrogateescape") if data is not None else None
            self.stats["layers"] += 1
            self.stats["shared"] += len(members) - 1
            for item in members:
                results[item.id] = (text, None)

        def one(item: Container) -> tuple[str | None, str | None]:
            try:
                return self.engine_read(item, path), None
            except (DockerEngineError, PodmanError) as exc:
                return None, str(exc)

        for item, result in zip(engine, bounded_map(one, engine, self.workers)):
            self.stats["engine"] += 1
            results[item.id] = result
        return results


def docker_containers(
    engine: DockerEngine,
    remap: tuple[IdMap, IdMap] | None = None,
    names: Iterable[str] = (),
    read_accounts: bool = True,
) -> list[Container]:
    """Every Docker container (running and stopped), or those called/identified by ``names``."""
    wanted = set(names)
    kernel = in_host_namespaces()
    inspect, close = engine.container_inspector()
    try:
        inspected = [data for data in bounded_map(inspect, engine.container_ids()) if data is not None]
    finally:
        close()
    selected = [data for data in inspected if not wanted or _selected(data, wanted)]
    without_user = [data for data in selected if not _has_user(data)]
    images = {str(data.get("Image") or "") for data in without_user}
    bounded_map(engine.inspect_image, sorted(images))  # cached in the engine
    containers = []
    for data in selected:
        image = None
        if not _has_user(data):
            image = engine.inspect_image(str(data.get("Image") or ""))
        container = container_from_docker(data, image, remap)
        _kernel_maps(container, kernel)
        containers.append(container)
    if read_accounts:
        AccountFiles(lambda item, path: engine.read_file(item.id, path), ENGINE_WORKERS).complete(containers)
    return containers


def _has_user(data: Mapping[str, Any]) -> bool:
    """Whether a container's inspect data sets a user (else the image's USER applies)."""
    return bool(str((data.get("Config") or {}).get("User") or "").strip())


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
    selected = [data for data in inspected if isinstance(data, dict) and (not wanted or _selected(data, wanted))]
    image_users = _podman_image_users(
        runner,
        [str(data.get("Image") or "") for data in selected if not _has_user(data)],
        account,
    )
    containers = []
    for data in selected:
        image_user = ""
        if not _has_user(data):
            image_user = image_users.get(str(data.get("Image") or ""), "")
        container = container_from_podman(data, account, rootless_ns, image_user)
        _kernel_maps(container, kernel)
        containers.append(container)
    if read_accounts:
        AccountFiles(lambda item, path: podman_read_file(runner, item.id, path, account)).complete(containers)
    return containers, notes


def _podman_image_users(runner: Runner, image_ids: Sequence[str], account: Account | None) -> dict[str, str]:
    """The USER of each image (one ``podman image inspect`` of them all; one by one when that fails)."""
    wanted = sorted({image_id for image_id in image_ids if image_id})
    if not wanted:
        return {}
    try:
        data = podman_json(runner, ["image", "inspect", *wanted], account)
    except PodmanError:
        return {image_id: _podman_image_user(runner, image_id, account) for image_id in wanted}
    found = {}
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and str(item.get("Id") or "") in wanted:
            found[str(item.get("Id"))] = str((item.get("Config") or {}).get("User") or "")
    return {
        image_id: found[image_id] if image_id in found else _podman_image_user(runner, image_id, account)
        for image_id in wanted
    }


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
