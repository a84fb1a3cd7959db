# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Differential: the collection's reading of sysctl files against the real procps ``sysctl`` and kernel.

Each case is a small sysctl file of tricky lines (blanks procps strips and the kernel does not,
line breaks that are not ``\\n``, NUL bytes, separators, ``-`` prefixes, patterns, exclusions,
numbers the kernel refuses, net.ipv4.ip_local_port_range interplay). A helper in a private
network namespace (``unshare -n``) resets both keys to the kernel's defaults, runs
``sysctl -p CASE`` and reads what the kernel then holds; :func:`resolve` must predict exactly that.
Only keys below net.ipv4 of the new namespace are ever written; the machine's values are checked.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import permfix_testlib as lib
from ansible_collections.permfix.containers.plugins.module_utils._host.sysctl import resolve

KEY = "net.ipv4.ip_unprivileged_port_start"
PROC = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
RANGE = "/proc/sys/net/ipv4/ip_local_port_range"

HELPER = r"""
import json, subprocess, sys
cases = json.loads(sys.stdin.read())
out = []
for path in cases:
    with open("RANGE_PATH", "w") as handle:
        handle.write("32768 60999\n")
    with open("PROC_PATH", "w") as handle:
        handle.write("1024\n")
    subprocess.run(["sysctl", "-q", "-p", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    with open("PROC_PATH") as handle:
        value = int(handle.read())
    with open("RANGE_PATH") as handle:
        low, high = (int(part) for part in handle.read().split())
    out.append([value, low, high])
print(json.dumps(out))
""".replace("RANGE_PATH", RANGE).replace("PROC_PATH", PROC)

SPELLINGS = [
    KEY,
    "net/ipv4/ip_unprivileged_port_start",
    "net/ipv4.ip_unprivileged_port_start",
    "net.ipv4/ip_unprivileged_port_start",
    "net..ipv4.ip_unprivileged_port_start",
    ".net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_unprivileged_port_start.",
    "net/ipv4/../ipv4/ip_unprivileged_port_start",
    "net/./ipv4//ip_unprivileged_port_start",
    "net.ipv4.ip_unprivileged_port_*",
    "net.ipv4.ip_unprivileged_port_st?rt",
    "net.*.ip_unprivileged_port_start",
    "net.ipv4.ip_[u]nprivileged_port_start",
    "net.ipv4.ip_[!u]nprivileged_port_start",
    "net.ipv4.ip_[^x]nprivileged_port_start",
    "net.ipv4.ip_unprivileged_port_\\s*",
    "net.ipv4.ip_unprivileged_port_sta",
    "NET.IPV4.IP_UNPRIVILEGED_PORT_START",
    "net.ipv4.ip_unprivileged_port_start\u00a0",
]
PREFIXES = ["", " ", "\t", "\v", "\f", "\r", " \t\v", "-", "--", "---", "- ", " -"]
AROUND = ["", " ", "\t", "\v", "\f", "\r", "  \t "]
VALUES = [
    "80", "0x50", "0X50", "0120", "-0", "+80", "080", "00", "0", "65535", "65536", "-1", "32768", "32769",
    "80 x", "80\tx", "80\vx", "80\rx", "80#x", "80 # web", "", "0x", "0x1g", "1e3", "8O", "\u0668\u0660",
    "\udca080", "\u00a080", "99999999999999999999", "000000000000000000120", "00000000000000000120",
    "80\x00junk", "8\x000", "  81  ", "82\r", "\x0083",
]
ENDINGS = ["\n", "\r\n", "", "\x00\n", " \n", "\v\n", "\r\r\n", "\u2028\n"]
BREAKERS = ["\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def generated_cases() -> list[str]:
    """About 400 files: a fixed seed, so a failure names the same case every time."""
    rng = random.Random(13)
    cases: list[str] = []
    for spelling in SPELLINGS:
        cases.append(f"{spelling} = 84\n")
    for prefix in PREFIXES:
        cases.append(f"{prefix}{KEY} = 85\n")
    for value in VALUES:
        cases.append(f"{KEY} = {value}\n")
        cases.append(f"{KEY}={value}")
    for breaker in BREAKERS:
        cases.append(f"# old{breaker}{KEY} = 86\n")
        cases.append(f"{KEY} = 87{breaker}{KEY} = 88\n")
        cases.append(f"; x{breaker}\n{KEY} = 89{breaker}\n")
    for _case in range(220):
        lines = []
        for _line in range(rng.randint(1, 3)):
            lines.append(
                rng.choice(PREFIXES + ["", "", ""]) + rng.choice(SPELLINGS[:3] + [KEY] * 3)
                + rng.choice(AROUND) + "=" + rng.choice(AROUND) + rng.choice(VALUES) + rng.choice(ENDINGS)
            )
        cases.append("".join(lines))
    # patterns, exact names and exclusions across lines; ip_local_port_range at the same time
    glob = "net.ipv4.ip_unprivileged_port_*"
    cases += [
        f"{glob} = 90\n{KEY} = 91\n",
        f"{KEY} = 91\n{glob} = 90\n",
        f"{glob} = 90\n-{KEY}\n",
        f"{glob} = 90\n-net.ipv4.ip_unprivileged_*\n",
        f"{glob} = 90\n-net.ipv4.*\n",
        f"{glob} = 90\nnet/ipv4/ip_unprivileged_port_start = 92\n",
        f"{glob} = 90\nnet..ipv4.ip_unprivileged_port_start = 93\n",
        f"{glob} = 90\n-net.ipv4.ip_unprivileged_port_start = 94\n",
        f"{KEY} = 40000\n",
        f"net.ipv4.ip_local_port_range = 500 60999\n{KEY} = 600\n",
        f"{KEY} = 400\nnet.ipv4.ip_local_port_range = 500 60999\n{KEY} = 600\n",
        f"{KEY} = 400\nnet.ipv4.ip_local_port_range = 500 60999\n{KEY} = 500\n",
        f"{KEY} = 400\nnet.ipv4.ip_local_port_range = 500\n{KEY} = 501\n",
        f"{KEY} = 400\nnet.ipv4.ip_local_port_range = 300 60999\n{KEY} = 350\n",
        f"{KEY} = 400\nnet.ipv4.ip_local_port_range = 500 400\n{KEY} = 450\n",
        f"{KEY} = 400\nnet.ipv4.ip_local_port_r* = 500 60999\n{KEY} = 500\n",
        f"{KEY} = 400\nnet/ipv4/ip_local_port_range = 0x1f4 60999 x\n{KEY} = 500\n",
        f"{KEY} = 400\nnet.ipv4.ip_local_port_range = 500 70000\n{KEY} = 500\n",
        f"{KEY} = 400\nnet.ipv4.ip_local_port_range = 500\t60999\n{KEY} = 32768\n",
    ]
    return cases


def test_resolve_predicts_what_procps_sysctl_and_the_kernel_do() -> None:
    host_before = Path(PROC).read_bytes(), Path(RANGE).read_bytes()
    cases = generated_cases()
    assert len(cases) > 300
    with lib.scratch_dir("pf-sysctl-diff-") as root:
        paths = []
        predicted = []
        for index, text in enumerate(cases):
            directory = os.path.join(root, f"case-{index:04d}")
            os.mkdir(directory)
            path = os.path.join(directory, "case.conf")
            with open(path, "wb") as handle:
                handle.write(text.encode("utf-8", "surrogateescape"))
            paths.append(path)
            resolution = resolve(KEY, [directory], None)
            predicted.append([resolution.value, *resolution.local_port_range])
        proc = subprocess.run(
            ["unshare", "-n", sys.executable, "-c", HELPER],
            input=json.dumps(paths), capture_output=True, text=True, timeout=300, check=True,
        )
        real = json.loads(proc.stdout)
    assert (Path(PROC).read_bytes(), Path(RANGE).read_bytes()) == host_before, "the machine's values changed"
    mismatches = [
        (repr(cases[index]), predicted[index], real[index])
        for index in range(len(cases))
        if predicted[index] != real[index]
    ]
    assert mismatches == [], f"{len(mismatches)} of {len(cases)} differ (file, predicted, real): {mismatches[:15]}"
    # the cases are not all alike: the kernel ended with many different values
    assert len({outcome[0] for outcome in real}) > 10
