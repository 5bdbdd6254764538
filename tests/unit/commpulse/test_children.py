"""A child's log tail comes from the end of the file, however large the file is."""

from __future__ import annotations

from pathlib import Path

from commpulse.children import Child


def test_tail_reads_the_last_lines_of_a_large_log(tmp_path: Path) -> None:
    log = tmp_path / "stream.log"
    with log.open("w") as out:
        for n in range(200_000):  # about 5 MB
            out.write(f"line {n} {'x' * 20}\n")
        out.write("Traceback (most recent call last): the end\n")
    child = Child("stream", ["stream"], env={}, log_path=log)
    assert child.tail(1) == "Traceback (most recent call last): the end"
    assert child.tail(3).splitlines()[0] == f"line 199998 {'x' * 20}"
    assert child.tail(1, window=10) == ": the end"  # the window cuts the line it starts in


def test_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert Child("sink", ["sink"], env={}, log_path=tmp_path / "none.log").tail() == ""
