"""`commpulse topics`: create, idempotent, mismatches reported clearly."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from commpulse.settings import Settings
from infra import EmbeddedBroker
from tests.integration.support import run_cli


def fresh_names(cli_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """The fixture already created the test's topics; these five are new."""
    prefix = settings.topics.events.removesuffix(".events") + "x"
    return cli_env | {
        "COMMPULSE_TOPICS__EVENTS": f"{prefix}.events",
        "COMMPULSE_TOPICS__DLQ": f"{prefix}.events.dlq",
        "COMMPULSE_TOPICS__KPIS": f"{prefix}.kpis",
        "COMMPULSE_TOPICS__ALERTS": f"{prefix}.alerts",
        "COMMPULSE_TOPICS__PACKED": f"{prefix}.events.packed",
    }


def test_topics_are_created_with_partitions_and_retention_then_verified(
    broker: EmbeddedBroker, settings: Settings, cli_env: dict[str, str]
) -> None:
    env = fresh_names(cli_env, settings)
    first = run_cli("topics", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == 5

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        events = env["COMMPULSE_TOPICS__EVENTS"]
        partitions = {
            t["name"]: len(t["partitions"])
            for t in admin.describe_topics([events, env["COMMPULSE_TOPICS__DLQ"]])
        }
        assert partitions == {events: 8, env["COMMPULSE_TOPICS__DLQ"]: 1}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, events)])
        assert configs["topic"][events]["retention.ms"]["value"] == "-1"
    finally:
        admin.close()

    again = run_cli("topics", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(" ok ") == 5 and "created" not in again.stdout


def test_a_partition_mismatch_is_reported_in_one_line_with_exit_1(
    settings: Settings, cli_env: dict[str, str]
) -> None:
    # The fixture created the events topic with 8 partitions; now the settings say 4.
    result = run_cli("topics", env=cli_env | {"COMMPULSE_TOPICS__EVENTS_PARTITIONS": "4"})
    assert result.returncode == 1
    assert "has 8 partitions, expected 4" in result.stdout
    expected = (
        f"error: 1 topic(s) do not match the settings ({settings.topics.events}); "
        "fix the settings or recreate the topics"
    )
    assert result.stderr.strip().splitlines() == [expected]
    assert "Traceback" not in result.stderr
