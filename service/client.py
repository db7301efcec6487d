"""A small Python client of the ALOHA service (standard library only).

    from service.client import Client
    c = Client("http://127.0.0.1:8000")                  # token=... for a non-local server
    job = c.run("analyze", model="zoo:lenet5", target="neuraghe-losa")
    job["result"]["latency_s"]
    job = c.submit("security", model="zoo:digits_cnn", samples=50)
    for event in c.events(job["id"]):                     # state, progress, point, log, end
        print(event)
    c.download(job["id"], "security.png", "curve.png")

Errors from the server raise ServiceError with its status and message.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator


class ServiceError(Exception):
    def __init__(self, status: int, detail):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class Client:
    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float = 60.0):
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    # --- HTTP ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None,
                 content_type: str = "application/json", query: dict | None = None):
        url = self.url + path + ("?" + urllib.parse.urlencode(
            {k: v for k, v in (query or {}).items() if v is not None}) if query else "")
        req = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("detail")
            except ValueError:
                detail = e.reason
            raise ServiceError(e.code, detail) from None

    def _json(self, method: str, path: str, data=None, **query):
        body = json.dumps(data).encode() if data is not None else None
        with self._request(method, path, body, query=query) as r:
            text = r.read()
        return json.loads(text) if text else None

    # --- resources ----------------------------------------------------------------------------

    def health(self) -> dict:
        return self._json("GET", "/health")

    def version(self) -> dict:
        return self._json("GET", "/version")

    def platforms(self) -> list[dict]:
        return self._json("GET", "/platforms")

    def models(self) -> list[dict]:
        return self._json("GET", "/models")

    def datasets(self) -> list[dict]:
        return self._json("GET", "/datasets")

    def upload_model(self, path: str) -> str:
        """Upload an ONNX file; returns its reference (model:DIGEST) for job parameters."""
        return self._upload("/models", path)

    def upload_dataset(self, path: str) -> str:
        return self._upload("/datasets", path)

    def _upload(self, route: str, path: str) -> str:
        with open(path, "rb") as f:
            data = f.read()
        with self._request("POST", route, data, "application/octet-stream",
                           {"name": os.path.basename(path)}) as r:
            return json.loads(r.read())["ref"]

    # --- jobs ---------------------------------------------------------------------------------

    def submit(self, kind: str, id: str | None = None, timeout: float | None = None,
               cache: bool = True, **params) -> dict:
        request = {"kind": kind, "params": params, "cache": cache}
        if id is not None:
            request["id"] = id
        if timeout is not None:
            request["timeout"] = timeout
        return self._json("POST", "/jobs", request)

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{job_id}")

    def jobs(self, **filters) -> list[dict]:
        return self._json("GET", "/jobs", **filters)

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/jobs/{job_id}/cancel")

    def delete(self, job_id: str) -> None:
        self._json("DELETE", f"/jobs/{job_id}")

    def wait(self, job_id: str, timeout: float = 600.0, poll: float = 0.2) -> dict:
        """The job once it has ended (TimeoutError after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:g} s")
            time.sleep(poll)

    def run(self, kind: str, timeout: float = 600.0, **params) -> dict:
        """Submit and wait: the ended job (its `result`, or its `error`)."""
        return self.wait(self.submit(kind, **params)["id"], timeout)

    def events(self, job_id: str) -> Iterator[dict]:
        """The job's server-sent events as dicts with their `type`, until `end`."""
        with self._request("GET", f"/jobs/{job_id}/events") as r:
            kind, data = None, []
            for raw in r:
                line = raw.decode().rstrip("\n").rstrip("\r")
                if not line:
                    if data:
                        event = json.loads("\n".join(data))
                        event.setdefault("type", kind)
                        if kind in ("log", "end"):
                            event["type"] = kind
                        yield event
                        if kind == "end":
                            return
                    kind, data = None, []
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())

    def artefacts(self, job_id: str) -> list[dict]:
        return self._json("GET", f"/jobs/{job_id}/artefacts")

    def download(self, job_id: str, artefact: str, dest: str) -> str:
        """Save one artefact (a path under the job's outputs) to `dest`."""
        path = f"/jobs/{job_id}/artefacts/" + urllib.parse.quote(artefact)
        with self._request("GET", path) as r, open(dest, "wb") as f:
            f.write(r.read())
        return dest

    def archive(self, job_id: str, dest: str) -> str:
        """Every artefact of the job as a zip."""
        with self._request("GET", f"/jobs/{job_id}/archive") as r, open(dest, "wb") as f:
            f.write(r.read())
        return dest
