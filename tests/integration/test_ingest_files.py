"""`commpulse ingest`: valid events to Kafka, every invalid input to the DLQ with its reason."""

from __future__ import annotations

import gzip
import random
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from commpulse.settings import Settings
from ingest import DeadLetter, RejectCode, decode
from ingest.eventfiles import write_events
from ingest.pseudonym import PSEUDONYM_PATTERN
from tests.helpers import event_dict
from tests.integration.invalid_inputs import invalid_lines, valid_lines
from tests.integration.support import consume_all, run_cli

EXIT_DEAD_LETTERED = 3


def test_jsonl_with_1000_valid_and_100_invalid_lines(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    valid = valid_lines(1000)
    invalid = invalid_lines(100)
    lines = valid + [line for _, line in invalid]
    random.Random(7).shuffle(lines)
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = run_cli("ingest", str(path), env=cli_env)

    assert result.returncode == EXIT_DEAD_LETTERED, result.stderr
    assert "ingested 1,100 inputs from 1 file · 1,000 sent · 100 dead-lettered" in result.stdout
    assert "Traceback" not in result.stderr

    bootstrap = settings.kafka.bootstrap_servers
    events = consume_all(bootstrap, settings.topics.events)
    assert len(events) == 1000
    decoded = [decode(record.value) for record in events]
    assert {str(event.event_id) for event in decoded} == {
        orjson.loads(line)["event_id"] for line in valid
    }
    assert all(PSEUDONYM_PATTERN.fullmatch(event.actor_id) for event in decoded)
    assert all(
        record.key == event.channel_id.encode()
        for record, event in zip(events, decoded, strict=True)
    )
    assert all(
        record.timestamp == int(event.occurred_at.timestamp() * 1000)
        for record, event in zip(events, decoded, strict=True)
    )

    letters = [
        DeadLetter.from_record(r.value, r.headers)
        for r in consume_all(bootstrap, settings.topics.dlq)
    ]
    assert len(letters) == 100
    assert Counter(letter.rejection.code for letter in letters) == Counter(
        code for code, _ in invalid
    )
    # Every class a line can be rejected for on its own (a repeated id is tested below).
    assert set(Counter(code for code, _ in invalid)) == set(RejectCode) - {
        RejectCode.MALFORMED_ROW,
        RejectCode.DUPLICATE_EVENT_ID,
    }
    assert all(
        letter.rejection.reason and letter.source.startswith("mixed.jsonl:") for letter in letters
    )
    # Every rejected line is in the DLQ byte for byte (oversized ones: size kept, bytes complete here).
    assert sorted(letter.raw for letter in letters) == sorted(line for _, line in invalid)
    # ... and names the line it came from.
    assert all(lines[int(letter.source.split(":")[1]) - 1] == letter.raw for letter in letters)


def test_event_ids_repeated_within_a_file_are_dead_lettered_and_counted(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    lines = valid_lines(20)
    path = tmp_path / "dupes.jsonl"
    path.write_bytes(b"\n".join(lines + lines[:5]))
    result = run_cli("ingest", str(path), env=cli_env)
    assert result.returncode == EXIT_DEAD_LETTERED, result.stderr
    assert "20 sent · 5 dead-lettered (duplicate_event_id 5)" in result.stdout
    assert "dead-lettered dupes.jsonl:21: duplicate_event_id: event_id " in result.stderr
    assert "came earlier in this batch, at dupes.jsonl:1" in result.stderr
    assert len(consume_all(settings.kafka.bootstrap_servers, settings.topics.events)) == 20
    letters = [
        DeadLetter.from_record(r.value, r.headers)
        for r in consume_all(settings.kafka.bootstrap_servers, settings.topics.dlq)
    ]
    assert {letter.rejection.code for letter in letters} == {RejectCode.DUPLICATE_EVENT_ID}
    assert [letter.raw for letter in letters] == lines[:5]
    assert [letter.source for letter in letters] == [f"dupes.jsonl:{n}" for n in range(21, 26)]


def test_events_a_stream_worker_would_find_late_are_counted_and_warned_about(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def at(n: int, minutes: float, channel: str) -> bytes:
        return orjson.dumps(
            event_dict(n, when=start + timedelta(minutes=minutes), channel_id=channel)
        )

    # An export by ticket rather than by time: within a channel, two events go back more
    # than the 10 minutes of grace, one by 5 minutes only; another channel's earlier events
    # do not count, and neither does a later file's order against this one's.
    first = tmp_path / "a.jsonl"
    first.write_bytes(
        b"\n".join(
            [
                at(0, 60, "tk-1"),
                at(1, 55, "tk-1"),  # 5 min back: within grace
                at(2, 30, "tk-1"),  # 30 min back
                at(3, 0, "tk-2"),  # another channel
                at(4, 61, "tk-1"),
                at(5, 40, "tk-1"),  # 21 min back
            ]
        )
    )
    second = tmp_path / "b.jsonl"
    second.write_bytes(at(6, 90, "tk-2") + b"\n" + at(7, 62, "tk-1"))
    result = run_cli("ingest", str(first), str(second), env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "8 sent · 0 dead-lettered" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (  # after the progress bars
        "warning: 2 events are older than an event of their channel sent before them by more "
        "than the stream's grace (600 s), the first at a.jsonl:3: a stream worker drops them "
        "as late, the warehouse keeps them; send each channel's events in time order "
        "(docs/streams.md, 'Late events and final windows')"
    )
    assert len(consume_all(settings.kafka.bootstrap_servers, settings.topics.events)) == 8


def test_csv_and_parquet_files_in_one_run(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    csv_path = tmp_path / "events.csv"
    good = [event_dict(n, event_type="message_sent", recipient_count=n) for n in range(30)]
    columns = list(good[0])
    rows = [",".join(columns)] + [",".join(str(event[c]) for c in columns) for event in good]
    rows.append("only,three,fields")
    csv_path.write_text("\n".join(rows) + "\n")
    parquet_path = tmp_path / "events.parquet"
    write_events((parsed_times(event_dict(100 + n)) for n in range(40)), parquet_path)

    result = run_cli("ingest", str(csv_path), str(parquet_path), env=cli_env)

    assert result.returncode == EXIT_DEAD_LETTERED
    assert "from 2 files · 70 sent · 1 dead-lettered (malformed_row 1)" in result.stdout
    assert (
        "dead-lettered events.csv:32: malformed_row: row has 3 fields, the header has 11"
        in result.stderr
    )
    bootstrap = settings.kafka.bootstrap_servers
    sent = [decode(r.value) for r in consume_all(bootstrap, settings.topics.events)]
    assert sorted(e.recipient_count or 0 for e in sent if e.event_type == "message_sent") == list(
        range(30)
    )
    [letter] = [
        DeadLetter.from_record(r.value, r.headers)
        for r in consume_all(bootstrap, settings.topics.dlq)
    ]
    assert letter.raw == b"only,three,fields" and letter.source == "events.csv:32"


def parsed_times(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "occurred_at": datetime.fromisoformat(event["occurred_at"])}


def test_bad_files_fail_before_anything_is_sent(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(b"\n".join(valid_lines(5)))
    result = run_cli("ingest", str(good), str(tmp_path / "missing.jsonl"), env=cli_env)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.jsonl'}: no such file"
    assert consume_all(settings.kafka.bootstrap_servers, settings.topics.events) == []


def test_a_file_of_no_events_is_an_error_not_a_success(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    empty = tmp_path / "events.jsonl.gz"
    empty.write_bytes(gzip.compress(b""))  # not an empty file, but no line in it
    result = run_cli("ingest", str(empty), env=cli_env)
    assert result.returncode == 1
    assert result.stdout.startswith("ingested 0 inputs from 1 file · 0 sent · 0 dead-lettered")
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 1 file held no events: nothing was sent"
    )
    assert consume_all(settings.kafka.bootstrap_servers, settings.topics.events) == []


def test_a_cut_gz_file_sends_what_it_held_and_dead_letters_where_it_breaks_off(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A download cut short: its complete lines are ingested, the rest is reported (it used
    to end as an interrupt, exit 130, with no summary, after part of it was sent)."""
    packed = gzip.compress(b"\n".join(valid_lines(3000)) + b"\n")
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    complete = zlib.decompressobj(wbits=31).decompress(path.read_bytes()).count(b"\n")
    assert 0 < complete < 3000

    result = run_cli("ingest", str(path), env=cli_env)

    assert result.returncode == EXIT_DEAD_LETTERED, result.stderr
    assert "Traceback" not in result.stderr
    assert (
        f"ingested {complete + 1:,} inputs from 1 file · {complete:,} sent · 1 dead-lettered"
        in result.stdout
    )
    bootstrap = settings.kafka.bootstrap_servers
    assert len(consume_all(bootstrap, settings.topics.events)) == complete
    [letter] = [
        DeadLetter.from_record(r.value, r.headers)
        for r in consume_all(bootstrap, settings.topics.dlq)
    ]
    assert (letter.rejection.code, letter.source) == (
        RejectCode.MALFORMED_JSON,
        f"cut.jsonl.gz:{complete + 1}",
    )
    assert letter.rejection.reason.startswith("the file ends unreadably here: Compressed file")
