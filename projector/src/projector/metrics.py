"""Prometheus metrics of the projector."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProjectorMetrics:
    """The projector's metrics, in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "projector_events_total",
            "Events read and applied or skipped, by type",
            ["event_type"],
            registry=registry,
        )
        self.applied = Counter(
            "projector_events_applied_total",
            "Events that changed the read model, by type",
            ["event_type"],
            registry=registry,
        )
        self.skipped = Counter(
            "projector_events_skipped_total",
            "Events the read model already had (duplicates, redeliveries, superseded), by type",
            ["event_type"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "projector_events_dead_lettered_total",
            "Messages sent to the dead-letter topic",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            "projector_batch_retries_total",
            "Batches retried after a transient failure",
            registry=registry,
        )
        self.batch_size = Histogram(
            "projector_batch_size",
            "Events per applied batch",
            registry=registry,
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
        )
        self.batch_seconds = Histogram(
            "projector_batch_apply_seconds",
            "Time to apply one batch to MongoDB",
            registry=registry,
        )
        self.category_refresh_seconds = Histogram(
            "projector_category_refresh_seconds",
            "Time to fold the product changes waiting in the category ledger into the figures",
            registry=registry,
        )
        self.category_changes_folded = Counter(
            "projector_category_changes_folded_total",
            "Product changes folded into their categories' figures",
            registry=registry,
        )
        self.categories_staleness = Gauge(
            "projector_categories_staleness_seconds",
            "Seconds since the oldest product change not folded into its category's figures",
            registry=registry,
        )
        self.commit_to_view = Histogram(
            "projector_commit_to_view_seconds",
            "Time from the command's commit (occurred_at) to the read model write",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.lag = Gauge(
            "projector_consumer_lag",
            "Messages behind the partition's high watermark",
            ["topic", "partition"],
            registry=registry,
        )
