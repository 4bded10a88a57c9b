"""``flue worker``'s settings: --concurrency, --grace, --lease and --sweep-interval reach the target,
whether the worker builds its runtime from a module of workflows or is given a Runtime."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from flue_core.cli.app import AppNotLoaded
from flue_core.cli.parser import UsageError, build_parser
from flue_core.cli.worker import worker_runtime

TESTS = Path(__file__).resolve().parent
SETTINGS = {"concurrency": 3, "shutdown_grace": 0.5, "lease": 4.0, "sweep_interval": 0.25}


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("FLUE_STORE", f"sqlite:///{tmp_path}/flue.db")
    sys.modules.pop("cli_app", None)  # its Runtime is built at import: a fresh one each test


def settings_of(target: object) -> dict[str, float]:
    return {name: getattr(target, name) for name in SETTINGS}


def test_a_worker_built_from_the_workflows_takes_every_setting() -> None:
    runtime = worker_runtime("cli_app", None, **SETTINGS)
    assert settings_of(runtime.target) == SETTINGS
    assert runtime.target.store_patience == 4.0  # a run waits out a store outage for a lease


def test_a_given_runtime_takes_the_settings_but_not_another_store() -> None:
    runtime = worker_runtime("cli_app:runtime", None, **SETTINGS)
    assert runtime is importlib.import_module("cli_app").runtime
    assert settings_of(runtime.target) == SETTINGS
    with pytest.raises(AppNotLoaded, match="--store"):
        worker_runtime("cli_app:runtime", "memory://", concurrency=None)


def test_unset_settings_keep_the_defaults() -> None:
    target = worker_runtime("cli_app", None, concurrency=None, shutdown_grace=None, lease=None, sweep_interval=None).target
    assert settings_of(target) == {"concurrency": 16, "shutdown_grace": 10.0, "lease": 30.0, "sweep_interval": 2.0}


@pytest.mark.parametrize("flag", ["--lease", "--sweep-interval", "--grace"])
@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_bad_seconds_are_usage_errors(flag: str, value: str) -> None:
    with pytest.raises(UsageError, match="finite number of seconds"):
        build_parser().parse_args(["worker", "cli_app", flag, value])


def test_a_lease_of_zero_is_refused() -> None:
    with pytest.raises(AppNotLoaded):
        worker_runtime("cli_app", None, lease=0.0)
    with pytest.raises(AppNotLoaded, match="--lease"):
        worker_runtime("cli_app:runtime", None, lease=0.0)
