# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Engine scopes: which engine instances to examine, discovered once for every container detection.

An :class:`EngineScope` is Docker, rootful podman or one user's rootless podman, with the
engine's default user namespace. :func:`discover_scopes` is the one answer to "which engines
and users, and is Docker absent": a daemon that is not there at the default address is an
engine the host does not run (a note when Docker is installed, nothing otherwise); one that
does not answer, a podman user that does not exist or whose podman fails, become notes. Also
here: the containers (:func:`scope_containers`) and volumes (:func:`list_volumes`) of a scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from ansible_collections.permfix.containers.plugins.module_utils._core.options import plain_names
from ansible_collections.permfix.containers.plugins.module_utils._core.runner import Runner
from ansible_collections.permfix.containers.plugins.module_utils._engines.containers import (
    Container,
    docker_containers,
    podman_containers,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.docker import (
    DEFAULT_DOCKER_HOST,
    DOCKER_ARGUMENT_SPEC,
    HAS_DOCKER_SDK,
    DockerEngine,
    DockerEngineError,
    MissingDockerSdk,
    connect,
    docker_options,
    docker_presence,
    remap_enabled,
    remap_maps,
    remap_setting,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.fixer import (
    DockerFixer,
    FixerBackend,
    PodmanFixer,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.podman import (
    PodmanError,
    podman_json,
    podman_path,
    rootless_namespace,
    rootless_users,
    run_podman,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.volumes import (
    Volume,
    volume_from_inspect,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import (
    Account,
    AccountDatabase,
    AccountsError,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import IDENTITY, IdMap

# The engines a container detection can examine (the ``engines`` option of every one).
ENGINES: tuple[str, ...] = ("docker", "podman")


# The options of every detection that examines containers or volumes of the engines.
SCOPE_ARGUMENT_SPEC: dict[str, Any] = {
    "engines": {"type": "list", "elements": "str", "choices": list(ENGINES), "default": list(ENGINES)},
    "podman_users": {"type": "list", "elements": "str"},
    **DOCKER_ARGUMENT_SPEC,
}


def scope_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """The validated SCOPE_ARGUMENT_SPEC options, as the keyword arguments of discover_scopes
    (``podman_users`` None: root and every rootless user). OptionError says what is wrong."""
    docker_host, timeout = docker_options(params)
    users = params["podman_users"]
    if users is not None:
        users = plain_names(users, "podman_users")
    return {
        "engines": tuple(params["engines"]),
        "podman_users": tuple(users) if users is not None else None,
        "docker_host": docker_host,
        "timeout": timeout,
    }


@dataclass
class EngineScope:
    """One engine instance: Docker, rootful podman, or one user's rootless podman.

    ``uid_map``/``gid_map`` are the engine's default user namespace (container id -> host id):
    Docker's userns-remap, a rootless user's namespace, else the identity. ``namespace`` says
    whether they were learnt (a scope discovered without them leaves that to each container).
    """

    engine: str
    account: Account | None = None
    docker: DockerEngine | None = None
    uid_map: IdMap = IDENTITY
    gid_map: IdMap = IDENTITY
    namespace: bool = True

    @property
    def who(self) -> str:
        """``root`` or ``user NAME`` (podman), for notes."""
        return "root" if self.account is None else f"user {self.account.name}"

    def describe(self) -> str:
        if self.engine == "docker":
            return "Docker"
        return f"rootless podman of user {self.account.name}" if self.account is not None else "rootful podman"

    def backend(self, runner: Runner, timeout: int) -> FixerBackend:
        if self.engine == "docker" and self.docker is not None:
            return DockerFixer(self.docker, timeout)
        return PodmanFixer(runner, self.account, timeout)


class EngineCache:
    """What one audit learns of the engines once and every detection of that audit reuses: the engine
    scopes and each scope's containers. One per ``audit_info`` run, handed down in the detections'
    requests (never module-global: a module run never sees another's engines)."""

    def __init__(self) -> None:
        self.scopes: dict[tuple[Any, ...], tuple[EngineScope, list[str]]] = {}
        self.containers: dict[tuple[Any, ...], tuple[list[Container], list[str]]] = {}
        self.namespaces: dict[int, tuple[IdMap, IdMap]] = {}


def _namespace(runner: Runner, account: Account, cache: EngineCache | None) -> tuple[IdMap, IdMap]:
    """A rootless user's namespace, learnt once per audit with ``cache`` (PodmanError when unknown)."""
    if cache is None:
        return rootless_namespace(runner, account)[0]
    if account.uid not in cache.namespaces:
        cache.namespaces[account.uid] = rootless_namespace(runner, account)[0]
    return cache.namespaces[account.uid]


def docker_scope(docker_host: str, timeout: int, notes: list[str]) -> EngineScope:
    """Connect to Docker and learn its userns-remap namespace.

    Raises MissingDockerSdk (the SDK is missing) or DockerEngineError (the daemon does not answer).
    """
    if not HAS_DOCKER_SDK:
        raise MissingDockerSdk(docker_host)
    engine = connect(docker_host, timeout)
    info = engine.info()
    scope = EngineScope("docker", docker=engine)
    if remap_enabled(info):
        setting = remap_setting()
        if setting is None:
            notes.append(
                "the Docker daemon remaps user namespaces but its userns-remap setting was not found; "
                "Docker's ids are taken as the host's"
            )
        else:
            try:
                scope.uid_map, scope.gid_map = remap_maps(setting, AccountDatabase.from_files())
            except (DockerEngineError, AccountsError) as exc:
                notes.append(f"{exc}; Docker's ids are taken as the host's")
    return scope


def podman_scope(
    runner: Runner, account: Account | None, namespace: bool = True, cache: EngineCache | None = None
) -> EngineScope:
    """Rootful podman (``account`` None) or one user's; with ``namespace``, the user's namespace is
    learnt now (PodmanError when it cannot be)."""
    scope = EngineScope("podman", account=account, namespace=namespace or account is None)
    if account is not None and namespace:
        scope.uid_map, scope.gid_map = _namespace(runner, account, cache)
    return scope


def podman_accounts(podman_users: Sequence[str] | None, notes: list[str], what: str) -> list[Account | None]:
    """Whose podman to examine: root (None) and every rootless user, or the users named
    (``root``/``0`` is rootful podman); an unknown name becomes a note."""
    if podman_users is None:
        return [None, *rootless_users()]
    accounts: list[Account | None] = []
    for name in podman_users:
        if name in ("root", "0"):
            accounts.append(None)
            continue
        try:
            accounts.append(Account.lookup(name))
        except KeyError:
            notes.append(f"podman user {name!r} does not exist on this host; its {what} were not examined")
    return accounts


def discover_scopes(
    runner: Runner,
    notes: list[str],
    *,
    what: str,
    engines: Sequence[str] = ENGINES,
    podman_users: Sequence[str] | None = None,
    docker_host: str = DEFAULT_DOCKER_HOST,
    timeout: int = 60,
    namespaces: bool = True,
    cache: EngineCache | None = None,
) -> list[EngineScope]:
    """The engine instances to examine; each one that is absent or does not answer becomes a note
    (``what`` names what the caller examines there: ``containers``, ``volumes``). With ``cache``, a
    scope learnt before in the same audit is reused (with the notes it made).

    Raises MissingDockerSdk when a Docker daemon answers and the Docker SDK for Python is missing.
    """
    scopes: list[EngineScope] = []
    if "docker" in engines:
        presence = docker_presence(docker_host)
        if not presence.exists:
            if not presence.silent:
                notes.append(
                    f"no Docker daemon at {docker_host} (the socket does not exist); no Docker {what} were examined"
                )
        else:
            try:
                scopes.append(_cached(cache, ("docker", docker_host, timeout), notes,
                                      lambda more: docker_scope(docker_host, timeout, more)))
            except DockerEngineError as exc:
                notes.append(f"Docker {what} were not examined: {exc}")
    if "podman" in engines:
        if podman_path() is None:
            notes.append(f"podman is not installed on this host; no podman {what} were examined")
        else:
            for account in podman_accounts(podman_users, notes, what):
                key = ("podman", None if account is None else account.uid, namespaces)
                try:
                    make = partial(_podman_scope, runner, account, namespaces, cache)
                    scopes.append(_cached(cache, key, notes, make))
                except PodmanError as exc:
                    notes.append(
                        f"podman {what} of {'root' if account is None else account.name} were not examined: {exc}"
                    )
    return scopes


def _podman_scope(
    runner: Runner, account: Account | None, namespace: bool, cache: EngineCache | None, _notes: list[str]
) -> EngineScope:
    return podman_scope(runner, account, namespace, cache)


def _cached(
    cache: EngineCache | None, key: tuple[Any, ...], notes: list[str], make: Callable[[list[str]], EngineScope]
) -> EngineScope:
    """``make(notes)``, or the scope (and its notes) made for ``key`` before in this audit."""
    if cache is not None and key in cache.scopes:
        scope, made = cache.scopes[key]
        notes.extend(made)
        return scope
    more: list[str] = []
    scope = make(more)
    notes.extend(more)
    if cache is not None:
        cache.scopes[key] = (scope, more)
    return scope


def list_volumes(scope: EngineScope, runner: Runner, names: Sequence[str] = ()) -> list[Volume]:
    """The volumes of one engine scope (only ``names`` when given; missing names are skipped)."""
    wanted = list(names)
    found: list[Mapping[str, Any]] = []
    if scope.engine == "docker" and scope.docker is not None:
        found = _docker_volumes(scope.docker, wanted)
    elif wanted:
        found = _podman_volumes(runner, scope.account, wanted)
    else:
        found = [
            item
            for item in podman_json(runner, ["volume", "inspect", "--all"], scope.account) or []
            if isinstance(item, dict)
        ]
    volumes = []
    for inspected in found:
        volume = volume_from_inspect(scope.engine, inspected, scope.account)
        volume.uid_map, volume.gid_map = scope.uid_map, scope.gid_map
        volumes.append(volume)
    return volumes


def _docker_volumes(engine: DockerEngine, wanted: Sequence[str]) -> list[Mapping[str, Any]]:
    """One listing; an inspect only for a volume of another driver (a plugin may list less than it inspects)."""
    listed = {str(item["Name"]): item for item in engine.volumes()}
    found: list[Mapping[str, Any]] = []
    for name in wanted or list(listed):
        item = listed.get(name)
        if item is not None and str(item.get("Driver") or "local") == "local":
            found.append(item)
            continue
        if wanted and item is None:
            continue
        data = engine.inspect_volume(name)
        if data is not None:
            found.append(data)
    return found


def _podman_volumes(runner: Runner, account: Account | None, wanted: Sequence[str]) -> list[Mapping[str, Any]]:
    """The named podman volumes in one inspect (one by one when one of them is missing)."""
    result = run_podman(runner, ["volume", "inspect", *wanted], account, check=False)
    if result.rc == 0:
        return _json_list(result.stdout)
    found: list[Mapping[str, Any]] = []
    for name in wanted:
        result = run_podman(runner, ["volume", "inspect", name], account, check=False)
        if result.rc == 0:
            found.extend(_json_list(result.stdout))
        elif "no such volume" not in result.stderr.lower():
            raise PodmanError(
                f"'podman volume inspect {name}' failed with exit code {result.rc}: {result.stderr.strip()}"
            )
    return found


def _json_list(text: str) -> list[Mapping[str, Any]]:
    import json

    try:
        data = json.loads(text or "[]")
    except ValueError:
        return []
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def scope_containers(
    scope: EngineScope, runner: Runner, notes: list[str], names: Sequence[str] = (), cache: EngineCache | None = None
) -> list[Container]:
    """The containers of one engine scope (only ``names`` when given), their notes added to ``notes``;
    with ``cache``, those listed before in the same audit (a rootless user's are the same whether its
    scope learnt the namespace or the containers did).

    Raises DockerEngineError or PodmanError when the engine cannot list them.
    """
    key = (scope.engine, None if scope.account is None else scope.account.uid, tuple(names))
    if cache is not None and key in cache.containers:
        containers, more = cache.containers[key]
        notes.extend(more)
        return containers
    more = []
    containers = _scope_containers(scope, runner, more, names, cache)
    notes.extend(more)
    if cache is not None:
        cache.containers[key] = (containers, more)
    return containers


def _scope_containers(
    scope: EngineScope, runner: Runner, notes: list[str], names: Sequence[str], cache: EngineCache | None
) -> list[Container]:
    if scope.engine == "docker" and scope.docker is not None:
        remap = None if scope.uid_map.is_identity else (scope.uid_map, scope.gid_map)
        containers = docker_containers(scope.docker, remap, names)
    else:
        known = (scope.uid_map, scope.gid_map) if scope.account is not None and scope.namespace else None
        if known is None and scope.account is not None and cache is not None:
            try:
                known = _namespace(runner, scope.account, cache)
            except PodmanError:
                known = None  # podman_containers tries again and says why in a note
        containers, more = podman_containers(runner, scope.account, names, rootless_ns=known)
        notes.extend(more)
    for container in containers:
        notes.extend(container.notes)
    return containers
