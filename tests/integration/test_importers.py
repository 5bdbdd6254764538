"""`commpulse import mbox|gharchive`: the real data through the real CLI into a real broker."""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import re
from collections import Counter
from pathlib import Path

import duckdb
import orjson
import pytest

from commpulse.settings import Settings
from ingest import DeadLetter, Event, RejectCode, decode
from ingest.pseudonym import PSEUDONYM_PATTERN
from tests.integration.stream_support import caught_up, worker
from tests.integration.support import consume_all, reconcile_summary, run_cli
from tests.integration.test_stream import stack

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
EXIT_DEAD_LETTERED = 3


def data_files(folder: str, pattern: str, expected: int) -> list[Path]:
    paths = sorted((DATA / folder).glob(pattern))
    if len(paths) != expected:
        pytest.skip(f"the shared real data is not at {(DATA / folder).resolve()}")
    return paths


def events_in(settings: Settings) -> list[tuple[bytes, Event]]:
    records = consume_all(settings.kafka.bootstrap_servers, settings.topics.events)
    return [(record.value, decode(record.value)) for record in records]


def mail_secrets(paths: list[Path]) -> set[bytes]:
    """Senders, subjects and Message-IDs of the archive, as the files hold them."""
    secrets: set[bytes] = set()
    for path in paths:
        for chunk in re.split(
            rb"\n(?=From .+  \w{3} \w{3} [ \d]\d [\d:]{8} \d{4}\nFrom: )", path.read_bytes()
        ):
            message = email.message_from_bytes(
                chunk.split(b"\n", 1)[1], policy=email.policy.compat32
            )
            sender = re.sub(r"\s*\([^()]*\)$", "", " ".join(str(message["From"]).split()))
            secrets.add(sender.encode())
            secrets.add(sender.lower().encode())
            subject = " ".join(str(message["Subject"]).split())
            if len(subject) >= 16:
                secrets.add(subject.encode())
            secrets.update(
                mid.encode() for mid in re.findall(r"<([^>]+)>", str(message["Message-ID"]))
            )
    return secrets


def test_mbox_archive_once_and_again(settings: Settings, cli_env: dict[str, str]) -> None:
    paths = data_files("r-package-devel", "*.mbox", 8)
    files = [str(path) for path in paths]

    first = run_cli("import", "mbox", *files, env=cli_env)

    assert first.returncode == 0, first.stderr
    assert "ingested 2,012 inputs from 8 files · 2,012 sent · 0 dead-lettered · " in first.stdout
    assert (
        "mbox: 2,013 messages in 8 files (1 repeated Message-ID, sent once) · 425 threads: 376"
        " requests"
        " opened, 341 answered, 49 started before these files · 0 malformed · 6 body lines"
        " starting with 'From ' kept in their message · 0 dates from the separator line"
        in first.stdout
    )
    stored = events_in(settings)
    assert len(stored) == 2012
    events = [event for _, event in stored]
    assert {e.channel_id for e in events} == {"email:r-package-devel"}
    assert sum(e.in_reply_to is None for e in events) == 376
    assert len({e.conversation_id for e in events}) == 425
    for event in events:
        for value in (event.actor_id, event.message_id, event.conversation_id):
            assert value is not None and PSEUDONYM_PATTERN.fullmatch(value)
    secrets = mail_secrets(paths)
    assert len(secrets) > 2000
    assert not [s for s in secrets for value, _ in stored if s in value]

    # Again, and every file twice in one run: the same ids, each message sent once.
    again = run_cli("import", "mbox", *files, *files, env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "ingested 2,012 inputs from 16 files · 2,012 sent · 0 dead-lettered · " in again.stdout
    assert "mbox: 4,026 messages in 16 files (2,014 repeated Message-IDs, sent once)" in (
        again.stdout
    )
    ids = Counter(event.event_id for _, event in events_in(settings))
    assert set(ids) == {e.event_id for e in events} and set(ids.values()) == {2}
    assert consume_all(settings.kafka.bootstrap_servers, settings.topics.dlq) == []

    # In the warehouse: each message once, a request per thread started in these files, and
    # a list that answers: most threads get a first response, between minutes and days.
    sunk = run_cli("sink", "--until-caught-up", env=cli_env)
    assert sunk.returncode == 0, sunk.stderr
    assert "4,024 events read: 2,012 stored, 2,012 duplicates" in sunk.stdout
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        [(requests, answered, median)] = con.execute(
            "SELECT count(*), count(first_response_at), median(first_response_s) "
            "FROM core.requests WHERE channel_id = 'email:r-package-devel'"
        ).fetchall()
        [(messages,)] = con.execute("SELECT count(*) FROM core.messages").fetchall()
    finally:
        con.close()
    print(f"r-package-devel: {requests} requests, {answered} answered, median {median:.0f} s")
    assert requests == 376 and messages == 2012
    assert answered / requests > 0.8
    assert 10 * 60 < median < 3 * 86400


def test_the_stream_drops_none_of_the_real_archive_and_agrees_with_the_warehouse(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    paths = data_files("r-package-devel", "*.mbox", 8)
    env, app_id = stack(cli_env)
    imported = run_cli("import", "mbox", *map(str, paths), env=env)
    assert imported.returncode == 0, imported.stderr
    assert "warning" not in imported.stderr  # no message late for the stream
    with worker(env, app_id=app_id) as running:
        health = caught_up(running, settings, app_id, 2012)
    # The archive keeps messages in the order they reached the list: 58 of them come more
    # than the stream's grace (10 min) after a message with a later Date, up to 57 hours.
    # Sent in file order, the stream dropped those as late; sent by Date, none is late.
    assert health["late_dropped"] == 0
    assert run_cli("sink", "--until-caught-up", env=env).returncode == 0
    reconciled = run_cli("reconcile", env=env)
    assert reconciled.returncode == 0, reconciled.stdout
    compared, different, _ = reconcile_summary(reconciled.stdout)
    assert different == 0 and compared > 5000, reconciled.stdout


def test_gharchive_hour_once_and_again(settings: Settings, cli_env: dict[str, str]) -> None:
    [path] = data_files("gharchive", "*.json.gz", 1)

    first = run_cli("import", "gharchive", str(path), env=cli_env)

    assert first.returncode == 0, first.stderr
    assert "ingested 1,174 inputs from 1 file · 1,174 sent · 0 dead-lettered" in first.stdout
    assert (
        "gharchive: 8,273 GitHub events in 1 file · 1,174 imported from 671 repositories"
        " (425 requests opened) · 7,099 skipped · 0 malformed" in first.stdout
    )
    assert "IssueCommentEvent/created → ticket_replied/agent: 382" in first.stdout
    assert "skipped: PushEvent 4,284 · WatchEvent/started 994" in first.stdout
    stored = events_in(settings)
    events = [event for _, event in stored]
    assert Counter(e.event_type.value for e in events) == {
        "ticket_opened": 236, "ticket_resolved": 119, "ticket_reopened": 6,
        "ticket_replied": 584, "post_submitted": 189, "post_reviewed": 40,
    }  # fmt: skip
    assert all(PSEUDONYM_PATTERN.fullmatch(e.actor_id) for e in events)

    # No login (outside the public repository names), title or body in any value.
    with gzip.open(path, "rt") as lines:
        raw = [json.loads(line) for line in lines]
    repositories = " ".join(item["repo"]["name"] for item in raw).encode()
    logins = {item["actor"]["login"].encode() for item in raw}
    texts = {
        text.encode()
        for item in raw
        for key in ("issue", "pull_request", "comment")
        for field in ("title", "body")
        if isinstance(text := (item["payload"].get(key) or {}).get(field), str) and len(text) >= 16
    }
    distinctive = [s for s in logins if len(s) >= 6 and s not in repositories]
    for value, event in stored:
        fields = orjson.loads(value)
        assert not logins & {str(v).encode() for v in fields.values()}
        outside = value.replace(event.channel_id.encode(), b"")
        assert not [s for s in distinctive if s in outside]
        assert not [s for s in texts if s in value]

    again = run_cli("import", "gharchive", str(path), str(path), env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "ingested 1,174 inputs from 2 files · 1,174 sent · 0 dead-lettered · " in again.stdout
    assert (
        "gharchive: 16,546 GitHub events in 2 files · 1,174 imported from 671 repositories"
        " (425 requests opened) · 14,198 skipped · 0 malformed · 1,174 repeated (sent once)"
        in again.stdout
    )
    ids = Counter(event.event_id for _, event in events_in(settings))
    assert set(ids) == {e.event_id for e in events} and set(ids.values()) == {2}


def test_a_malformed_message_is_reported_and_dead_lettered_as_a_pointer(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "team.mbox"
    path.write_text(
        "From ann at corp.example  Mon Jan  1 10:00:00 2024\n"
        "From: ann at corp.example (Ann Secret)\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n"
        "Subject: Budget question\nMessage-ID: <b1@corp.example>\n\nHow much?\n\n"
        "From ben at corp.example  Mon Jan  1 11:00:00 2024\n"
        "From: ben at corp.example (Ben Secret)\nDate: Mon, 1 Jan 2024 11:00:00 +0000\n"
        "Subject: Re: Budget question\nIn-Reply-To: <b1@corp.example>\n\nThis much.\n"
    )

    result = run_cli(
        "import", "mbox", str(path), "--channel", "email:team", "--scope", "internal", env=cli_env
    )

    assert result.returncode == EXIT_DEAD_LETTERED, result.stderr
    assert "1 sent · 1 dead-lettered (malformed_row 1)" in result.stdout
    assert "dead-lettered team.mbox:9: malformed_row: no Message-ID" in result.stderr
    assert "malformed team.mbox:9: no Message-ID" in result.stderr
    [(value, event)] = events_in(settings)
    assert (event.channel_id, event.scope.value, event.actor_role.value) == (
        "email:team", "internal", "customer",
    )  # fmt: skip
    [letter] = [
        DeadLetter.from_record(r.value, r.headers)
        for r in consume_all(settings.kafka.bootstrap_servers, settings.topics.dlq)
    ]
    assert (letter.rejection.code, letter.source) == (RejectCode.MALFORMED_ROW, "team.mbox:9")
    assert orjson.loads(letter.raw) == {
        "importer": "mbox", "source": "team.mbox:9", "reason": "no Message-ID",
    }  # fmt: skip
    for secret in (b"corp.example", b"Secret", b"Budget", b"much"):
        assert secret not in value and secret not in letter.raw

    bad = run_cli("import", "mbox", str(path), "--channel", "ann@corp.example", env=cli_env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: channel id 'ann@corp.example' is not valid")
