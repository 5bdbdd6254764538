"""File importers: every row or line becomes exactly one record, bad ones included."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from ingest import Event, InputError, RejectCode, Rejection, Validator
from ingest.eventfiles import write_events
from ingest.importers import CsvFile, JsonLinesFile, ParquetFile, open_file
from ingest.producer import Record
from tests.helpers import NOW, event_dict

validator = Validator(clock=lambda: NOW)


def read_all(path: Path, fmt: str | None = None) -> list[Record]:
    source = open_file(path, fmt)  # type: ignore[arg-type]
    records = list(source.records())
    assert source.done == source.total
    return records


def outcome(record: Record) -> Event | Rejection:
    if isinstance(record.data, Rejection):
        return record.data
    if isinstance(record.data, bytes):
        return validator.from_json(record.data)
    assert isinstance(record.data, dict)
    return validator.from_mapping(record.data)


def test_jsonl_lines_keep_their_bytes_and_numbers(tmp_path: Path) -> None:
    lines = [orjson.dumps(event_dict(0)), b"", b"not json", b"   ", orjson.dumps(event_dict(1))]
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\r\n".join(lines) + b"\n")
    records = read_all(path)
    assert [r.source for r in records] == ["e.jsonl:1", "e.jsonl:3", "e.jsonl:5"]
    assert records[1].data == b"not json"
    assert [type(outcome(r)).__name__ for r in records] == ["Event", "Rejection", "Event"]


def test_gzipped_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(orjson.dumps(event_dict(n)) for n in range(50))))
    records = read_all(path)
    assert len(records) == 50 and all(isinstance(outcome(r), Event) for r in records)


def test_csv_rows_good_and_bad(tmp_path: Path) -> None:
    good = event_dict(0)
    other = event_dict(1, event_type="message_sent", recipient_count=12)
    text = (
        f"event_id,event_type,occurred_at,channel_id,channel_kind,scope,actor_id,actor_role,message_id,recipient_count\n"
        f'{other["event_id"]},message_sent,{other["occurred_at"]},im-1,im,internal,"bob, jr",employee,m-2,12\n'
        f"{good['event_id']},message_read,{good['occurred_at']},im-1,im,internal,x,employee\n"  # 8 of 10 fields
        f"{good['event_id']},message_read,{good['occurred_at']},im-1,im,internal,x,employee,m-3,,\n"  # 11 fields
        f"{good['event_id']},message_read,{good['occurred_at']},im-1,im,internal,x,employee,,\n"  # missing message_id
        "\n"
        f'{good["event_id"]},message_read,{good["occurred_at"]},im-1,im,internal,x,employee,m-4,"multi\nline"\n'
    )
    path = tmp_path / "e.csv"
    path.write_bytes(text.encode() + b"\xff\xfe,bad,bytes,,,,,,,\n")
    records = read_all(path)
    assert [r.source for r in records] == [
        "e.csv:2",
        "e.csv:3",
        "e.csv:4",
        "e.csv:5",
        "e.csv:7",
        "e.csv:9",
    ]
    results = [outcome(r) for r in records]
    first = results[0]
    assert isinstance(first, Event) and first.recipient_count == 12 and first.actor_id == "bob, jr"
    assert results[1] == Rejection(RejectCode.MALFORMED_ROW, "row has 8 fields, the header has 10")
    assert results[2] == Rejection(RejectCode.MALFORMED_ROW, "row has 11 fields, the header has 10")
    assert isinstance(results[3], Rejection) and results[3].code is RejectCode.MISSING_FIELD
    assert isinstance(results[4], Rejection) and results[4].code is RejectCode.WRONG_TYPE
    assert isinstance(results[5], Rejection) and results[5].code is RejectCode.INVALID_ENCODING
    # The raw bytes of each row are kept exactly, for the dead-letter topic.
    assert records[1].raw == text.splitlines()[2].encode()
    assert records[5].raw == b"\xff\xfe,bad,bytes,,,,,,,"
    assert records[4].raw is not None and b"multi\nline" in records[4].raw


def test_csv_unterminated_quote_goes_to_one_bad_record_not_lost(tmp_path: Path) -> None:
    good = event_dict(0)
    path = tmp_path / "e.csv"
    path.write_text(
        ",".join(good) + "\n" + '"unterminated,' + ",".join(["x"] * 9) + "\n" + "last,row\n"
    )
    records = read_all(path)
    assert len(records) == 1
    assert (
        isinstance(records[0].data, Rejection) and records[0].data.code is RejectCode.MALFORMED_ROW
    )
    assert records[0].raw is not None and records[0].raw.endswith(b"last,row")


def test_csv_with_unknown_or_missing_columns_fails_before_anything_is_read(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("event_id,subject\n1,hello\n")
    with pytest.raises(InputError, match="unknown column"):
        open_file(path)
    path.write_text("event_id,event_type\n")
    with pytest.raises(InputError, match="missing column"):
        open_file(path)


def test_parquet_round_trip_through_the_writer(tmp_path: Path) -> None:
    rows = [
        {**event_dict(n), "occurred_at": datetime(2026, 1, 1, 9, n, tzinfo=UTC)} for n in range(30)
    ]
    rows[5]["event_type"] = "message_sent"
    rows[5]["recipient_count"] = 40
    rows[7]["event_type"] = "meeting_held"
    rows[7]["duration_s"] = 1800.5
    path = tmp_path / "e.parquet"
    assert write_events(iter(rows), path) == 30
    records = read_all(path)
    assert [r.source for r in records][:2] == ["e.parquet:row 1", "e.parquet:row 2"]
    events = [outcome(r) for r in records]
    assert all(isinstance(e, Event) for e in events)
    assert [str(e.event_id) for e in events] == [r["event_id"] for r in rows]  # type: ignore[union-attr]
    assert events[5].recipient_count == 40 and events[7].duration_s == 1800.5  # type: ignore[union-attr]
    assert events[3].occurred_at == datetime(2026, 1, 1, 9, 3, tzinfo=UTC)  # type: ignore[union-attr]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".csv", ".csv.gz", ".parquet"])
def test_writer_and_readers_agree_for_every_format(tmp_path: Path, suffix: str) -> None:
    rows = [{**event_dict(n), "occurred_at": datetime(2026, 1, 1, tzinfo=UTC)} for n in range(10)]
    path = tmp_path / f"e{suffix}"
    write_events(iter(rows), path)
    events = [outcome(r) for r in read_all(path)]
    assert [str(e.event_id) for e in events if isinstance(e, Event)] == [
        r["event_id"] for r in rows
    ]


def test_unknown_suffix_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        open_file(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputError, match="--format"):
        open_file(tmp_path / "x.txt")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet"):
        open_file(tmp_path / "bad.parquet")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="empty.jsonl: the file is empty: there is nothing to"):
        open_file(tmp_path / "empty.jsonl")


def test_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "events.txt"
    path.write_bytes(orjson.dumps(event_dict()))
    assert isinstance(open_file(path, "jsonl"), JsonLinesFile)
    assert {CsvFile.__name__, ParquetFile.__name__} == {"CsvFile", "ParquetFile"}  # exported


@pytest.mark.parametrize("name", ["cut.csv.gz", "cut.jsonl.gz"])
def test_a_cut_gz_file_yields_its_complete_rows_then_one_malformed_input(
    tmp_path: Path, name: str
) -> None:
    whole = tmp_path / name.replace("cut", "whole")
    write_events([event_dict(n) for n in range(3000)], whole)
    packed = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(packed[: len(packed) // 2])
    text = zlib.decompressobj(wbits=31).decompress(path.read_bytes())
    header = 1 if name.endswith(".csv.gz") else 0
    complete = text.count(b"\n") - header  # rows or lines read whole
    records = read_all(path)
    assert len(records) == complete + 1
    assert all(isinstance(outcome(record), Event) for record in records[:-1])
    last = records[-1].data
    assert isinstance(last, Rejection)
    assert last.code is (RejectCode.MALFORMED_ROW if header else RejectCode.MALFORMED_JSON)
    assert last.reason.startswith("the file ends unreadably here: Compressed file ended")
    assert records[-1].source == f"{name}:{complete + header + 1}"
