"""Target selection: explicit choice, FLUE_TARGET, detection hooks, the fallback, and clear errors."""

from __future__ import annotations

import pytest

from flue_core import Runtime, hookimpl
from flue_core.errors import AmbiguousTarget, ConfigurationError, TargetNotFound
from flue_node_like import LocalTarget, MemoryStore


class Detects:
    def __init__(self, name: str | None) -> None:
        self.name = name

    @hookimpl
    def flue_detect_target(self) -> str | None:
        return self.name


class RegistersTarget:
    def __init__(self, name: str, fallback: bool = False) -> None:
        self.name, self.fallback = name, fallback

    @hookimpl
    def flue_register_targets(self, register) -> None:
        register(self.name, lambda **options: OtherTarget(**options), fallback=self.fallback)


class OtherTarget(LocalTarget):
    name = "other"


@pytest.fixture(autouse=True)
def no_env_target(monkeypatch):
    monkeypatch.delenv("FLUE_TARGET", raising=False)


def test_the_local_target_is_the_fallback():
    assert isinstance(Runtime([], store="memory://").target, LocalTarget)


def test_an_explicit_choice_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("FLUE_TARGET", "other")
    runtime = Runtime([], target="local", plugins=[RegistersTarget("other")], store="memory://")
    assert type(runtime.target) is LocalTarget


def test_flue_target_selects_a_registered_target(monkeypatch):
    monkeypatch.setenv("FLUE_TARGET", "other")
    assert isinstance(Runtime([], plugins=[RegistersTarget("other")], store="memory://").target, OtherTarget)


def test_a_detection_hook_selects_its_target():
    runtime = Runtime([], plugins=[RegistersTarget("other"), Detects("other"), Detects(None)], store="memory://")
    assert isinstance(runtime.target, OtherTarget)


def test_two_detected_targets_are_an_error_naming_both():
    with pytest.raises(AmbiguousTarget) as caught:
        Runtime([], plugins=[RegistersTarget("other"), Detects("other"), Detects("local")])
    assert "local" in caught.value.message and "other" in caught.value.message
    assert caught.value.details["candidates"] == ["local", "other"]


def test_two_fallbacks_are_an_error_naming_both():
    with pytest.raises(AmbiguousTarget, match="local, other"):
        Runtime([], plugins=[RegistersTarget("other", fallback=True)])


def test_an_unknown_target_name_lists_the_registered_ones(monkeypatch):
    monkeypatch.setenv("FLUE_TARGET", "mars")
    with pytest.raises(TargetNotFound, match="registered: cloudflare, local"):
        Runtime([])


def test_no_installed_target_is_a_clear_error():
    with pytest.raises(TargetNotFound, match="No target"):
        Runtime([], entry_points=False)


def test_a_target_instance_is_used_as_given():
    target = LocalTarget(MemoryStore())
    assert Runtime([], target=target).target is target
    with pytest.raises(ConfigurationError):
        Runtime([], target=target, concurrency=2)


def test_two_plugins_registering_one_target_name_are_refused():
    with pytest.raises(ConfigurationError, match="local"):
        Runtime([], plugins=[RegistersTarget("local")])


@pytest.mark.anyio
async def test_an_unknown_store_scheme_lists_the_known_ones(anyio_backend):
    # Installed store plugins (flue-postgres: postgres://, postgresql://) are listed among them.
    with pytest.raises(ConfigurationError, match="known schemes: memory://, .*redis://, rediss://, sqlite://"):
        async with Runtime([], store="nosuchdb://db"):
            pass


@pytest.mark.anyio
async def test_an_unknown_store_scheme_never_shows_the_urls_password(anyio_backend):
    with pytest.raises(ConfigurationError) as raised:
        async with Runtime([], store="nosuchdb://me:s3cret/pass@db.internal/app"):
            pass
    assert "s3cret" not in f"{raised.value} {raised.value.details}" and "nosuchdb://me:***@db.internal/app" in str(raised.value)
