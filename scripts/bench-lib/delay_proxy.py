#!/usr/bin/env python3
"""scripts/bench-lib/delay_proxy.py — a wide-area network on loopback, for the WAN case of scripts/bench.

One listening port per simulated host, each forwarding to a real server (an sshd, a Docker
Engine's TLS port). Every chunk of bytes is forwarded RTT/2 after it arrived, in each direction,
in order within its connection and direction; connections never wait for each other. The proxy
also makes the TCP handshake cost its half: it connects to the server RTT/2 after accepting, so
the server's first bytes (an SSH greeting) reach the client one RTT after it connected.

Per connection it counts the changes of direction of the data it forwards (client to server,
then server to client, ...): a protocol that waits for an answer before it sends again changes
direction twice per round trip, so round trips = changes / 2. When a connection ends, one line
goes to the log file (tab-separated): listening port, changes, round trips, bytes up, bytes
down, lifetime in ms. The bench reads the lines its run added.

Usage: delay_proxy.py --rtt MS --map FILE --log FILE [--ready FILE] [--trace FILE]
  --map FILE   one "LISTEN_PORT HOST PORT" a line (listening on 127.0.0.1)
  --ready FILE written ("ready") once every port listens
  --trace FILE every chunk as it arrives: connection number, port, ms since the connection
               began, up/down, bytes
               (to see which step of a protocol waits for which answer)
"""
import argparse
import asyncio
import resource
import sys
import time


def parse():
    a = argparse.ArgumentParser(description="delay proxy (see the module doc)")
    a.add_argument("--rtt", type=float, required=True, help="round-trip time to add, in ms")
    a.add_argument("--map", required=True)
    a.add_argument("--log", required=True)
    a.add_argument("--ready")
    a.add_argument("--trace")
    return a.parse_args()


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Conn:
    """What one proxied connection has seen."""

    serial = 0

    def __init__(self, port, trace):
        Conn.serial += 1
        self.id = Conn.serial
        self.port = port
        self.trace = trace
        self.last = None
        self.changes = 0
        self.bytes = {"up": 0, "down": 0}
        self.t0 = time.monotonic()

    def saw(self, direction, n):
        if self.last is not None and self.last != direction:
            self.changes += 1
        self.last = direction
        self.bytes[direction] += n
        if self.trace:
            self.trace.write(f"{self.id}\t{self.port}\t{(time.monotonic() - self.t0) * 1000:.0f}\t{direction}\t{n}\n")
            self.trace.flush()


async def pump(src, dst, direction, conn, half):
    """Read from src, write each chunk to dst RTT/2 after it arrived (in order); EOF likewise."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def sender():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                break
            try:
                dst.write(data)
                await dst.drain()
            except (ConnectionError, OSError):
                return
        try:
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError):
            pass

    task = asyncio.create_task(sender())
    try:
        while True:
            data = await src.read(65536)
            if not data:
                break
            conn.saw(direction, len(data))
            queue.put_nowait((loop.time() + half, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((loop.time() + half, None))
    await task


def serve(port, host, dport, half, log, trace):
    async def handle(creader, cwriter):
        conn = Conn(port, trace)
        await asyncio.sleep(half)  # the SYN's way to the server
        try:
            sreader, swriter = await asyncio.open_connection(host, dport)
        except OSError as e:
            print(f"delay_proxy: {port} -> {host}:{dport}: {e}", file=sys.stderr)
            cwriter.close()
            return
        await asyncio.gather(pump(creader, swriter, "up", conn, half), pump(sreader, cwriter, "down", conn, half))
        for w in (cwriter, swriter):
            try:
                w.close()
            except OSError:
                pass
        ms = (time.monotonic() - conn.t0) * 1000
        log.write(f"{port}\t{conn.changes}\t{conn.changes / 2:g}\t{conn.bytes['up']}\t{conn.bytes['down']}\t{ms:.0f}\n")
        log.flush()

    return asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)


async def main():
    args = parse()
    raise_nofile()
    half = args.rtt / 2000.0
    log = open(args.log, "a", encoding="utf-8")
    trace = open(args.trace, "a", encoding="utf-8") if args.trace else None
    servers = []
    for line in open(args.map, encoding="utf-8"):
        f = line.split()
        if len(f) == 3:
            servers.append(await serve(int(f[0]), f[1], int(f[2]), half, log, trace))
    if args.ready:
        with open(args.ready, "w", encoding="utf-8") as r:
            r.write("ready\n")
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
