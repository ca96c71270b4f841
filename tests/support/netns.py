"""A second host for the scale-out tests: a network namespace joined to this one by a veth pair.

The embedded stack binds to 127.0.0.1; a process in the namespace reaches it through the host side
of the pair, where a forwarder (tests.support.tcp_forward) passes each connection to the loopback
service. The namespaces need root (`ip netns`); :func:`netns_possible` says whether they are there.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 20


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=COMMAND_TIMEOUT)


def netns_possible() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@contextmanager
def forwarder(
    prefix: Sequence[str], listen_host: str, ports: Sequence[int], to_host: str = "127.0.0.1"
) -> Iterator[None]:
    """``listen_host:PORT -> to_host:PORT`` for each port, run under ``prefix`` (a namespace's
    ``ip netns exec NS``, or nothing), until the block ends."""
    process = subprocess.Popen(
        [*prefix, sys.executable, "-m", "tests.support.tcp_forward", "--to", to_host, listen_host, *map(str, ports)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield
    finally:
        process.terminate()
        process.wait(timeout=COMMAND_TIMEOUT)


@contextmanager
def network_namespace(ports: list[int], loopback_ports: Sequence[int] = ()) -> Iterator[tuple[list[str], str]]:
    """A namespace joined to this one by a veth pair in a private /30, and a forwarder from the
    host side of the pair to the loopback services ``ports``; yields (command prefix, host-side
    address). ``loopback_ports`` are also served on the namespace's own 127.0.0.1 (through the pair),
    for a client that is handed a 127.0.0.1 address it cannot change."""
    suffix = secrets.token_hex(3)
    ns, host_if, ns_if = f"mpw{suffix}", f"mph{suffix}", f"mpn{suffix}"
    third = int(suffix[:2], 16)
    host_ip, ns_ip = f"10.231.{third}.1", f"10.231.{third}.2"
    prefix = ["ip", "netns", "exec", ns]
    try:
        with ExitStack() as forwarders:
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            sh("ip", "link", "set", ns_if, "netns", ns)
            sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            sh(*prefix, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
            sh(*prefix, "ip", "link", "set", ns_if, "up")
            sh(*prefix, "ip", "link", "set", "lo", "up")
            forwarders.enter_context(forwarder([], host_ip, ports))
            if loopback_ports:
                forwarders.enter_context(forwarder(prefix, "127.0.0.1", loopback_ports, to_host=host_ip))
            yield prefix, host_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=COMMAND_TIMEOUT)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=COMMAND_TIMEOUT)
