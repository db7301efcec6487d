"""The REST API and the web demonstrator (FastAPI; OpenAPI at /docs).

    GET  /health /version /platforms /models /datasets
    POST /models?name=F.onnx  /datasets?name=F.npz      (the file as the request body)
    POST /jobs {"kind": "analyze", "params": {...}, "id"?, "timeout"?, "cache"?}
    GET  /jobs?state=&kind=&parent=   GET /jobs/ID   POST /jobs/ID/cancel   DELETE /jobs/ID
    GET  /jobs/ID/events        server-sent events: state, progress, point, design_point, log
    GET  /jobs/ID/artefacts     GET /jobs/ID/artefacts/PATH     GET /jobs/ID/archive (zip)
    GET  /                       the web page (service/static)

Bad input is a 4xx with a message (`{"detail": ...}`), never a traceback. With a token (a
non-local bind), every route but the page's static files asks for `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import zipfile
from importlib.metadata import version
from typing import Annotated, Literal, Union

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from aloha_ir import events
from service import kinds
from service.jobs import Conflict, NotFound, Queue
from service.resources import BadReference, Rejected, within
from service.store import STATES, Job

STATIC = os.path.join(os.path.dirname(__file__), "static")
API_VERSION = "1"

JobId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["3f2a9c1e0b7d4a55"])]


# --- the typed requests and responses ------------------------------------------------------------

class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: JobId | None = Field(None, description="a client-chosen id: submitting the same request "
                                               "with it again returns the same job")
    timeout: Annotated[float, Field(gt=0, le=7 * 86400)] | None = Field(
        None, description="seconds the job may run (default: the server's --timeout)")
    cache: bool = Field(True, description="answer from an identical earlier job's result")


def _request(kind: str, params: type[BaseModel]) -> type[_Request]:
    return type(f"{params.__name__[:-len('Params')]}Request", (_Request,), {
        "__annotations__": {"kind": Literal[kind], "params": params},
        "__doc__": params.__doc__})


JobRequest = Annotated[Union[tuple(_request(k, p) for k, p in kinds.PARAMS.items())],
                       Field(discriminator="kind")]


class JobOut(BaseModel):
    id: str
    kind: str
    state: Literal[STATES]
    params: dict
    parent: str | None
    stage: str | None
    children: list[str]
    created: float
    started: float | None
    finished: float | None
    attempts: int
    exit_code: int | None
    error: str | None
    result: dict | None
    cached_from: str | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(**{k: getattr(job, k) for k in cls.model_fields})


class Artefact(BaseModel):
    path: str
    bytes: int


class Health(BaseModel):
    status: Literal["ok"]
    launcher: str
    workers: int
    jobs: dict[str, int]


class Version(BaseModel):
    aloha: str
    api: str
    xdsl: str


class Listed(BaseModel):
    ref: str
    name: str
    source: str
    description: str
    available: bool = True


class Stored(BaseModel):
    ref: str
    digest: str
    name: str
    description: str


class PlatformOut(BaseModel):
    name: str
    description: str
    datatypes: list[str]
    backend: str
    operating_points: list[str]
    units: list[str]


class Error(BaseModel):
    detail: str | list


ERRORS = {s: {"model": Error} for s in (401, 404, 409, 413, 415, 422)}


# --- the application -----------------------------------------------------------------------------

def create_app(queue: Queue, token: str | None = None) -> FastAPI:
    app = FastAPI(title="ALOHA", version=version("aloha"),
                  description="Evaluations of DNNs on embedded platforms as jobs: predicted "
                              "figures, generated code, quantization, pruning, security curves, "
                              "design-space exploration and the orchestrated flow.")
    app.state.queue, app.state.token = queue, token
    res = queue.resources

    def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not given or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "a bearer token is required: Authorization: Bearer TOKEN "
                                     "(the server's data folder has it in the file 'token')",
                                headers={"WWW-Authenticate": "Bearer"})

    for exc, status in ((NotFound, 404), (Conflict, 409)):
        app.add_exception_handler(exc, lambda _r, e, s=status: JSONResponse(
            {"detail": str(e)}, status_code=s))
    app.add_exception_handler(BadReference, lambda _r, e: JSONResponse(
        {"detail": e.message}, status_code=e.status))
    app.add_exception_handler(Rejected, lambda _r, e: JSONResponse(
        {"detail": e.message}, status_code=e.status))

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid(_request, e: RequestValidationError | ValidationError):
        detail = [{k: v for k, v in err.items() if k in ("loc", "msg", "type")}
                  for err in e.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    api = Depends(authorised)

    @app.get("/health", response_model=Health, dependencies=[api], tags=["server"])
    def health():
        c = queue.counts()
        return Health(status="ok", launcher=c.pop("launcher"), workers=c.pop("workers"), jobs=c)

    @app.get("/version", response_model=Version, dependencies=[api], tags=["server"])
    def get_version():
        return Version(aloha=version("aloha"), api=API_VERSION, xdsl=version("xdsl"))

    @app.get("/platforms", response_model=list[PlatformOut], dependencies=[api],
             tags=["resources"])
    def platforms():
        return res.platforms()

    @app.get("/models", response_model=list[Listed], dependencies=[api], tags=["resources"])
    def models():
        return res.models()

    @app.get("/datasets", response_model=list[Listed], dependencies=[api], tags=["resources"])
    def datasets():
        return res.datasets()

    upload_doc = {"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}

    @app.post("/models", response_model=Stored, status_code=201, dependencies=[api],
              responses=ERRORS, openapi_extra=upload_doc, tags=["resources"])
    async def upload_model(request: Request, name: Annotated[str, Query(
            max_length=200, description="the file's name (shown in listings)")] = "model.onnx"):
        """Upload an ONNX model (the request body is the file). The importer must accept it;
        it is stored by the SHA-256 of its bytes and named model:DIGEST in job parameters."""
        tmp = await _receive(request, res, "models")
        return await run_in_threadpool(res.add_model, name, tmp)

    @app.post("/datasets", response_model=Stored, status_code=201, dependencies=[api],
              responses=ERRORS, openapi_extra=upload_doc, tags=["resources"])
    async def upload_dataset(request: Request, name: Annotated[str, Query(
            max_length=200)] = "data.npz"):
        """Upload an NPZ dataset: arrays x and y, or x_train, y_train, x_test, y_test."""
        tmp = await _receive(request, res, "datasets")
        return await run_in_threadpool(res.add_dataset, name, tmp)

    @app.post("/jobs", response_model=JobOut, status_code=201, dependencies=[api],
              responses={**ERRORS, 200: {"model": JobOut, "description": "the job already "
                                              "submitted with this id"}}, tags=["jobs"])
    def submit(request: JobRequest):
        job, new = queue.submit(request.kind, request.params.model_dump(mode="json"),
                                client_id=request.id, timeout=request.timeout,
                                use_cache=request.cache)
        return JSONResponse(JobOut.of(job).model_dump(mode="json"), status_code=201 if new
                            else 200)

    @app.get("/jobs", response_model=list[JobOut], dependencies=[api], tags=["jobs"])
    def list_jobs(state: Literal[STATES] | None = None,
                  kind: Literal[tuple(kinds.PARAMS)] | None = None,
                  parent: JobId | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=10**9)] = 0):
        return [JobOut.of(j) for j in queue.store.list(state, kind, parent, limit, offset)]

    @app.get("/jobs/{job_id}", response_model=JobOut, dependencies=[api], responses=ERRORS,
             tags=["jobs"])
    def get_job(job_id: JobId):
        return JobOut.of(queue.get(job_id))

    @app.post("/jobs/{job_id}/cancel", response_model=JobOut, dependencies=[api],
              responses=ERRORS, tags=["jobs"])
    def cancel(job_id: JobId):
        """Stop the job: a queued one never runs; a running one's processes are stopped
        (SIGTERM, then SIGKILL a second later). An ended job is returned unchanged."""
        return JobOut.of(queue.cancel(job_id))

    @app.delete("/jobs/{job_id}", status_code=204, dependencies=[api], responses=ERRORS,
                tags=["jobs"])
    def delete(job_id: JobId):
        """Cancel the job if it runs, then delete it, its stages and all their files."""
        queue.delete(job_id)

    @app.get("/jobs/{job_id}/events", dependencies=[api], responses=ERRORS, tags=["jobs"],
             response_class=StreamingResponse)
    async def job_events(job_id: JobId, request: Request,
                         last_event_id: Annotated[str | None, Header(max_length=50)] = None):
        """Server-sent events, from the job's start (or after Last-Event-ID): `state`,
        `progress`, `point` (a security curve point), `design_point` (an explored network),
        `log` (a line of the command's log) and a final `end`."""
        queue.get(job_id)
        start = _offsets(last_event_id)
        return StreamingResponse(_stream(queue, job_id, start, request),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/jobs/{job_id}/artefacts", response_model=list[Artefact], dependencies=[api],
             responses=ERRORS, tags=["jobs"])
    def artefacts(job_id: JobId):
        queue.get(job_id)
        out = queue.store.out(job_id)
        found = []
        for folder, _dirs, files in os.walk(out):
            for f in files:
                path = os.path.join(folder, f)
                if not f.startswith("."):
                    found.append(Artefact(path=os.path.relpath(path, out),
                                          bytes=os.path.getsize(path)))
        return sorted(found, key=lambda a: a.path)

    @app.get("/jobs/{job_id}/artefacts/{path:path}", dependencies=[api], responses=ERRORS,
             response_class=FileResponse, tags=["jobs"])
    def artefact(job_id: JobId, path: str):
        queue.get(job_id)
        full = within(queue.store.out(job_id), path)
        if not os.path.isfile(full):
            raise HTTPException(404, f"job {job_id} has no artefact '{path}'")
        return FileResponse(full, filename=os.path.basename(full))

    @app.get("/jobs/{job_id}/archive", dependencies=[api], responses=ERRORS,
             response_class=FileResponse, tags=["jobs"])
    def archive(job_id: JobId):
        """Every artefact of the job in one zip (a compile job's generated code among them)."""
        job = queue.get(job_id)
        fd, tmp = tempfile.mkstemp(suffix=".zip")
        os.close(fd)
        out = queue.store.out(job_id)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for folder, _dirs, files in os.walk(out):
                for f in files:
                    if not f.startswith("."):
                        path = os.path.join(folder, f)
                        z.write(path, os.path.join(f"{job.kind}-{job_id}",
                                                   os.path.relpath(path, out)))
        return FileResponse(tmp, filename=f"{job.kind}-{job_id}.zip",
                            background=BackgroundTask(os.unlink, tmp))

    if os.path.isfile(os.path.join(STATIC, "index.html")):
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="page")
    return app


async def _receive(request: Request, res, folder: str) -> str:
    """The request body into a temporary file, refused (413) as soon as it passes the limit,
    whatever size the client declared."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > res.max_upload:
        raise Rejected(res.too_large(int(declared)), 413)
    tmp = res.upload_file(folder)
    size = 0
    try:
        with open(tmp, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > res.max_upload:
                    raise Rejected(res.too_large(size), 413)
                f.write(chunk)
        if size == 0:
            raise Rejected("the request body is empty: send the file as the body", 422)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _offsets(last_event_id: str | None) -> tuple[int, int]:
    """Last-Event-ID 'E-L': byte offsets in the events file and the log."""
    try:
        e, _, l_ = (last_event_id or "").partition("-")
        return max(0, int(e)), max(0, int(l_))
    except ValueError:
        return 0, 0


async def _stream(queue: Queue, job_id: str, start: tuple[int, int], request: Request):
    import json
    ev_off, log_off = start
    events_path, log_path = queue.store.events_path(job_id), queue.store.log_path(job_id)
    last_state, ended_at = None, None
    while not queue.stopping.is_set():  # a server shutting down ends its streams: clients reconnect
        job = queue.store.get(job_id)
        got, ev_off = events.read(events_path, ev_off)
        lines, log_off = _read_lines(log_path, log_off)
        for e in got:
            last_state = e.get("state", last_state) if e.get("type") == "state" else last_state
            yield f"id: {ev_off}-{log_off}\nevent: {e.get('type', 'event')}\ndata: " \
                  f"{json.dumps(e)}\n\n"
        for line in lines:
            yield f"id: {ev_off}-{log_off}\nevent: log\ndata: {json.dumps({'line': line})}\n\n"
        if job is None or job.final:
            # the database changes first, the state event follows: end once it is read (or a
            # few reads later, for a stream resumed past it), with what the process wrote last
            ended_at = ended_at or asyncio.get_running_loop().time()
            late = asyncio.get_running_loop().time() - ended_at > 2.0
            if not got and not lines and (job is None or last_state == job.state or late):
                state = job.state if job is not None else "deleted"
                yield f"event: end\ndata: {json.dumps({'state': state})}\n\n"
                return
            await asyncio.sleep(0.05)
            continue
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.2)


def _read_lines(path: str, offset: int) -> tuple[list[str], int]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read(1 << 20)
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    return chunk[:end].decode(errors="replace").splitlines(), offset + end
