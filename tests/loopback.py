"""A server under test on this machine only: uvicorn in a thread on a free loopback port (127.0.0.1)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn


@contextlib.contextmanager
def serving(app, *, log_level: str = "critical", start_timeout_s: float = 30.0, stop_timeout_s: float = 20.0,
            **config) -> Iterator[int]:
    """Serve ``app`` until the block ends; yields the port it got.

    The socket is bound before uvicorn starts, so the port is known and free; ``IPPROTO_TCP`` explicitly, because
    asyncio sets TCP_NODELAY only on sockets created with it (else Nagle and a client's delayed ACK add ~40 ms to
    every keep-alive response). ``config`` goes to :class:`uvicorn.Config` (``lifespan="on"`` ...).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=stop_timeout_s)
        sock.close()
