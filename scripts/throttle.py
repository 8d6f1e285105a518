"""A throttling TCP proxy for the network benchmark (scripts/bench.py --network).

usage: throttle.py TARGET_PORT RATE LATENCY [LINK_RATE]   (prints its own port, then serves)

Listens on 127.0.0.1 only and forwards to a server on 127.0.0.1. Every connection, in each
direction, is capped at RATE bytes per second and every byte arrives LATENCY seconds after it
was sent, the way one TCP stream to an object store behaves on a real link. With LINK_RATE,
all connections together are capped at that many bytes per second each way: the runner's own
network link, which parallel streams share. Each connection is served by a process of its
own, so the proxy's CPU is not what caps the aggregate rate.
Bounded: at most MAX_CONNECTIONS at a time, at most a bandwidth-delay product (plus a little)
queued per direction, and it stops when its parent (the benchmark) kills it.
"""
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

CHUNK = 256 << 10
MAX_CONNECTIONS = 256


def die_with_parent():
    """SIGTERM when the parent exits (PR_SET_PDEATHSIG), so nothing outlives the benchmark."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)
    except OSError:
        pass


class Throttle:
    """The proxy as a child process of the benchmark."""

    def __init__(self, target_port, rate, latency, link_rate=None):
        extra = [str(link_rate)] if link_rate else []
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(target_port),
                                      str(rate), str(latency)] + extra, stdout=subprocess.PIPE,
                                     text=True)
        self.port = int(self.proc.stdout.readline())

    def close(self):
        self.proc.kill()
        self.proc.wait()


class Proxy:
    def __init__(self, target_port, rate, latency, link_rate=None):
        self.target = ("127.0.0.1", target_port)
        self.rate = float(rate)
        self.latency = float(latency)
        self.link_rate = float(link_rate) if link_rate else None
        # When the shared link is next free, per direction, in time.monotonic() seconds (one
        # clock for every process): shared memory made before the connections fork.
        self.link_free = {d: multiprocessing.Value("d", 0.0) for d in ("up", "down")}
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]

    def serve_forever(self):
        live = set()
        while True:
            client, _ = self.listener.accept()
            while live:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                live.discard(pid)
            if len(live) >= MAX_CONNECTIONS:
                client.close()
                continue
            pid = os.fork()
            if pid == 0:
                self.listener.close()
                die_with_parent()
                self._serve(client)
                os._exit(0)
            live.add(pid)
            client.close()

    def _serve(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=30)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done = threading.Barrier(3)
        for src, dst, way in ((client, upstream, "up"), (upstream, client, "down")):
            threading.Thread(target=self._direction, args=(src, dst, way, done),
                             daemon=True).start()
        try:
            done.wait(timeout=3600)
        except threading.BrokenBarrierError:
            pass

    def _link_slot(self, way, n):
        """Wait for the shared link to carry n bytes after whatever it already promised."""
        free = self.link_free[way]
        with free.get_lock():
            start = max(time.monotonic(), free.value)
            free.value = start + n / self.link_rate
        wait = start - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _direction(self, src, dst, way, done):
        # Enough queue for the bytes in flight on the link, so latency does not cap the rate.
        depth = max(4, int(self.rate * self.latency / CHUNK) + 4)
        q = queue.Queue(maxsize=depth)

        def read():
            while True:
                try:
                    data = src.recv(CHUNK)
                except OSError:
                    data = b""
                q.put((time.monotonic(), data))
                if not data:
                    return

        threading.Thread(target=read, daemon=True).start()
        next_free = time.monotonic()
        while True:
            sent_at, data = q.get()
            if not data:
                break
            now = time.monotonic()
            wait = max(sent_at + self.latency, next_free) - now
            if wait > 0:
                time.sleep(wait)
            if self.link_rate:
                self._link_slot(way, len(data))
            try:
                dst.sendall(data)
            except OSError:
                break
            next_free = max(next_free, sent_at + self.latency) + len(data) / self.rate
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            done.wait(timeout=3600)
        except threading.BrokenBarrierError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass



if __name__ == "__main__":
    die_with_parent()
    p = Proxy(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]),
              float(sys.argv[4]) if len(sys.argv) > 4 else None)
    print(p.port, flush=True)
    p.serve_forever()
