"""The peers' Kafka Connect configurations as the harness renders them."""

from __future__ import annotations

from benchmarks import report
from benchmarks.peers import debezium_connector, render, sink_connector


def properties(text: str) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def test_debezium_reads_the_outbox_of_the_stacks_database_into_the_bench_topic() -> None:
    config = properties(
        debezium_connector("debezium-0", "postgresql://catalog:secret@127.0.0.1:25433/catalog", "t")
    )
    assert config["database.hostname"] == "127.0.0.1"
    assert config["database.port"] == "25433"
    assert (config["database.user"], config["database.password"]) == ("catalog", "secret")
    assert config["database.dbname"] == "catalog"
    assert config["plugin.name"] == "pgoutput"
    assert config["table.include.list"] == "public.outbox"
    assert config["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    assert config["transforms.outbox.table.field.event.key"] == "aggregate_id"
    assert config["transforms.outbox.route.topic.replacement"] == "t"


def test_the_sink_replaces_one_document_per_aggregate() -> None:
    config = properties(sink_connector("sink", "t", "mongodb://127.0.0.1:27021/", "bench_k0"))
    assert config["topics"] == "t"
    assert config["database"] == "bench_k0"
    assert config["transforms.id.type"] == "org.apache.kafka.connect.transforms.ReplaceField$Value"
    assert config["transforms.id.renames"] == "aggregate_id:_id"
    assert config["writemodel.strategy"].endswith(".ReplaceOneDefaultStrategy")
    # Partitions side by side, as our projector applies them; each task writes a poll's records
    # in one bulk (the connector's default), which MongoDB and DocumentDB both take.
    assert config["tasks.max"] == "2"
    assert "max.batch.size" not in config


def test_the_worker_fills_every_placeholder() -> None:
    text = render("worker.properties", bootstrap="127.0.0.1:1", offsets="/o", rest_port="2")
    assert "${" not in text
    assert properties(text)["listeners"] == "http://127.0.0.1:2"


def test_the_report_puts_the_peers_beside_ours_and_says_when_one_was_not_measured() -> None:
    lines = report.peers(
        {
            "relay": {"eps": 10_000.0, "debezium_eps": 4_000.0, "p50_ms": 14.5, "p99_ms": 98.0},
            "projector": {"eps": 546.0, "sink_eps": None},
        }
    )
    relay = next(line for line in lines if line.startswith("| relay: ours vs Debezium (backlog)"))
    assert "10,000 events/s" in relay
    assert "4,000 events/s" in relay
    latency = next(line for line in lines if "(commit to topic, paced)" in line)
    assert "p50 14.50 ms, p99 98.00 ms" in latency
    assert "not measured" in latency
    sink = next(line for line in lines if line.startswith("| projector: ours vs sink connector"))
    assert "546 events/s" in sink
    assert "not measured" in sink
    described = next(line for line in lines if line.startswith("- **projector**"))
    assert "one bulk, its default" in described
