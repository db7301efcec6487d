"""`alohac serve`: the subcommand, registered through the `aloha.commands` entry point (the
driver knows the service only as a plugin: the service sits above it and runs its commands)."""

from __future__ import annotations

import argparse
import os


def add_parser(sub, exit_codes_help: str) -> None:
    p = sub.add_parser(
        "serve", help="the ALOHA service: a REST API with a persistent job queue, and a web page",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=exit_codes_help,
        description="""Serve ALOHA over HTTP: evaluations (analyze, compile, train, quantize,
prune, security, explore, explore-mapping, and the orchestrated flow) as jobs in a persistent
queue (SQLite in DATA), each run by the same code as the command line in a process of its own, so
cancel stops it. Jobs that were queued or running when the server died are run again at the next
start. The web page is at http://HOST:PORT/ and the API's OpenAPI description at /docs.

Bound to 127.0.0.1 by default. Any other address requires a bearer token, created at the first
such start in DATA/token (owner-only): send it as `Authorization: Bearer TOKEN`.

    alohac serve --data ~/.aloha-service
    python -c "from service.client import Client; c = Client('http://127.0.0.1:8000'); \\
        print(c.run('analyze', model='zoo:lenet5', target='neuraghe-losa').result['latency_s'])"
""")
    p.add_argument("--data", default=os.path.join(os.path.expanduser("~"), ".aloha-service"),
                   help="the service's folder: job database, models, datasets, job outputs")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (not local: a token "
                                                       "is required)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--workers", type=int, default=2, help="jobs run at once")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds a job may run unless its request says otherwise")
    p.add_argument("--max-upload", type=int, default=100, metavar="MiB",
                   help="largest model or dataset upload")
    p.add_argument("--max-params", type=int, default=200_000_000,
                   help="largest uploaded model, in parameters")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run jobs on this Dask cluster (its workers must see --data at the same "
                        "path); cancel then stops a running job within its poll interval")
    p.add_argument("--token", action="store_true", help="require the token on a local bind too")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from aloha_ir.errors import UsageError
    from importlib.util import find_spec
    missing = [m for m in ("fastapi", "uvicorn") if find_spec(m) is None]
    if missing:
        raise UsageError(f"alohac serve needs the service extra ({', '.join(missing)} not "
                         "installed)", hint="pip install 'aloha[service]'")
    from service.server import ServerConfig, serve
    return serve(ServerConfig(data=args.data, host=args.host, port=args.port,
                              workers=args.workers, timeout=args.timeout,
                              max_upload=args.max_upload << 20, max_params=args.max_params,
                              scheduler=args.scheduler, token=True if args.token else None))
