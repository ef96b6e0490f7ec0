"""A span exporter for worker subprocesses: each finished span as one JSON line appended to the
file GEOQ_TEST_SPANS names, so a test reads what the worker traced once it has stopped."""

from __future__ import annotations

import json
import os
from typing import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class FileExporter(SpanExporter):
    def __init__(self) -> None:
        self.path = os.environ["GEOQ_TEST_SPANS"]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as f:
            for s in spans:
                f.write(json.dumps(_row(s)) + "\n")
        return SpanExportResult.SUCCESS


def _row(s: ReadableSpan) -> dict[str, object]:
    assert s.context is not None
    return {"name": s.name, "kind": s.kind.name, "trace_id": s.context.trace_id, "span_id": s.context.span_id,
            "parent_id": s.parent.span_id if s.parent else None, "attributes": dict(s.attributes or {}),
            "status": s.status.status_code.name, "events": [e.name for e in s.events],
            "service": (s.resource.attributes or {}).get("service.name"), "pid": os.getpid()}


def read(path: str) -> list[dict[str, object]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]
