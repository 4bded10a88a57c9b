"""The replay check: new code replays stored histories without acting, and each divergence says the
run, the position, what the history holds and what the new code asked for."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

import replay_app
from flue_core import replay
from flue_core.errors import RunNotFound
from flue_core.testkit import TestEnvironment
from replay_app import SignedApproval, StrictOrder, version

pytestmark = pytest.mark.anyio
START = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


async def stored_runs(store: str) -> dict[str, str]:
    """Runs of the deployed version in each state a check meets: waiting for the approval, sleeping
    after shipping (with a signal left in its mailbox), completed, and rejected."""
    async with TestEnvironment(version(), store=store, start=START) as env:
        waiting = await env.start("order", {"sku": "tea"})
        sleeping = await env.start("order", {"sku": "mug"})
        done = await env.start("order", {"sku": "pot"})
        rejected = await env.start("order", {"sku": "cup"})
        for run in (sleeping, done):
            await env.signal(run, "approval", {"approved": True})
        await env.signal(rejected, "approval", {"approved": False})
        await env.advance(hours=2)
        sleeping = await env.start("order", {"sku": "mug"}, key="late")
        await env.signal(sleeping, "approval", {"approved": True})
        await env.signal(sleeping, "approval", {"approved": True})  # stays in the mailbox
        assert (await env.run(sleeping)).waiting_for.kind == "sleep"
        assert (await env.run(waiting)).waiting_for.kind == "signal"
    return {"waiting": waiting.run_id, "sleeping": sleeping.run_id, "done": done.run_id, "rejected": rejected.run_id}


@pytest.fixture
async def store(tmp_path):
    url = f"sqlite:///{tmp_path}/prod.db"
    runs = await stored_runs(url)
    replay_app.EXECUTED.clear()
    return url, runs


def only(report: replay.ReplayReport, run_id: str) -> replay.Divergence:
    (divergence,) = [d for d in report.divergences if d.run_id == run_id]
    return divergence


async def test_the_deployed_code_replays_every_stored_run(store):
    url, runs = store
    report = await replay.check(version(), store=url)
    assert report.ok, str(report)
    assert {run.run_id for run in report.runs} >= set(runs.values())
    assert all(run.replayed == run.calls for run in report.runs)
    assert replay_app.EXECUTED == []


async def test_a_renamed_step_diverges_at_its_position(store):
    url, runs = store
    report = await replay.check(version(reserve="hold"), store=url, unfinished=True)
    divergence = only(report, runs["waiting"])
    assert (divergence.kind, divergence.position) == ("call_mismatch", 2)
    assert divergence.history == "step 'reserve'"
    assert divergence.asked == "step 'hold'"
    assert {d.run_id for d in report.divergences} == {runs["waiting"], runs["sleeping"]}


async def test_steps_in_another_order_diverge(store):
    url, runs = store
    divergence = only(await replay.check(version(swap=True), store=url, run_ids=[runs["waiting"]]), runs["waiting"])
    assert (divergence.position, divergence.history, divergence.asked) == (1, "step 'check'", "step 'reserve'")


@pytest.mark.parametrize(
    ("added", "asked"),
    [("step", "step 'audit'"), ("sleep", "a sleep"), ("signal", "a wait for signal 'fraud-check'")],
)
async def test_a_durable_call_added_before_stored_calls_diverges(store, added, asked):
    url, runs = store
    divergence = only(await replay.check(version(before_wait=added), store=url), runs["sleeping"])
    assert divergence.position == 3
    assert divergence.history == "a wait for signal 'approval' with a timeout"
    assert divergence.asked == asked


async def test_a_run_waiting_for_a_signal_the_new_code_no_longer_waits_for_diverges(store):
    url, runs = store
    report = await replay.check(version(wait="go-ahead"), store=url, run_ids=[runs["waiting"]])
    assert only(report, runs["waiting"]).asked == "a wait for signal 'go-ahead'"


async def test_a_child_started_differently_diverges(store):
    url, runs = store
    report = await replay.check(version(child="express"), store=url, run_ids=[runs["sleeping"]])
    divergence = only(report, runs["sleeping"])
    assert (divergence.kind, divergence.position) == ("child_mismatch", 5)
    assert divergence.history.startswith("a child run of 'ship'")
    report = await replay.check(version(child_input=lambda order: {"sku": order.sku.upper()}), store=url)
    divergence = only(report, runs["sleeping"])
    assert divergence.kind == "child_mismatch" and "other input" in divergence.message, divergence
    assert divergence.details == {"stored_input": {"sku": "mug"}, "new_input": {"sku": "MUG"}}


async def test_an_input_model_that_refuses_the_stored_input_diverges(store):
    url, runs = store
    divergence = only(await replay.check(version(order_model=StrictOrder), store=url), runs["waiting"])
    assert divergence.kind == "input_invalid" and divergence.position is None
    assert [error["loc"] for error in divergence.details["errors"]] == [["coupon"]]


async def test_a_signal_model_that_refuses_stored_data_diverges(store):
    url, runs = store
    report = await replay.check(version(approval_model=SignedApproval), store=url)
    done = only(report, runs["done"])
    assert (done.kind, done.position) == ("signal_invalid", 4)
    mailbox = only(report, runs["sleeping"])
    assert mailbox.kind == "signal_invalid" and "waiting in the run's mailbox" in mailbox.message
    assert runs["waiting"] not in {d.run_id for d in report.divergences}


async def test_a_workflow_that_no_longer_exists_diverges(store):
    url, runs = store
    report = await replay.check(version(name="purchase"), store=url)
    assert {d.kind for d in report.divergences if d.run_id in runs.values()} == {"workflow_missing"}


async def test_runs_of_workflows_another_application_serves_can_be_left_out(store):
    url, runs = store
    shipping = [wf for wf in version() if wf.name == "ship"]  # an application of its own, say
    assert {d.kind for d in (await replay.check(shipping, store=url)).divergences} == {"workflow_missing"}
    report = await replay.check(shipping, store=url, workflow_names=["ship"])
    assert report.ok and len(report.runs) == 3


async def test_new_code_that_raises_where_the_history_goes_on_diverges(store):
    url, runs = store
    divergence = only(await replay.check(version(raise_after_reserve=True), store=url), runs["sleeping"])
    assert (divergence.kind, divergence.position) == ("raised", 3)
    assert divergence.asked == "nothing more: it raised KeyError: 'quantity'"


async def test_steps_in_flight_together_may_have_been_saved_in_any_order(tmp_path):
    url = f"sqlite:///{tmp_path}/parallel.db"
    async with TestEnvironment(version(parallel=True), store=url, start=START) as env:
        env.steps.double("price", lambda: _after("stock"))
        run = await env.start("order", {"sku": "tea"})
    keys = [key for key, _ in (await _history(url, run.run_id)).calls]
    assert keys[:2] == ["stock", "price"]  # saved in the order they ended, not called
    assert (await replay.check(version(parallel=True), store=url)).ok


async def test_a_patch_keeps_old_runs_on_the_old_path_and_says_which(store):
    url, runs = store
    report = await replay.check(version(patched=True), store=url)
    assert report.ok, str(report)
    assert {change: sorted(old) for change, old in report.patches().items()} == {
        "audit-before-approval": sorted([runs["sleeping"], runs["waiting"]])
    }
    assert "2 unfinished run(s) take the old path" in str(report)


async def test_the_check_executes_nothing_and_writes_nothing(store):
    url, runs = store
    path = Path(url.removeprefix("sqlite:///"))
    before = _digest(path)
    await replay.check(version(), store=url)
    await replay.check(version(reserve="hold", before_wait="step"), store=url)
    after = _digest(path)
    # the database as it was; reading may only leave SQLite's empty write-ahead log beside it
    assert {name: after[name] for name in before} == before
    assert {name for name in after if name not in before} <= {"prod.db-wal", "prod.db-shm"}
    wal = path.with_name("prod.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert replay_app.EXECUTED == []


async def test_a_file_exported_from_the_store_checks_the_same(store, tmp_path):
    url, runs = store
    exported = tmp_path / "histories.jsonl"
    assert await replay.export(exported, store=url) == 8  # five orders and three shipments
    for code in (version(), version(reserve="hold"), version(approval_model=SignedApproval)):
        from_store = await replay.check(code, store=url)
        from_file = await replay.check(code, from_file=exported)
        assert [r.to_dict() for r in from_file.runs] == [r.to_dict() for r in from_store.runs]


async def test_runs_asked_for_by_id_must_exist(store):
    url, runs = store
    with pytest.raises(RunNotFound, match="run_missing"):
        await replay.check(version(), store=url, run_ids=[runs["done"], "run_missing"])


async def test_a_store_of_another_schema_version_is_refused_unchanged(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO flue_meta VALUES ('schema_version', '2')")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(replay_errors().UnsupportedHistory, match="schema '2'.*Open it once"):
        await replay.check(version(), store=f"sqlite:///{path}")
    assert _digest(path)["old.db"] == before["old.db"]


@pytest.mark.parametrize(
    ("first_line", "match"),
    [
        ('{"flue": "run-histories", "version": 99}', "format version 99"),
        ('{"runs": []}', "not a file of run histories"),
        ("not json", "not a file of run histories"),
    ],
)
async def test_a_file_of_another_format_is_refused(tmp_path, first_line, match):
    path = tmp_path / "h.jsonl"
    path.write_text(first_line + "\n")
    with pytest.raises(replay_errors().UnsupportedHistory, match=match):
        await replay.check(version(), from_file=path)


async def test_a_line_that_is_not_a_history_is_refused_saying_where(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"flue": "run-histories", "version": 1}\n{"run": {"runId": 3}}\n')
    with pytest.raises(replay_errors().UnsupportedHistory, match="line 2 of"):
        await replay.check(version(), from_file=path)


async def test_a_memory_store_is_read_by_url_in_the_same_process():
    runs = await stored_runs("memory://replay-check")
    report = await replay.check(version(reserve="hold"), store="memory://replay-check", unfinished=True)
    assert {d.run_id for d in report.divergences} == {runs["waiting"], runs["sleeping"]}


async def test_a_redis_store_is_read_without_writing(redis_url):
    runs = await stored_runs(redis_url)
    report = await replay.check(version(reserve="hold"), store=redis_url, unfinished=True)
    assert {d.run_id for d in report.divergences} == {runs["waiting"], runs["sleeping"]}


async def test_an_empty_redis_prefix_is_refused_before_anything_is_written(redis_url):
    from flue_core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="No Flue runs were ever stored"):
        await replay.check(version(), store=redis_url)


async def _after(name: str) -> str:
    import anyio

    while name not in replay_app.EXECUTED:
        await anyio.sleep(0)
    return "price"


async def _history(url: str, run_id: str) -> replay.RunHistory:
    from flue_node_like.sqlite_history import SqliteHistories

    reader = SqliteHistories(url)
    try:
        return [h async for h in reader.histories(replay.Selection(run_ids=(run_id,)))][0]
    finally:
        await reader.close()


def _digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.glob(path.name + "*"))}


def replay_errors():
    from flue_core import errors

    return errors


async def test_a_wait_in_flight_beside_other_calls_is_met_whichever_stops_first(tmp_path):
    import anyio

    from flue_core import RunContext, workflow

    @workflow(name="side-by-side")
    async def side_by_side(ctx: RunContext) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ctx.step, "poll", replay_app.track("poll"))
            tasks.start_soon(ctx.wait_for_signal, "go")

    url = f"sqlite:///{tmp_path}/side.db"
    async with TestEnvironment([side_by_side], store=url) as env:
        env.steps.double("poll", _never)  # still polling when the wait suspends the run
        run = await env.start(side_by_side)
        assert (await env.run(run)).waiting_for.name == "go"
    assert (await replay.check([side_by_side], store=url)).ok


async def _never() -> None:
    import anyio

    await anyio.sleep_forever()
