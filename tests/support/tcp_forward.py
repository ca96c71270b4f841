"""A TCP forwarder for the two-worker test: LISTEN_HOST:PORT -> 127.0.0.1:PORT for each PORT.

The embedded stack binds to 127.0.0.1; a worker in another network namespace reaches it through
the host side of a veth pair, where this forwards each connection to the loopback service.

    python -m tests.support.tcp_forward LISTEN_HOST PORT [PORT ...]

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


def handler(port: int):
    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    return forward


async def main(host: str, ports: list[int]) -> None:
    servers = [await asyncio.start_server(handler(p), host, p) for p in ports]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(p) for p in sys.argv[2:]]))
