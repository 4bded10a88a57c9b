"""A real OpenTelemetry SDK for the telemetry tests: in-memory span exporter and metric reader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flue_core.otel import FlueTelemetry


@dataclass
class Telemetry:
    """Providers with in-memory exporters, and the plugin reporting to them."""

    queue_interval: float = 0.0
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.plugin = FlueTelemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, queue_interval=self.queue_interval
        )

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        """Finished spans called ``name``, in the order they started."""
        return sorted((span for span in self.spans if span.name == name), key=lambda span: span.start_time or 0)

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in self.spans]}"
        return found[0]

    def points(self, metric: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """The data points of ``metric`` now, by their attribute sets (collected on the caller's thread)."""
        return {frozenset(point.attributes.items()): point for point in _points(self.reader.get_metrics_data(), metric)}

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _points(data: Any, metric: str) -> Iterator[Any]:
    if data is None:
        return
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for found in scope.metrics:
                if found.name == metric:
                    yield from found.data.data_points


def attrs(values: dict[str, Any]) -> frozenset[tuple[str, Any]]:
    """An attribute set as :meth:`Telemetry.points` keys them."""
    return frozenset(values.items())


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None
