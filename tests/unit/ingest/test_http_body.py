"""How an HTTP body becomes inputs: one object, an array, or NDJSON."""

from __future__ import annotations

import orjson

from ingest.http import split_body
from tests.helpers import event_dict


def test_one_object_is_one_input_with_its_exact_bytes() -> None:
    body = b'{ "a": 1 }'
    [record] = split_body(body, "application/json")
    assert record.data == body and record.source == "http"


def test_an_array_is_one_input_per_element() -> None:
    body = orjson.dumps([event_dict(0), event_dict(1), 3])
    records = split_body(body, "application/json")
    assert [r.source for r in records] == ["http[0]", "http[1]", "http[2]"]
    assert orjson.loads(records[1].data) == event_dict(1)  # type: ignore[arg-type]
    assert records[2].data == b"3"


def test_ndjson_by_content_type_or_by_shape() -> None:
    body = orjson.dumps(event_dict(0)) + b"\n\n" + b"oops\r\n" + orjson.dumps(event_dict(1)) + b"\n"
    for content_type in ("application/x-ndjson", "", "application/json"):
        records = split_body(body, content_type)
        assert [r.source for r in records] == ["http:1", "http:3", "http:4"]
        assert records[1].data == b"oops"


def test_a_single_pretty_printed_object_is_not_split_into_lines() -> None:
    body = orjson.dumps(event_dict(0), option=orjson.OPT_INDENT_2)
    [record] = split_body(body, "application/json")
    assert record.data == body


def test_broken_json_on_one_line_is_one_input() -> None:
    [record] = split_body(b'{"event_id": [', "application/json")
    assert record.data == b'{"event_id": ['
