# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# PRIVATE to the collection: these module_utils may change at any time; do not import them elsewhere.
"""Named volumes: the model, who uses them, who should own them and who does.

A :class:`Volume` of one engine scope; :func:`volume_users` (the containers that mount it and
the host identity each runs as), :func:`expected_owner` (a declared owner, else what the
containers agree on; root containers keep CAP_DAC_OVERRIDE and do not vote) and the
observation of its owners on the host (the ownership walker's scan of the local driver's
mountpoint) or through a read-only inspector container. Shared by the detection
(``_classes.named_volume``) and the fix (``_classes.named_volume_fix``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.permfix.containers.plugins.module_utils._core.errors import PermfixError
from ansible_collections.permfix.containers.plugins.module_utils._core.jsonsafe import pick
from ansible_collections.permfix.containers.plugins.module_utils._core.numbers import ID_MAX
from ansible_collections.permfix.containers.plugins.module_utils._engines.containers import (
    Container,
    EngineObject,
    UnknownIdentity,
    host_identity,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.fixer import (
    FixerBackend,
    InspectorCounts,
    inspect_script,
    parse_inspector,
)
from ansible_collections.permfix.containers.plugins.module_utils._engines.walk import (
    OwnershipError,
    Target,
    WalkOptions,
    scan,
)
from ansible_collections.permfix.containers.plugins.module_utils._host.access import IdentityError
from ansible_collections.permfix.containers.plugins.module_utils._host.accounts import Account
from ansible_collections.permfix.containers.plugins.module_utils._host.idmap import IDENTITY, IdMap

SCAN_CHOICES: tuple[str, ...] = ("full", "root")
# Options of the local driver that make the volume a mount of something else (tmpfs, nfs,
# a block device): its content is only at the mountpoint while a container mounts it.
MOUNT_OPTIONS: tuple[str, ...] = ("type", "device", "o")


class VolumeError(PermfixError):
    """The volume cannot be examined or fixed; the message says why and what to do."""


# --------------------------------------------------------------------------------------------
# The model


@dataclass
class Volume(EngineObject):
    """A named volume of one engine (and one rootless user)."""

    noun = "volume"

    engine: str
    name: str
    driver: str
    mountpoint: str
    options: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    account: Account | None = None
    uid_map: IdMap = IDENTITY  # the engine's default namespace: container id -> host id
    gid_map: IdMap = IDENTITY


def volume_from_inspect(engine: str, data: Mapping[str, Any], account: Account | None = None) -> Volume:
    """The model of a volume from ``docker volume inspect`` / ``podman volume inspect`` data."""
    return Volume(
        engine=engine,
        name=str(data.get("Name") or ""),
        driver=str(data.get("Driver") or "local"),
        mountpoint=str(data.get("Mountpoint") or ""),
        options=dict(data.get("Options") or {}),
        labels=dict(data.get("Labels") or {}),
        account=account,
    )


def access_method(volume: Volume, isdir: Any = os.path.isdir) -> tuple[str, str | None]:
    """How the volume's files can be read: ``host`` (its mountpoint), ``container`` (a
    read-only inspector container) or ``none``; with the reason when not ``host``."""
    if volume.driver != "local":
        return "none", (
            f"{volume.describe()} uses the volume driver {volume.driver!r}: its files live behind a plugin, "
            f"so permfix can neither inspect nor fix them; fix the owners where that driver stores the data"
        )
    mounted = sorted(key for key in volume.options if key in MOUNT_OPTIONS)
    if mounted:
        return "container", (
            f"{volume.describe()} is a local volume backed by a mount "
            f"({', '.join(f'{key}={volume.options[key]}' for key in mounted)}): "
            f"its content is only visible while it is mounted"
        )
    if not volume.mountpoint or not isdir(volume.mountpoint):
        return (
            "container",
            f"the mountpoint {volume.mountpoint or '(none)'} of {volume.describe()} is not reachable from the host",
        )
    return "host", None


@dataclass(frozen=True)
class VolumeUser:
    """A container that mounts a volume, with the identity it runs as."""

    container: str
    engine: str
    running: bool
    rw: bool
    destination: str
    uid: int  # container-side
    gid: int
    host_uid: int
    host_gid: int
    groups: tuple[int, ...] = ()
    dac_override: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(
            pick(self, "container", "running", "destination", "uid", "gid", "host_uid", "host_gid"),
            access="rw" if self.rw else "ro",
        )


def mounts_volume(container: Container, volume: Volume) -> list[Any]:
    """The mounts of ``container`` that are ``volume``."""
    if container.engine != volume.engine or container.owner != volume.owner:
        return []
    return [mount for mount in container.mounts if mount.type == "volume" and mount.source == volume.mountpoint]


def volume_users(volume: Volume, containers: Iterable[Container], notes: list[str]) -> list[VolumeUser]:
    """The containers that mount ``volume`` and who they run as on the host."""
    users = []
    for container in containers:
        for mount in mounts_volume(container, volume):
            try:
                identity, host = host_identity(container)
            except IdentityError as exc:
                notes.append(f"{container.describe()}: {exc}")
                continue
            except UnknownIdentity as exc:
                notes.append(f"{container.describe()}: its user {exc.identity.describe()} is not mapped to a host id")
                continue
            users.append(
                VolumeUser(
                    container=container.name,
                    engine=container.engine,
                    running=container.running,
                    rw=mount.rw,
                    destination=mount.destination,
                    uid=identity.uid,
                    gid=identity.gid,
                    host_uid=host.uid,
                    host_gid=host.gid,
                    groups=host.groups,
                    dac_override=host.dac_override,
                )
            )
    return users


@dataclass
class Expectation:
    """Who should own a volume: host ids, the same ids in the engine's namespace, and why."""

    host_uid: int
    host_gid: int
    uid: int
    gid: int
    source: str  # declared or containers
    containers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return pick(self, "uid", "gid", "host_uid", "host_gid", "source", "containers")


_DIGITS = re.compile(r"[0-9]+")


def parse_owner(text: str, what: str = "owner") -> tuple[int, int]:
    """``uid:gid`` (or ``uid``, meaning ``uid:uid``) as numbers; ValueError otherwise."""
    value = str(text).strip()
    user, _sep, group = value.partition(":")
    group = group or user
    if not _DIGITS.fullmatch(user) or not _DIGITS.fullmatch(group):
        raise ValueError(f"{what} {text!r} must be numeric ids as uid:gid, for example 999:999")
    if int(user) > ID_MAX or int(group) > ID_MAX:
        raise ValueError(f"{what} {text!r} is out of range: an id is a number from 0 to {ID_MAX}")
    return int(user), int(group)


def expected_owner(
    volume: Volume,
    users: Sequence[VolumeUser],
    declared: tuple[int, int] | None = None,
) -> tuple[Expectation | None, str | None]:
    """The expected owner of ``volume`` and, when containers disagree, why no owner is.

    ``declared`` ids are as the engine's containers see them (mapped through the volume's
    namespace). Root containers with CAP_DAC_OVERRIDE do not vote: they can use any owner.
    """
    voters = [user for user in users if not user.dac_override]
    names = sorted({user.container for user in users})
    if declared is not None:
        host_uid = volume.uid_map.to_host(declared[0])
        host_gid = volume.gid_map.to_host(declared[1])
        if host_uid is None or host_gid is None:
            return None, (
                f"the declared owner {declared[0]}:{declared[1]} of {volume.describe()} is not mapped in the "
                f"engine's user namespace ({', '.join(volume.uid_map.lines())})"
            )
        return Expectation(host_uid, host_gid, declared[0], declared[1], "declared", names), None
    owners: dict[tuple[int, int], list[str]] = {}
    for user in voters:
        owners.setdefault((user.host_uid, user.host_gid), []).append(user.container)
    if not owners:
        return None, None
    if len(owners) > 1:
        listed = "; ".join(
            f"{', '.join(sorted(set(containers)))} as host {uid}:{gid}"
            for (uid, gid), containers in sorted(owners.items())
        )
        return None, (
            f"the containers using {volume.describe()} run as different users ({listed}): one owner cannot "
            f"serve them all; declare the owner (owners / named_volumes_owners) or align the containers' users"
        )
    (host_uid, host_gid), _names = next(iter(owners.items()))
    uid = volume.uid_map.to_container(host_uid)
    gid = volume.gid_map.to_container(host_gid)
    if uid is None or gid is None:
        return None, (
            f"the containers using {volume.describe()} run as host {host_uid}:{host_gid}, which the engine's default "
            f"user namespace does not map, so a fixer container cannot set it"
        )
    return Expectation(host_uid, host_gid, uid, gid, "containers", names), None


# --------------------------------------------------------------------------------------------
# Observation


@dataclass
class Observation:
    """The volume's root owner and counts, from the host or an inspector container."""

    method: str  # host or container
    uid: int
    gid: int
    mode: str
    entries: int
    mismatched: int  # what a chown would change (not hard-linked files, not device nodes)
    complete: bool = True  # every entry was counted (scan=full)
    skipped: dict[str, int] = field(default_factory=dict)
    sample: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    in_namespace: bool = False  # uid/gid are the engine namespace's ids, not host ids

    def as_dict(self) -> dict[str, Any]:
        return pick(self, "method", "uid", "gid", "mode", "entries", "mismatched", "complete", "skipped", "sample")


def observe_on_host(volume: Volume, expectation: Expectation, full: bool = True, sample_size: int = 10) -> Observation:
    """Count with the ownership engine on the volume's mountpoint (changes nothing)."""
    try:
        report = scan(
            volume.mountpoint,
            Target(uid=expectation.host_uid, gid=expectation.host_gid),
            WalkOptions(recurse=full, refuse_protected=False, sample_size=sample_size),
        )
    except (OwnershipError, OSError) as exc:
        raise VolumeError(f"{volume.describe()} could not be examined at {volume.mountpoint}: {exc}") from None
    counts = report.counts
    return Observation(
        method="host",
        uid=int(report.root.get("uid", -1)),
        gid=int(report.root.get("gid", -1)),
        mode=str(report.root.get("mode", "")),
        entries=counts["entries"],
        mismatched=counts["to_change"],
        complete=full and report.complete,
        skipped={
            "hardlinks": counts["skipped_hardlinks"],
            "devices": counts["skipped_devices"],
            "mounts": counts["skipped_mounts"],
        },
        sample=list(report.changes.items),
        problems=report.problems(),
    )


def observe_in_container(backend: FixerBackend, volume: Volume, expectation: Expectation, image: str) -> Observation:
    """Count with a read-only inspector container (ids of the engine's namespace)."""
    run = backend.run(volume.name, image, inspect_script(expectation.uid, expectation.gid), True, "local")
    if run.rc != 0:
        raise VolumeError(
            f"the inspector container for {volume.describe()} failed (exit {run.rc}): {run.stderr.strip()[:300]}"
        )
    counts: InspectorCounts = parse_inspector(run.stdout)
    return Observation(
        "container", counts.uid, counts.gid, counts.mode, counts.entries, counts.mismatched, in_namespace=True
    )


def root_matches(observation: Observation, expectation: Expectation) -> bool:
    if observation.in_namespace:
        return (observation.uid, observation.gid) == (expectation.uid, expectation.gid)
    return (observation.uid, observation.gid) == (expectation.host_uid, expectation.host_gid)
