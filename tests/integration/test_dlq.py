"""`commpulse dlq` on the embedded broker: list, count, show, export, fix and replay."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from tests.integration.support import run_cli, simulated_values
from tests.integration.test_simulate_and_demo import counts_in, plain_env


def test_dead_letters_are_listed_counted_shown_and_a_fixed_input_replayed(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    valid = simulated_values(3, seed=31)
    missing = orjson.loads(valid[0])
    missing.pop("actor_id")
    missing["event_id"] = "9d4d6e4b-0a8e-4f5e-8c4b-1a2b3c4d5e6f"
    lines = [
        valid[0],
        orjson.dumps(missing),
        b'{"event_type": "ticket_opened", ',
        valid[1],
        orjson.dumps(missing | {"event_type": "carrier_pigeon_landed"}),
        valid[2],
    ]
    inputs = tmp_path / "events.jsonl"
    inputs.write_bytes(b"\n".join(lines) + b"\n")

    def cli(*args: str) -> tuple[int, str, str]:
        done = run_cli("--data-dir", str(data), *args, env=plain_env())
        return done.returncode, done.stdout, done.stderr

    code, _, _ = cli("ingest", str(inputs))
    assert code == 3  # something was dead-lettered

    code, out, err = cli("dlq")
    assert code == 0, err
    listed = out.splitlines()
    assert [line.split("  ")[0] for line in listed] == ["0:0", "0:1", "0:2"]
    assert [(line.split("  ")[2], line.split("  ")[3].split(":")[0:2]) for line in listed] == [
        ("missing_field", [f"{inputs.name}", "2"]),
        ("malformed_json", [f"{inputs.name}", "3"]),
        ("unknown_event_type", [f"{inputs.name}", "5"]),
    ]
    assert "actor_id" in listed[0]
    assert re.fullmatch(r"0:0  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  missing_field  .+", listed[0])
    assert err.strip() == "3 dead letters in commpulse.events.dlq"

    code, out, _ = cli("dlq", "--count")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert code == 0 and sorted(row[:3] for row in rows) == [
        ["malformed_json", inputs.name, "1"],
        ["missing_field", inputs.name, "1"],
        ["unknown_event_type", inputs.name, "1"],
    ]

    code, out, _ = cli("dlq", "--show", "0:2")
    assert code == 0
    shown = out.splitlines()
    assert shown[:2] == ["place: 0:2", "error: unknown_event_type"]
    assert shown[3] == f"source: {inputs.name}:5"
    assert shown[-1] == lines[4].decode()  # the input as it came

    fixed = tmp_path / "fixed.jsonl"
    code, out, _ = cli("dlq", "--error", "missing_field", "--export", str(fixed))
    assert code == 0 and out.startswith(f"1 inputs written to {fixed}; fix them, then: ")
    assert out.rstrip().endswith(f"dlq --replay {fixed}")
    [exported] = fixed.read_bytes().splitlines()
    assert exported == lines[1]
    fixed.write_bytes(orjson.dumps(orjson.loads(exported) | {"actor_id": "agent-7"}) + b"\n")
    code, out, err = cli("dlq", "--replay", str(fixed))
    assert code == 0, err
    assert "1 sent · 0 dead-lettered" in out
    assert counts_in(data) == {"commpulse.events": 4, "commpulse.events.dlq": 3}

    code, _, err = cli("dlq", "--show", "0:9")
    assert code == 1 and err.strip().startswith("error: no dead letter at 0:9")
    code, _, err = cli("dlq", "--count", "--show", "0:1")
    assert code == 2 and err.strip() == "error: choose one of --count, --show"
