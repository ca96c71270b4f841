"""A TCP forwarder for the scale-out tests: LISTEN_HOST:PORT -> TO_HOST:PORT for each PORT.

The embedded stack binds to 127.0.0.1; a worker in another network namespace reaches it through
the host side of a veth pair, where this forwards each connection to the loopback service
(TO_HOST 127.0.0.1, the default). Run inside the namespace with ``--to`` the host side's address,
it serves the namespace's own loopback from the host's.

    python -m tests.support.tcp_forward [--to TO_HOST] LISTEN_HOST PORT [PORT ...]

Prints "ready" once every port listens; runs until terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

CHUNK = 65536


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def handler(to_host: str, port: int):
    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(to_host, port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    return forward


async def main(host: str, ports: list[int], to_host: str = "127.0.0.1") -> None:
    servers = [await asyncio.start_server(handler(to_host, p), host, p) for p in ports]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    args = sys.argv[1:]
    target = "127.0.0.1"
    if args[:1] == ["--to"]:
        target, args = args[1], args[2:]
    asyncio.run(main(args[0], [int(p) for p in args[1:]], target))
