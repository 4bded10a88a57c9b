"""A run's record crosses the Durable Object calls and is stored as the text pydantic would write
(``flue_cloudflare.record_json``, which writes and reads it without pydantic's per-field work): the
same text, and the same record read back, for records of every shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from flue_cloudflare.codec import record_json, record_of
from flue_core.models import RunError, RunRecord, RunStatus, WaitingFor

CREATED = datetime(2026, 5, 4, 3, 2, 1, 123000, tzinfo=UTC)

RECORDS = {
    "queued": RunRecord(run_id="run_a", workflow="w", status=RunStatus.QUEUED, created_at=CREATED),
    "every field": RunRecord(
        run_id="run_b",
        workflow="wf",
        status=RunStatus.WAITING,
        input={"deep": [1, 2.5, {"x": None}], "text": "日報"},
        key="order-1",
        attempt=2,
        created_at=CREATED,
        started_at=CREATED + timedelta(seconds=1),
        parent_run_id="run_parent",
        wake_at=CREATED + timedelta(hours=1),
        waiting_for=WaitingFor(kind="children", run_ids=["run_c1", "run_c2"]),
        carrier={"traceparent": "00-abc-def-01"},
        recoveries=1,
        rerun_of="run_old",
        cancel_requested=True,
    ),
    "failed": RunRecord(
        run_id="run_c",
        workflow="w",
        status=RunStatus.FAILED,
        created_at=CREATED,
        started_at=CREATED,
        ended_at=CREATED + timedelta(milliseconds=5),
        error=RunError(code="workflow_error", message="boom", type="ValueError", traceback="Traceback..."),
    ),
    "completed": RunRecord(
        run_id="run_d",
        workflow="w",
        status=RunStatus.COMPLETED,
        created_at=CREATED,
        ended_at=CREATED,
        result=[{"a": 1}, "two", 3],
        waiting_for=WaitingFor(kind="signal", name="approval"),
    ),
}


def pydantic_text(record: RunRecord) -> str:
    data = record.model_dump(mode="json", exclude={"input", "result"})
    data["input"], data["result"] = record.input, record.result
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize("shape", RECORDS)
def test_a_record_is_written_as_pydantic_writes_it(shape: str) -> None:
    record = RECORDS[shape]
    assert record_json(record) == pydantic_text(record)


@pytest.mark.parametrize("shape", RECORDS)
def test_a_record_is_read_back_as_pydantic_reads_it(shape: str) -> None:
    record = RECORDS[shape]
    read = record_of(record_json(record))
    assert read == record
    assert read.model_dump() == RunRecord.model_validate(read.model_dump()).model_dump()
    assert type(read.status) is RunStatus and read.created_at == CREATED


def test_a_field_the_text_lacks_takes_its_default() -> None:
    data = json.loads(record_json(RECORDS["queued"]))
    for stored_before_it_existed in ("rerunOf", "recoveries", "cancelRequested", "attempt"):
        del data[stored_before_it_existed]
    read = record_of(json.dumps(data))
    assert (read.rerun_of, read.recoveries, read.cancel_requested, read.attempt) == (None, 0, False, 0)
