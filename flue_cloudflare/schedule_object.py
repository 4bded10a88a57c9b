"""``ScheduleObject``: the one Durable Object holding the cron schedules of ``flue_core.schedules``.

Its alarm is set to the next tick of any schedule; when it rings, the due ticks are admitted through
the normal admission, with the tick's time in the idempotency key (:func:`flue_core.scheduler.tick`),
so a tick also admitted by ``scheduled()`` (the Worker's cron trigger) or rung twice runs once.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flue_core.cron import ticks_after
from flue_core.models import Schedule, utc_now
from flue_core.store import SCHEDULES
from flue_cloudflare import calls, codec
from flue_cloudflare.objects import FlueObject

SCHEMA = "CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, body TEXT NOT NULL)"


class ScheduleObject(FlueObject):
    binding: ClassVar[str] = calls.SCHEDULES

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.sql.run(SCHEMA)
        self._changed = False

    async def _answer(self, result: Any) -> dict[str, Any]:
        changed, self._changed = self._changed, False
        if changed:
            await self._arm()
        return {"r": result, "c": [SCHEDULES] if changed else []}

    def _all(self) -> list[Schedule]:
        return [codec.schedule_of(row["body"]) for row in self.sql.rows("SELECT body FROM schedules ORDER BY name")]

    def _find(self, name: str) -> Schedule | None:
        row = self.sql.one("SELECT body FROM schedules WHERE name = ?", name)
        return None if row is None else codec.schedule_of(row["body"])

    def _store(self, schedule: Schedule) -> None:
        self.sql.run(
            "INSERT OR REPLACE INTO schedules (name, body) VALUES (?, ?)", schedule.name, codec.schedule_json(schedule)
        )

    def _op_put(self, wire: dict[str, Any]) -> list[Any]:
        schedule = codec.schedule_of(wire["schedule"])
        existing = self._find(schedule.name)
        if existing is not None and not wire["replace"]:
            return [codec.schedule_json(existing), False]
        if existing is not None:
            schedule = schedule.model_copy(update={"created_at": existing.created_at, "last_tick": existing.last_tick})
        self._store(schedule)
        self._changed = True
        return [codec.schedule_json(schedule), existing is None]

    def _op_get(self, wire: dict[str, Any]) -> str | None:
        found = self._find(wire["name"])
        return None if found is None else codec.schedule_json(found)

    def _op_list(self, wire: Any) -> list[str]:
        return [codec.schedule_json(schedule) for schedule in self._all()]

    def _op_delete(self, wire: dict[str, Any]) -> bool:
        found = self._find(wire["name"]) is not None
        if found:
            self.sql.run("DELETE FROM schedules WHERE name = ?", wire["name"])
            self._changed = True
        return found

    def _op_advance(self, wire: dict[str, Any]) -> bool:
        schedule = self._find(wire["name"])
        if schedule is None or codec.when(schedule.last_tick) != wire["previous"]:
            return False
        self._store(schedule.model_copy(update={"last_tick": codec.moment(wire["tick"])}))
        self._changed = True
        return True

    async def _arm(self) -> None:
        """Ring at the next tick of any active schedule whose workflow this Worker has."""
        if not self.app.execute:
            return
        registry = self.app.runtime.registry
        now = utc_now()
        upcoming = []
        for schedule in self._all():
            if schedule.paused or registry.get(schedule.workflow) is None:
                continue
            after = schedule.last_tick or schedule.created_at
            found = next(ticks_after(schedule.cron, schedule.timezone, after), None)
            if found is not None:
                upcoming.append(max(found, now))
        await self._set_alarm(min(upcoming).timestamp() * 1000 if upcoming else None)

    async def alarm(self, *args: Any) -> None:
        with calls.serving(self):
            if self.app.execute:
                await self.app.tick_schedules(self.env)
            await self._arm()
