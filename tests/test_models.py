"""The models' trusted construction (``_Model.trusted``), which stores use on hot paths."""

from __future__ import annotations

from flue_core.models import RunError, RunReceipt, RunRecord, RunStatus, WaitingFor, utc_now


def test_a_trusted_record_is_the_validated_record():
    now = utc_now()
    fields = dict(
        run_id="run_1", workflow="w", status=RunStatus.FAILED, input={"n": [1, 2]}, key="k", attempt=2,
        created_at=now, started_at=now, ended_at=now, result=None, error=RunError(code="workflow_error", message="m"),
        cancel_requested=True, parent_run_id="run_0", wake_at=None, waiting_for=WaitingFor(kind="retry"),
        carrier={"traceparent": "00-x"},
    )  # fmt: skip
    trusted = RunRecord.trusted(**fields)
    validated = RunRecord.model_validate(fields)
    assert trusted == validated
    assert trusted.model_dump(mode="json") == validated.model_dump(mode="json")
    assert trusted.model_fields_set == validated.model_fields_set
    assert trusted.model_copy(update={"attempt": 3}).attempt == 3


def test_a_trusted_model_missing_fields_gets_its_defaults():
    receipt = RunReceipt.trusted(run_id="run_1", workflow="w", stream_url="/runs/run_1")
    assert receipt.offset == "-1" and receipt == RunReceipt(run_id="run_1", workflow="w", stream_url="/runs/run_1")


def test_a_trusted_record_left_without_its_plain_defaults_is_the_validated_record():
    now = utc_now()
    fields = dict(run_id="run_1", workflow="w", status=RunStatus.QUEUED, created_at=now, priority=5, concurrency_key="a")
    trusted = RunRecord.trusted(**fields)
    validated = RunRecord.model_validate(fields)
    assert trusted == validated and trusted.queued_for is None and trusted.rate_key is None
    assert trusted.model_fields_set == validated.model_fields_set == set(fields)
    assert set(trusted.__dict__) == set(RunRecord.model_fields)
