# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A private dockerd for the tests that must not touch the machine's shared daemon.

It runs in a private mount namespace (its own /run/docker, /run/containerd and /etc/docker, a
plugin directory bound onto /run/docker/plugins) and a private network namespace (with
``--bridge none`` dockerd deletes its namespace's docker0), with its own data root, exec root,
pid file, socket, containerd and containerd namespaces, no bridge and no iptables rules.
Used by test_volume_plugin_driver.py and test_docker_host_mapping.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import permfix_testlib as lib

READY_WAIT = 120  # seconds the private daemon may take to answer (a bound, not an assertion)
STOP_WAIT = 60

# Runs inside `unshare --mount --net --propagation private`: "$1" is the test's plugin directory,
# the rest is dockerd's command line. Mounts made here exist only in the private namespace.
NAMESPACE_SCRIPT = r"""
set -eu
plugins=$1
shift
mount -t tmpfs -o mode=0711 permfix-private-dockerd /run/docker
mkdir -m 0700 /run/docker/plugins
mount --bind "$plugins" /run/docker/plugins
if [ -d /run/containerd ]; then mount -t tmpfs -o mode=0711 permfix-private-dockerd /run/containerd; fi
if [ -d /etc/docker ]; then mount -t tmpfs -o mode=0755 permfix-private-dockerd /etc/docker; fi
exec "$@"
"""


def pids_in_namespace(namespace: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/mnt") == namespace:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


@dataclass
class PrivateDockerd:
    """A dockerd started by a test, isolated from the machine's shared daemon."""

    base: str
    plugins_dir: str
    proc: subprocess.Popen | None = None
    namespace: str | None = None  # the mount namespace, as /proc/PID/ns/mnt reads
    started_at: int = 0
    log_handle: Any = None

    @property
    def socket_path(self) -> str:
        return os.path.join(self.base, "docker.sock")

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.base, "dockerd.log")

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def command(self) -> list[str]:
        config = os.path.join(self.base, "daemon.json")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("{}\n")
        ns_name = lib.random_name("permfix")  # containerd wants [A-Za-z0-9] words joined by . _ -
        dockerd = [
            shutil.which("dockerd") or "dockerd",
            "--config-file", config,
            "--data-root", os.path.join(self.base, "data"),
            "--exec-root", os.path.join(self.base, "exec"),
            "--pidfile", os.path.join(self.base, "docker.pid"),
            "-H", self.host,
            "--containerd-namespace", f"{ns_name}-daemon",
            "--containerd-plugins-namespace", f"{ns_name}-plugins",
            "--storage-driver", "vfs",
            "--bridge", "none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
        ]
        # its own network namespace too: a dockerd started with --bridge none deletes the
        # interface docker0 of its network namespace, which would break the shared daemon's containers
        return ["unshare", "--mount", "--net", "--propagation", "private", "--", "sh", "-c", NAMESPACE_SCRIPT, "sh",
                self.plugins_dir] + dockerd

    def start(self) -> None:
        import docker

        self.started_at = int(time.time()) - 1
        self.log_handle = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self.log_handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_WAIT
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the private dockerd exited with {self.proc.returncode}; its log:\n{self.log_tail()}"
                )
            if os.path.exists(self.socket_path):
                client = docker.DockerClient(base_url=self.host, timeout=30)
                try:
                    client.ping()
                    self.namespace = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
                    return
                except Exception as exc:  # noqa: BLE001 - not answering yet
                    last_error = exc
                finally:
                    client.close()
            time.sleep(0.5)
        raise RuntimeError(
            f"the private dockerd did not answer within {READY_WAIT} s ({last_error}); its log:\n{self.log_tail()}"
        )

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.host, timeout=60)

    def kill(self) -> None:
        """SIGKILL dockerd alone (a crash): its socket stays, nobody answers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_WAIT)

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL; then whatever is left in its namespace (its containerd)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_WAIT)
        if self.namespace is not None:
            # Only processes this test started live in the namespace it created.
            started = time.monotonic()
            while time.monotonic() - started < STOP_WAIT:
                left = pids_in_namespace(self.namespace)
                if not left:
                    break
                how = signal.SIGTERM if time.monotonic() - started < STOP_WAIT / 2 else signal.SIGKILL
                for pid in left:
                    try:
                        os.kill(pid, how)
                    except ProcessLookupError:
                        pass
                time.sleep(0.5)
        if self.log_handle is not None:
            self.log_handle.close()
            self.log_handle = None
