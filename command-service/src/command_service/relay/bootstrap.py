"""Composition root of the relay process."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, start_http_server

from command_service.relay.relay import OutboxRelay, RelayConfig, RelayMetrics
from command_service.settings import CommandSettings

log = logging.getLogger(__name__)


def build_relay(settings: CommandSettings, registry: CollectorRegistry) -> OutboxRelay:
    """A relay wired to the configured database and Kafka cluster."""
    config = RelayConfig(
        dsn=settings.relay_dsn,
        topics=settings.topics,
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval_seconds,
        use_notify=settings.relay_use_notify,
        lock_retry=settings.relay_lock_retry_seconds,
        rebalance_interval=settings.relay_rebalance_interval_seconds,
        retention_seconds=settings.outbox_retention_seconds,
        purge_interval=settings.outbox_purge_interval_seconds,
    )

    def producer() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="catalog-relay",
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            max_batch_size=512 * 1024,
            request_timeout_ms=15000,
        )

    return OutboxRelay(config, producer, RelayMetrics(registry))


async def run_relay(settings: CommandSettings) -> None:
    """Run the relay until SIGTERM or SIGINT."""
    registry = CollectorRegistry()
    if settings.relay_metrics_port:
        start_http_server(settings.relay_metrics_port, addr=settings.host, registry=registry)
    relay = build_relay(settings, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await relay.run(stop)
    log.info("relay stopped")
