"""The industry's peers of two stages, run by the harness in Kafka Connect standalone.

- The relay's: Debezium's PostgreSQL connector (logical replication, pgoutput) with its outbox
  event router, reading our outbox table and publishing to a bench topic.
- The projector's: MongoDB's Kafka sink connector, replacing one document per event by id.

The jars come from Maven Central through benchmarks/peers/pom.xml, cached under
~/.cache/catalog-cqrs/peers (nothing is committed but the pom and the .properties templates);
each peer is one ConnectStandalone JVM the harness starts and stops around its measurement.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from benchmarks.common import OUT_DIR, REPO, Service, free_port, say

CONFIGS = REPO / "benchmarks" / "peers"
POM = CONFIGS / "pom.xml"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "catalog-cqrs" / "peers"
SLOT = "bench_debezium"  # the replication slot and the publication of the Debezium peer
STARTUP_SECONDS = 180  # a JVM scanning 80 jars for plugins, on a busy machine


def libs() -> Path:
    """The peers' classpath, resolved once per pom (a changed pom resolves afresh)."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    target = CACHE / f"libs-{digest}"
    if target.is_dir():
        return target
    staging = CACHE / f"libs-{digest}.partial.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    say(f"peers: resolving Kafka Connect, Debezium and the MongoDB sink into {target}")
    try:
        subprocess.run(
            [
                *(os.environ.get("MVN", "mvn"), "-q", "-B", "-f", str(POM)),
                *("dependency:copy-dependencies", f"-Dpeers.libs={staging}"),
            ],
            check=True,
            timeout=900,
        )
        staging.rename(target)  # only a complete fetch becomes the cache
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def render(template: str, **values: str) -> str:
    """One of benchmarks/peers/*.properties with its ${...} filled in."""
    return Template((CONFIGS / template).read_text()).substitute(values)


class Connect:
    """One Kafka Connect standalone worker running one connector; stop() ends it gracefully."""

    def __init__(self, name: str, bootstrap: str, connector: str) -> None:
        self.name = name
        work = OUT_DIR / "peers" / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self._port = free_port()
        worker = work / "worker.properties"
        worker.write_text(
            render(
                "worker.properties",
                bootstrap=bootstrap,
                offsets=str(work / "offsets"),
                rest_port=str(self._port),
            )
        )
        (work / "connector.properties").write_text(connector)
        argv = [
            "java",
            *os.environ.get("BENCH_PEER_JAVA_OPTS", "-Xms256m -Xmx768m").split(),
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            *("-cp", f"{libs()}/*"),
            "org.apache.kafka.connect.cli.ConnectStandalone",
            *(str(worker), str(work / "connector.properties")),
        ]
        self._service = Service(name, argv, {})

    def status(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self._port}/connectors/{self.name}/status"
        with urllib.request.urlopen(url, timeout=5) as response:
            status: dict[str, object] = json.loads(response.read())
            return status

    def wait_running(self) -> None:
        """Until the connector's task runs (a failed task's trace is raised)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if not self._service.alive():
                raise RuntimeError(f"peer {self.name} exited; see .run/bench/logs/{self.name}.log")
            with contextlib.suppress(OSError, ValueError):
                tasks = self.status().get("tasks") or []
                states = [task.get("state") for task in tasks]  # type: ignore[attr-defined]
                if states and all(state == "RUNNING" for state in states):
                    return
                if "FAILED" in states:
                    raise RuntimeError(f"peer {self.name} failed: {str(tasks)[:2000]}")
            time.sleep(0.5)
        raise RuntimeError(f"peer {self.name} not running after {STARTUP_SECONDS}s")

    def stop(self) -> None:
        self._service.stop()


def debezium_connector(name: str, dsn: str, topic: str) -> str:
    url = urlsplit(dsn)
    return render(
        "debezium-outbox.properties",
        name=name,
        host=url.hostname or "127.0.0.1",
        port=str(url.port or 5432),
        user=url.username or "",
        password=url.password or "",
        dbname=url.path.lstrip("/"),
        slot=SLOT,
        topic=topic,
    )


def sink_connector(name: str, topic: str, mongodb_url: str, database: str) -> str:
    return render(
        "mongo-sink.properties", name=name, topic=topic, mongodb_url=mongodb_url, database=database
    )


@contextlib.contextmanager
def debezium(name: str, topic: str, dsn: str, bootstrap: str) -> Iterator[None]:
    """Debezium streaming the outbox's inserts to `topic` while the block runs.

    The publication (inserts of `outbox` only) and the slot exist only meanwhile: a slot left
    behind would make PostgreSQL keep all WAL from then on.
    """
    from benchmarks.stages import sql

    drop_replication(dsn)
    sql(dsn, f"CREATE PUBLICATION {SLOT} FOR TABLE outbox WITH (publish = 'insert')")
    peer = None
    try:
        peer = Connect(name, bootstrap, debezium_connector(name, dsn, topic))
        peer.wait_running()
        wait_streaming(dsn)
        yield
    finally:
        if peer is not None:
            peer.stop()
        drop_replication(dsn)


def wait_streaming(dsn: str) -> None:
    """Until Debezium's walsender holds the slot: rows committed from then on are captured."""
    from benchmarks.stages import sql, wait_for

    query = "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1"
    wait_for("Debezium's replication slot", lambda: bool(sql(dsn, query, SLOT)), STARTUP_SECONDS)


def drop_replication(dsn: str) -> None:
    from benchmarks.stages import sql, wait_for

    query = "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1"
    wait_for("Debezium's slot released", lambda: not sql(dsn, query, SLOT), 60)
    sql(
        dsn,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
        SLOT,
    )
    sql(dsn, f"DROP PUBLICATION IF EXISTS {SLOT}")


@contextlib.contextmanager
def mongo_sink(
    name: str, topic: str, bootstrap: str, mongodb_url: str, database: str
) -> Iterator[str]:
    """The MongoDB sink connector consuming `topic` from the start; yields its consumer group."""
    peer = Connect(name, bootstrap, sink_connector(name, topic, mongodb_url, database))
    try:
        peer.wait_running()
        yield f"connect-{name}"  # a sink connector's group is "connect-" and its name
    finally:
        peer.stop()
