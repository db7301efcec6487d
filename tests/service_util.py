"""A real `alohac serve` process for the service's tests and benchmark: a free port on
127.0.0.1, started, waited for, stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`alohac serve --data DATA` on a free port; `stop()` (SIGTERM) or `kill()` (SIGKILL)."""

    def __init__(self, data: str, *args: str, port: int | None = None):
        self.data, self.args = str(data), list(args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 60.0) -> Server:
        from service.client import Client, ServiceError
        os.makedirs(self.data, exist_ok=True)
        self.log = open(os.path.join(self.data, f"server-{time.time():.0f}.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "alohac"), "serve", "--data", self.data, "--port", str(self.port),
             *self.args], stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        client = Client(self.url, token=self.token())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alohac serve exited with {self.proc.returncode}")
            try:
                client.health()
                return self
            except ServiceError as e:
                if e.status == 401:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("alohac serve did not answer")

    def token(self) -> str | None:
        path = os.path.join(self.data, "token")
        return open(path).read().strip() if os.path.exists(path) else None

    def client(self, token: str | None = "default"):
        from service.client import Client
        return Client(self.url, token=self.token() if token == "default" else token)

    def job_pids(self) -> dict[str, int]:
        """The recorded process of every job that has one (the database, as the server wrote it)."""
        db = sqlite3.connect(os.path.join(self.data, "jobs.sqlite"))
        try:
            return {i: p for i, p in db.execute("SELECT id, pid FROM jobs WHERE pid IS NOT NULL")}
        finally:
            db.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL to the server and to everything in its session (its fork server)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` exists other than as a zombie (from /proc,
    independently of the service's own bookkeeping)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def cli_json(*args: str) -> dict:
    """`alohac ARGS --json`'s last line."""
    out = subprocess.run([os.path.join(BIN, "alohac"), *args, "--json"], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
