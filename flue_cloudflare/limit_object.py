"""``LimitObject``: a concurrency limit or a rate limit of one workflow, for runs executed in their own
objects. Its name says which (:func:`~flue_cloudflare.calls.slot_object`,
:func:`~flue_cloudflare.calls.rate_object`): one object per workflow and key value, so runs of other
keys never wait behind a busy one.

As a concurrency limit, it counts the runs holding a slot and keeps the others in line, highest
priority first, then oldest. A run's object asks for
a slot before taking its run (``acquire``); a slot comes back when the run waits, goes back to the
pool or ends (``release``, from the run's outbox: at least once). A released slot goes to the run
first in line, whose object is poked to take its run at once; a poke that is lost is repeated by this
object's alarm until the run takes the slot or says it no longer needs it. Each request carries the
workflow's current limit: when a deploy raised it, the free slots go to the runs first in line (poked
the same way) before the run asking is answered, so the line never waits behind newcomers.

As a rate limit, it keeps the first starts of the last ``per`` seconds: a run's object asks for a
start (``start``), which is granted and counted, or answered with the time the window has room again
(the run's alarm rings then). Asking again is granted while the run's start is in the window.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flue_core.models import utc_now
from flue_cloudflare import calls
from flue_cloudflare.objects import FlueObject

SCHEMA = """
CREATE TABLE IF NOT EXISTS holders (run_id TEXT PRIMARY KEY, confirmed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS waiters (run_id TEXT PRIMARY KEY, ready_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS starts (run_id TEXT PRIMARY KEY, at REAL NOT NULL);
"""
#: Waiters stored before runs had priorities are of priority 0.
PRIORITY_MIGRATION = "ALTER TABLE waiters ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"
LINE = "CREATE INDEX IF NOT EXISTS waiters_line ON waiters (priority DESC, ready_at, run_id)"
FIRST = "SELECT run_id FROM waiters ORDER BY priority DESC, ready_at, run_id LIMIT 1"
#: Seconds after which a slot given to a run that has not taken it is offered to it again.
REPOKE = 30.0


class LimitObject(FlueObject):
    binding: ClassVar[str] = calls.LIMITS

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.sql.script(SCHEMA)
        if not self.sql.has_column("waiters", "priority"):
            self.sql.run(PRIORITY_MIGRATION)
        self.sql.run(LINE)

    def _holders(self) -> int:
        return int(self.sql.value("SELECT count(*) AS n FROM holders"))

    def _set_cap(self, cap: int) -> None:
        self.sql.run("INSERT OR REPLACE INTO settings (name, value) VALUES ('cap', ?)", cap)

    async def _op_acquire(self, wire: dict[str, Any]) -> bool:
        """Whether run ``runId`` holds a slot: it keeps one it holds, else it gets in line, and free
        slots go to the runs first in line (a cap raised by a deploy is filled at once, the waiters
        told), this one among them if its turn came."""
        run_id = wire["runId"]
        self._set_cap(wire["cap"])
        if self.sql.one("SELECT 1 AS found FROM holders WHERE run_id = ?", run_id) is None:
            self.sql.run(
                "INSERT OR IGNORE INTO waiters (run_id, ready_at, priority) VALUES (?, ?, ?)",
                run_id, wire["readyAt"] or "", wire.get("priority", 0),
            )  # fmt: skip
        await self._promote(caller=run_id)
        # Also when a slot reached it while the waiters were told (another event promoted it).
        if self.sql.one("SELECT 1 AS found FROM holders WHERE run_id = ?", run_id) is None:
            return False
        self.sql.run("UPDATE holders SET confirmed = 1 WHERE run_id = ?", run_id)
        return True

    def _op_start(self, wire: dict[str, Any]) -> float | None:
        """Grant run ``runId`` its first start if fewer than ``rate`` started in the last ``per``
        seconds (``None``), else answer when (epoch ms) the window has room again."""
        now, per = utc_now().timestamp() * 1000, wire["per"] * 1000
        self.sql.run("DELETE FROM starts WHERE at <= ?", now - per)
        if self.sql.one("SELECT 1 AS found FROM starts WHERE run_id = ?", wire["runId"]) is not None:
            return None
        if self.sql.value("SELECT count(*) AS n FROM starts") < wire["rate"]:
            self.sql.run("INSERT INTO starts (run_id, at) VALUES (?, ?)", wire["runId"], now)
            return None
        return float(self.sql.value("SELECT min(at) AS at FROM starts")) + per

    async def _op_release(self, wire: dict[str, Any]) -> None:
        if wire.get("cap") is not None:
            self._set_cap(wire["cap"])
        self.sql.run("DELETE FROM holders WHERE run_id = ?", wire["runId"])
        self.sql.run("DELETE FROM waiters WHERE run_id = ?", wire["runId"])
        await self._promote()

    async def _promote(self, caller: str | None = None) -> None:
        """Give free slots to the runs first in line, and tell their objects (``caller``, the run
        asking for a slot, hears it in the answer)."""
        offered = False
        while True:
            cap = self.sql.value("SELECT value FROM settings WHERE name = 'cap'") or 1
            offers = []
            while self._holders() < cap:
                first = self.sql.value(FIRST)
                if first is None:
                    break
                self.sql.run("DELETE FROM waiters WHERE run_id = ?", first)
                confirmed = int(first == caller)
                self.sql.run("INSERT OR REPLACE INTO holders (run_id, confirmed) VALUES (?, ?)", first, confirmed)
                if not confirmed:
                    offers.append(first)
            if not offers:
                break
            offered = True
            for run_id in offers:  # a run that no longer needs its slot frees it: the line moves on
                await self._offer(run_id)
        if caller is not None and not offered:
            return  # no slot was offered: the alarm stays as it is
        unconfirmed = self.sql.value("SELECT count(*) AS n FROM holders WHERE confirmed = 0")
        await self._set_alarm((utc_now().timestamp() + REPOKE) * 1000 if unconfirmed else None)

    async def _offer(self, run_id: str) -> None:
        try:
            answer = await calls.call(self.stub(calls.RUNS, run_id), "slot_granted", None)
        except Exception:
            return  # offered again by the alarm
        if not answer["r"]:  # it ended or was taken meanwhile: the slot is free again
            self.sql.run("DELETE FROM holders WHERE run_id = ? AND confirmed = 0", run_id)

    async def alarm(self, *args: Any) -> None:
        with calls.serving(self):
            for row in self.sql.rows("SELECT run_id FROM holders WHERE confirmed = 0"):
                await self._offer(row["run_id"])
            await self._promote()
