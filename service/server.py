"""`alohac serve`'s server: the data folder, the queue, the access rules, uvicorn.

Bound to 127.0.0.1 by default, where any local user is trusted as a local CLI is. Bound to any
other address it requires a bearer token: generated at the first such start and kept in
DATA/token, readable by its owner only; clients send `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass

from aloha_ir.errors import UsageError

LOCAL = ("127.0.0.1", "::1", "localhost")


@dataclass
class ServerConfig:
    data: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    timeout: float = 3600.0
    max_upload: int = 100 << 20
    max_params: int = 200_000_000
    scheduler: str | None = None
    token: bool | None = None  # None: required exactly when the bind is not local


def is_local(host: str) -> bool:
    if host in LOCAL:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_of(data: str) -> str:
    """The server's token (DATA/token, created owner-only on first use)."""
    path = os.path.join(data, "token")
    try:
        with open(path) as f:
            text = f.read().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    text = secrets.token_urlsafe(32)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(path + ".tmp", path)
    return text


def build(cfg: ServerConfig):
    """The app and its queue (not started): for uvicorn, and for tests in-process."""
    from service.app import create_app
    from service.jobs import Queue, Settings
    from service.launch import DaskLauncher, LocalLauncher
    from service.resources import Resources
    from service.store import Store
    if cfg.workers < 1:
        raise UsageError("--workers must be at least 1", where="workers")
    store = Store(cfg.data)
    resources = Resources(store.root, cfg.max_upload, cfg.max_params)
    launcher = DaskLauncher(cfg.scheduler) if cfg.scheduler else LocalLauncher()
    queue = Queue(store, resources, launcher, Settings(workers=cfg.workers, timeout=cfg.timeout))
    need_token = cfg.token if cfg.token is not None else not is_local(cfg.host)
    token = token_of(store.root) if need_token else None
    return create_app(queue, token), queue


def serve(cfg: ServerConfig) -> int:
    import asyncio

    import uvicorn
    app, queue = build(cfg)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log = logging.getLogger("aloha.service")
    requeued = queue.recover()
    if requeued:
        log.info("queued again %d job(s) the previous server left running", requeued)
    queue.start()
    if app.state.token:
        log.info("bearer token required (non-local bind): it is in %s",
                 os.path.join(queue.store.root, "token"))
    log.info("data in %s; %d worker(s) (%s); page and API at http://%s:%d/ (OpenAPI: /docs)",
             queue.store.root, cfg.workers, queue.launcher.name,
             cfg.host if ":" not in cfg.host else f"[{cfg.host}]", cfg.port)
    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # first, so that open event streams end (uvicorn waits for every connection to
            # close) and the runner starts nothing more; the running jobs are stopped below
            queue.stopping.set()
            super().handle_exit(sig, frame)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets)
            # here, not after run(): uvicorn re-raises the signal that stopped it once it returns,
            # which would end this process before a `finally` could stop the jobs
            await asyncio.to_thread(queue.stop)

    try:
        Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning",
                              timeout_graceful_shutdown=5)).run()
    finally:
        queue.stop()
    return 0
