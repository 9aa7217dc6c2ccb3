"""The same gate on every front end: the shared queue bound (503 at once on both APIs, queue full on the page),
each caller's own /progress and /interrupt, the safety gate no field turns off, the key, and the host rule."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api_helpers import make_studio, until
from t2i.api.checks import check_api_start
from t2i.api.server import api_app
from t2i.studio import GenerateForm
from t2i.web.admission import QueueFull

ROOT = Path(__file__).resolve().parent.parent
ONE, OTHER = {"X-T2I-Client": "one"}, {"X-T2I-Client": "other"}


def asgi_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1", timeout=300)


@pytest.fixture(scope="module")
def studio(settings, engine, tmp_path_factory):
    return make_studio(settings, engine, tmp_path_factory.mktemp("gate-data"), queue_size=1)


def test_a_burst_past_the_queue_gets_503_at_once_while_accepted_jobs_finish(studio):
    """One job runs (held at the model's lock), one waits (queue size 1): the rest are refused on every front end
    while those two are still unfinished, and both finish afterwards."""
    app, model_lock = api_app(studio), studio.engine.models.get("embedded").lock
    small = {"prompt": "a red circle", "steps": 4, "seed": 1}  # a fixed seed: an image the checkers pass

    async def burst():
        async with asgi_client(app) as http:
            accepted = [asyncio.create_task(http.post("/sdapi/v1/txt2img", json=small, headers=ONE)),
                        asyncio.create_task(http.post("/v1/images/generations", json=small, headers=OTHER))]
            await until(lambda: _async(studio.admission.counts() == (1, 1)))
            refused = await asyncio.gather(*[http.post("/sdapi/v1/txt2img", json=small) for _ in range(3)],
                                           *[http.post("/v1/images/generations", json=small) for _ in range(3)])
            assert not any(task.done() for task in accepted)  # refused while the accepted ones still wait
            with pytest.raises(QueueFull, match="the server is busy"):  # the page's path: the same bound
                next(studio.generate(GenerateForm(**small), "page-session"))
            model_lock.release()
            return refused, [await task for task in accepted]

    model_lock.acquire()
    try:
        refused, accepted = asyncio.run(burst())
    finally:
        if model_lock.locked():
            model_lock.release()
    assert [answer.status_code for answer in refused] == [503] * 6
    assert "the server is busy" in refused[0].json()["detail"]
    assert refused[3].json()["error"] == {"message": refused[3].json()["error"]["message"], "type": "server_error",
                                          "param": None, "code": "server_busy"}
    assert [answer.status_code for answer in accepted] == [200, 200], [answer.text[:300] for answer in accepted]
    assert len(accepted[0].json()["images"]) == 1 and len(accepted[1].json()["data"]) == 1
    assert studio.admission.counts() == (0, 0)


def test_each_caller_sees_and_interrupts_only_its_own_job(studio):
    app = api_app(studio)

    async def scenario():
        async with asgi_client(app) as http:
            async def progress(headers):
                return (await http.get("/sdapi/v1/progress", headers=headers)).json()

            # the other caller's job runs, and shows its live preview to that caller only
            job = asyncio.create_task(http.post("/sdapi/v1/txt2img", json={
                "prompt": "a blue square", "steps": 12, "seed": 3}, headers=OTHER))
            seen = await until(lambda: _when(progress(OTHER), lambda state: state["current_image"]))
            assert seen["state"]["job_count"] == 1 and 0 < seen["progress"] < 1
            mine = await progress(ONE)
            assert mine["state"]["job_count"] == 0 and mine["current_image"] is None
            # one caller's interrupt (SillyTavern's, as its user leaves) stops nothing of the other's
            assert (await http.post("/sdapi/v1/interrupt", headers=ONE)).json() == {"interrupted": 0}
            assert (await http.post("/sdapi/v1/skip", headers=ONE)).json() == {"interrupted": 0}
            finished = await job
            # a caller's own interrupt stops its own job
            job = asyncio.create_task(http.post("/sdapi/v1/txt2img", json={
                "prompt": "a blue square", "steps": 150, "seed": 3}, headers=ONE))
            await until(lambda: _when(progress(ONE), lambda state: state["state"]["sampling_step"] > 0))
            assert (await http.post("/sdapi/v1/interrupt", headers=ONE)).json() == {"interrupted": 1}
            return seen, finished, await job

    seen, finished, interrupted = asyncio.run(scenario())
    assert base64.b64decode(seen["current_image"]).startswith(b"\x89PNG")
    assert finished.status_code == 200 and len(finished.json()["images"]) == 1
    assert json.loads(finished.json()["info"])["steps"] == 12
    assert interrupted.status_code == 200 and interrupted.json()["images"] == []
    assert json.loads(interrupted.json()["info"])["interrupted"] is True


def test_a_refused_prompt_is_an_error_on_both_apis_and_nothing_is_written(studio):
    client = TestClient(api_app(studio))
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a n4k3d woman", "steps": 2})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("this prompt was refused by the content policy")
    # OpenAI's moderation field is accepted, and changes nothing
    answer = client.post("/v1/images/generations", json={"prompt": "a n4k3d woman", "moderation": "low"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "content_policy_violation"
    assert not list(studio.settings.data_dir.rglob("*.png"))


@pytest.mark.parametrize("route, body, status, message", [
    ("/sdapi/v1/txt2img", {"safety_checker": False}, 422, "unknown field(s) for this A1111 route: safety_checker"),
    ("/sdapi/v1/txt2img", {"override_settings": {"safety_action": "blur"}}, 422, "override_settings.safety_action"),
    ("/sdapi/v1/options", {"safety_checker": False}, 422, "t2i keeps no server options"),
    ("/v1/images/generations", {"safety": False}, 400, "unknown parameter(s): safety"),
    ("/v1/images/generations", {"nsfw": True, "safety_checker": None}, 400, "unknown parameter(s): nsfw"),
])
def test_no_field_turns_safety_off(studio, route, body, status, message):
    answer = TestClient(api_app(studio)).post(route, json={"prompt": "a n4k3d woman", **body})
    assert answer.status_code == status
    assert message in json.dumps(answer.json())


def test_the_key_is_required_when_set(settings, engine, tmp_path):
    client = TestClient(api_app(make_studio(settings, engine, tmp_path, api_key="s3cret")))
    for method, route in (("GET", "/sdapi/v1/options"), ("POST", "/sdapi/v1/txt2img"), ("GET", "/v1/models"),
                          ("POST", "/v1/images/generations"), ("POST", "/sdapi/v1/interrupt")):
        answer = client.request(method, route, json={"prompt": "a red circle"})
        assert answer.status_code == 401, route
        assert "T2I_API_KEY" in answer.text
    assert client.post("/v1/images/generations", json={"prompt": "x"}).json()["error"]["type"] == \
        "authentication_error"
    bearer, wrong = {"Authorization": "Bearer s3cret"}, {"Authorization": "Bearer nope"}
    basic = {"Authorization": "Basic " + base64.b64encode(b"tavern:s3cret").decode()}
    assert client.get("/sdapi/v1/options", headers=bearer).status_code == 200
    assert client.get("/sdapi/v1/options", headers=basic).status_code == 200  # Open WebUI's and SillyTavern's way
    assert client.get("/sdapi/v1/options", headers=wrong).status_code == 401
    assert client.get("/v1/models", headers=bearer).status_code == 200
    assert client.get("/v1/models", headers=basic).status_code == 401  # the OpenAI API takes Bearer keys only


def test_the_rate_limit_counts_every_api_and_answers_429(settings, engine, tmp_path):
    client = TestClient(api_app(make_studio(settings, engine, tmp_path, rate_limit_per_minute=1)))
    first = client.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "steps": -1})  # counted, then refused
    assert first.status_code == 400
    again = client.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "steps": 1})
    assert again.status_code == 429 and "too many requests" in again.json()["detail"]
    other_api = client.post("/v1/images/generations", json={"prompt": "a red circle", "steps": 1})
    assert other_api.status_code == 429 and other_api.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_start_beyond_loopback_without_a_key_refuses():
    loopback = ("127.0.0.1", "localhost")
    with pytest.raises(SystemExit, match="set T2I_API_KEY"):
        check_api_start("0.0.0.0", "", loopback)
    check_api_start("0.0.0.0", "s3cret", loopback)
    check_api_start("127.0.0.1", "", loopback)


def test_a_loopback_server_answers_loopback_and_the_allowed_host_names_only(studio):
    spec = importlib.util.spec_from_file_location("t2i_app", ROOT / "app.py")
    app_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app_module)
    settings = studio.settings.__class__(**{**_values(studio.settings), "allowed_hosts": ("host.docker.internal",)})
    client = TestClient(api_app(studio, **app_module.app_options(settings)))
    for host, status in (("127.0.0.1", 200), ("localhost", 200), ("host.docker.internal", 200),
                         ("attacker.example", 400)):
        assert client.get("/sdapi/v1/options", headers={"Host": host}).status_code == status, host


async def _async(value):
    return value


async def _when(state, test):
    state = await state
    return state if test(state) else None


def _values(settings) -> dict:
    return {name: getattr(settings, name) for name in settings.__pydantic_fields__}
