"""The command line: help, version, and errors as one line with an exit code."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from commpulse import __version__
from ingest import Event, Validator
from ingest.importers import open_file
from tests.cli import run_main

COMMANDS = [
    "broker",
    "topics",
    "ingest",
    "serve-ingest",
    "dlq",
    "simulate",
    "demo",
    "up",
    "stream",
    "kpis",
    "sink",
    "replay",
    "reconcile",
    "bench",
    "sql",
    "report",
    "publish",
    "quality",
    "import",
]


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    return run_main(capsys, monkeypatch, *args, columns=80)


def test_help_lists_every_command_with_a_whole_line_of_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, monkeypatch, "--help")
    assert code == 0
    listed = out.split("Commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in listed] == COMMANDS
    for line in listed:
        assert line.rstrip().endswith(".") and "..." not in line, line


def test_version(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, monkeypatch, "--version") == (0, f"commpulse {__version__}\n", "")


def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, monkeypatch, "no-such-command")
    assert code == 2 and "No such command" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("ingest", "/nonexistent/events.jsonl"),
            1,
            "error: /nonexistent/events.jsonl: no such file",
        ),
        (
            ("--config", "/nonexistent/c.toml", "topics"),
            1,
            "error: config file not found: /nonexistent/c.toml",
        ),
        (
            ("simulate", "--send", "--out", "x.jsonl"),
            2,
            "error: choose either --out FILE or --send, not both",
        ),
    ],
)
def test_errors_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    exit_code, _, err = run(capsys, monkeypatch, *args)
    assert (exit_code, err.strip()) == (code, message)


def test_bad_settings_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMMPULSE_TOPICS__EVENTS_PARTITIONS", "zero")
    code, _, err = run(capsys, monkeypatch, "--data-dir", str(tmp_path), "topics")
    assert code == 1
    assert (
        err.strip()
        == "error: invalid settings: topics.events_partitions: Input should be a valid integer, unable to parse string as an integer"
    )


@pytest.mark.parametrize(
    ("command", "what", "setting"),
    [
        (("serve-ingest", "--port"), "HTTP ingest", "ingest.port (COMMPULSE_INGEST__PORT)"),
        (
            ("stream", "--web-port"),
            "the stream worker's web server",
            "stream.web_port (COMMPULSE_STREAM__WEB_PORT)",
        ),
    ],
)
def test_a_taken_port_is_one_line_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: tuple[str, str],
    what: str,
    setting: str,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, monkeypatch, "--data-dir", str(tmp_path), *command, str(port))
    assert code == 1
    assert (
        err.strip()
        .splitlines()[0]
        .startswith(
            f"error: port {port} on 127.0.0.1 ({what}) is in use: stop what listens there, or set "
            f"{setting} to another port"
        )
    )
    assert not (tmp_path / "broker").exists()  # nothing started


def test_an_empty_file_is_one_line_and_nothing_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "events.jsonl").write_bytes(b"")
    code, out, err = run(
        capsys, monkeypatch, "--data-dir", str(tmp_path), "ingest", str(tmp_path / "events.jsonl")
    )
    assert (code, out) == (1, "")
    assert err.strip() == (
        f"error: {tmp_path / 'events.jsonl'}: the file is empty: there is nothing to ingest"
    )
    assert not (tmp_path / "broker").exists()


def test_unexpected_errors_are_one_line_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("commpulse.cli.cmd_ingest.open_file", explode)
    code, _, err = run(capsys, monkeypatch, "ingest", str(tmp_path / "x.jsonl"))
    assert code == 1
    assert (
        err.strip()
        == "error: unexpected RuntimeError: disk on fire (rerun with --debug for details)"
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".csv.gz", ".parquet"])
def test_simulate_writes_the_same_events_for_the_same_seed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str
) -> None:
    end = "2026-09-30T16:00:00+08:00"
    outputs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        path = tmp_path / f"{name}{suffix}"
        code, out, _ = run(
            capsys,
            monkeypatch,
            "simulate",
            "-n",
            "2000",
            "--seed",
            seed,
            "--end",
            end,
            "--out",
            str(path),
        )
        assert code == 0 and out.strip() == f"wrote 2,000 events to {path}"
        outputs.append(path)
    events = [list(open_file(path).records()) for path in outputs]
    assert [len(e) for e in events] == [2000, 2000, 2000]
    assert [r.data for r in events[0]] == [r.data for r in events[1]]
    assert [r.data for r in events[0]] != [r.data for r in events[2]]
    if suffix == ".jsonl":
        assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_simulate_to_stdout_is_jsonl(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, monkeypatch, "simulate", "-n", "25", "--end", "2026-09-30T00:00:00Z")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 25
    assert all(isinstance(Validator().from_json(line.encode()), Event) for line in lines)


def test_an_error_naming_a_path_with_brackets_prints_it_as_it_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # rich markup in what the user typed is text, in both ways an error is printed
    code, _, err = run(capsys, monkeypatch, "report", "--quarter", "[bold]2026Q5[/]")
    assert code == 2 and err.strip().startswith("error: invalid quarter '[bold]2026Q5[/]'")
    odd = tmp_path / "[bold]data[/]"
    code, _, err = run(capsys, monkeypatch, "--data-dir", str(odd), "sql", "SELECT 1")
    assert code == 1 and f"no warehouse at {odd / 'warehouse.duckdb'}" in err
