"""HTTP ingest over real TCP, into the real broker: auth, limits, formats, reasons."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import orjson
import pytest
import uvicorn

from commpulse.settings import Settings
from infra import free_port, kafka_reachable
from ingest import DeadLetter, Producer, Pseudonymiser, RejectCode, decode
from ingest.http import create_app
from tests.helpers import NOW, event_dict
from tests.integration.invalid_inputs import invalid_lines, valid_lines
from tests.integration.support import COMMPULSE, PSEUDONYM_KEY, consume_all, wait_for

TOKEN = "test-token-0123456789abcdef"
LIMIT = 256 * 1024


@dataclass
class Server:
    url: str
    settings: Settings

    def post(
        self, body: bytes, *, token: str | None = TOKEN, content_type: str = "application/json"
    ) -> httpx.Response:
        headers = {"content-type": content_type}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return httpx.post(f"{self.url}/v1/events", content=body, headers=headers, timeout=30)

    def events(self) -> list[bytes]:
        return [
            r.value
            for r in consume_all(self.settings.kafka.bootstrap_servers, self.settings.topics.events)
        ]

    def letters(self) -> list[DeadLetter]:
        records = consume_all(self.settings.kafka.bootstrap_servers, self.settings.topics.dlq)
        return [DeadLetter.from_record(r.value, r.headers) for r in records]


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    producer = Producer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        events_topic=settings.topics.events,
        dlq_topic=settings.topics.dlq,
        pseudonymiser=Pseudonymiser(PSEUDONYM_KEY.encode()),
        linger_ms=5,
    ).start()
    port = free_port()
    bootstrap = settings.kafka.bootstrap_servers
    app = create_app(
        producer,
        token=TOKEN,
        max_body_bytes=LIMIT,
        kafka_ok=lambda: kafka_reachable(bootstrap) is None,
        grace_s=settings.stream.grace_s,
    )
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", settings)
    finally:
        uv.should_exit = True
        thread.join(10)
        producer.close()


def test_one_event_is_accepted_with_202(server: Server) -> None:
    response = server.post(orjson.dumps(event_dict(1)))
    assert response.status_code == 202
    assert response.json() == {
        "received": 1,
        "accepted": 1,
        "dead_lettered": 0,
        "duplicates": 0,
        "undelivered": [],
        "failed": 0,
        "late_for_stream": 0,
        "errors": [],
    }
    [value] = server.events()
    assert str(decode(value).event_id) == event_dict(1)["event_id"]


def test_an_array_and_ndjson(server: Server) -> None:
    array = orjson.dumps([orjson.loads(line) for line in valid_lines(10)])
    assert server.post(array).json()["accepted"] == 10
    ndjson = b"\n".join(valid_lines(15, start=100))
    response = server.post(ndjson, content_type="application/x-ndjson")
    assert response.status_code == 202 and response.json()["accepted"] == 15
    assert len(server.events()) == 25


def test_bad_events_get_400_with_reasons_and_land_in_the_dlq(server: Server) -> None:
    bad = invalid_lines(12)
    body = b"\n".join(valid_lines(3) + [line for _, line in bad])
    response = server.post(body, content_type="application/x-ndjson")
    assert response.status_code == 400
    payload = response.json()
    assert (payload["received"], payload["accepted"], payload["dead_lettered"]) == (15, 3, 12)
    assert [(e["index"], e["code"]) for e in payload["errors"]] == [
        (3 + i, code.value) for i, (code, _) in enumerate(bad)
    ]
    assert all(e["reason"] for e in payload["errors"])
    assert len(server.events()) == 3
    letters = server.letters()
    assert sorted(letter.raw for letter in letters) == sorted(line for _, line in bad)
    assert {letter.source for letter in letters} == {f"http:{n}" for n in range(4, 16)}


def test_an_event_id_repeated_in_one_request_is_dead_lettered_with_the_first_s_place(
    server: Server,
) -> None:
    one = orjson.loads(valid_lines(1)[0])
    other = {**orjson.loads(valid_lines(1, start=7)[0]), "event_id": one["event_id"]}
    response = server.post(orjson.dumps([one, one, other]))
    assert response.status_code == 400
    payload = response.json()
    assert (payload["received"], payload["accepted"]) == (3, 1)
    assert (payload["dead_lettered"], payload["duplicates"]) == (2, 2)
    reason = f"event_id {one['event_id']} came earlier in this batch, at http[0]"
    assert payload["errors"] == [
        {"index": 1, "code": "duplicate_event_id", "reason": reason},
        {"index": 2, "code": "duplicate_event_id", "reason": reason},
    ]
    assert len(server.events()) == 1
    # Both are kept: the repeat, and the other event that reused the id.
    letters = sorted(server.letters(), key=lambda letter: letter.source)
    assert [(letter.source, str(letter.rejection)) for letter in letters] == [
        ("http[1]", f"duplicate_event_id: {reason}"),
        ("http[2]", f"duplicate_event_id: {reason}"),
    ]
    assert [orjson.loads(letter.raw) for letter in letters] == [one, other]


@pytest.mark.parametrize(
    "token", [None, "wrong-token-0123456789", TOKEN + "x", TOKEN.lower().upper()]
)
def test_without_the_right_token_nothing_is_produced(server: Server, token: str | None) -> None:
    response = server.post(orjson.dumps(event_dict(1)), token=token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert server.events() == [] and server.letters() == []


def test_a_body_over_the_limit_gets_413_and_nothing_is_produced(server: Server) -> None:
    body = b"\n".join(valid_lines(2000))
    assert len(body) > LIMIT
    response = server.post(body, content_type="application/x-ndjson")
    assert response.status_code == 413
    # Also without a Content-Length header (chunked upload).
    chunked = httpx.post(
        f"{server.url}/v1/events",
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/x-ndjson"},
        timeout=30,
    )
    assert chunked.status_code == 413
    assert server.events() == [] and server.letters() == []


def test_a_malformed_body_is_one_dead_letter(server: Server) -> None:
    response = server.post(b'{"event_id": [1, 2')
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == RejectCode.MALFORMED_JSON.value
    [letter] = server.letters()
    assert letter.raw == b'{"event_id": [1, 2'


def test_health_and_openapi_need_no_token(server: Server) -> None:
    health = httpx.get(f"{server.url}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "kafka": True}
    spec = httpx.get(f"{server.url}/openapi.json").json()
    post = spec["paths"]["/v1/events"]["post"]
    assert set(post["responses"]) >= {"202", "400", "401", "413", "503"}
    assert set(post["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert "event_type" in spec["components"]["schemas"]["Event"]["properties"]


def test_the_serve_ingest_command_generates_a_token_and_serves_until_ctrl_c(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    port = free_port()
    with subprocess.Popen(
        [COMMPULSE, "serve-ingest", "--port", str(port)],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        assert process.stdout is not None
        banner = process.stdout.readline()
        token_file = settings.data_dir / "secrets" / "ingest.token"
        assert banner.startswith(
            f"HTTP ingest on http://127.0.0.1:{port}/v1/events (token in {token_file})"
        )
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(url), timeout=15)
        token = token_file.read_text().strip()
        body = b"\n".join(valid_lines(5))
        headers = {"authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}
        response = httpx.post(f"{url}/v1/events", content=body, headers=headers, timeout=30)
        assert response.status_code == 202 and response.json()["accepted"] == 5
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "kafka": True}
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode in (0, 130) and "Traceback" not in err
    server = Server(url, settings)
    assert len(server.events()) == 5


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_events_a_stream_worker_would_find_late_are_counted_across_requests(
    server: Server,
) -> None:
    base = NOW - timedelta(hours=2)
    minutes = timedelta(minutes=1)
    first = server.post(
        orjson.dumps([event_dict(1, when=base), event_dict(2, when=base - 5 * minutes)])
    )
    assert first.status_code == 202 and first.json()["late_for_stream"] == 0  # within grace

    second = server.post(
        b"\n".join(
            orjson.dumps(event)
            for event in [
                event_dict(3, when=base - 30 * minutes),  # behind the first request's latest
                event_dict(4, when=base - 11 * minutes),  # ... by more than the 10-min grace
                event_dict(5, when=base - 30 * minutes, channel_id="another-channel"),  # its first
                event_dict(6, when=base + 60 * minutes),
                event_dict(7, when=base + 50 * minutes),  # exactly the grace behind: on time
            ]
        ),
        content_type="application/x-ndjson",
    )

    assert second.status_code == 202
    assert (second.json()["accepted"], second.json()["late_for_stream"]) == (5, 2)
    assert len(server.events()) == 7  # sent all the same: the warehouse keeps them
