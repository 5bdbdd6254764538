"""Batched partitioning puts every key where Kafka's default partitioner does."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams.keyed import default_partitions
from streams.records import record_key


def _kafka(keys: list[bytes], partitions: int) -> list[int]:
    every = list(range(partitions))
    return [DefaultPartitioner()(key, every, every) for key in keys]


@given(st.lists(st.binary(max_size=70), max_size=60), st.integers(1, 64))
def test_any_keys_go_to_the_partitions_aiokafka_picks(keys: list[bytes], partitions: int) -> None:
    assert default_partitions(keys, partitions) == _kafka(keys, partitions)


def test_kpi_record_keys_of_every_length_and_tail_go_where_they_always_went() -> None:
    keys = [
        record_key(channel, "ticket", "external", kpi, granularity, 1_700_000_000 + 3600 * hour)
        for channel in ("tk", "ticket-0042", "mail-queue-europe", None)
        for kpi in ("volume", "fcr_rate", "first_response_p90_business_s")
        for granularity in ("hour", "day")
        for hour in range(9)
    ]
    assert {len(key) % 4 for key in keys} == {0, 1, 2, 3}
    for partitions in (1, 3, 8, 12):
        assert default_partitions(keys, partitions) == _kafka(keys, partitions)


def test_no_keys_and_no_partitions() -> None:
    assert default_partitions([], 8) == []
    with pytest.raises(ValueError, match="a topic has at least one partition, got 0"):
        default_partitions([b"k"], 0)
