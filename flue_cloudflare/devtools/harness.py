"""A local workerd serving one application, from ingredients to a base URL: what tests and
``python -m flue_cloudflare.devtools serve`` use.

::

    with LocalWorker(app, folder) as worker:      # fetches, builds (cached), starts, waits
        httpx.get(worker.url + "/")
        worker.kill()                               # kill -9
        worker.start()                              # same config, ports and storage

One workerd per folder: starting a second on a folder in use fails (:class:`FolderInUse`), and
workerd dies with the process that started it (:mod:`~flue_cloudflare.devtools.process`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from flue_cloudflare.devtools.app import WorkerApp
from flue_cloudflare.devtools.bundle import build_bundle
from flue_cloudflare.devtools.cache import Cache
from flue_cloudflare.devtools.config import CONST, Ports, render
from flue_cloudflare.devtools.errors import ToolingError, WorkerdFailed
from flue_cloudflare.devtools.folder_lock import FolderLock
from flue_cloudflare.devtools.ingredients import NodePackages, capnp_tool, node_packages
from flue_cloudflare.devtools.process import START_TIMEOUT, Workerd, free_port
from flue_cloudflare.devtools.vendor import LaidOutApp, lay_out
from flue_cloudflare.devtools.wheels import download_wheels, flue_worker_requirements
from flue_core.cron import ticks_after

#: How workerd reports a socket it could not bind.
_PORT_TAKEN = "Address already in use"


@dataclass(frozen=True)
class Ingredients:
    """Everything workerd needs that does not depend on the application."""

    packages: NodePackages
    bundle_dir: Path


def fetch_ingredients(cache: Cache, *, wheels: bool = True) -> Ingredients:
    """Fetch and build what every application needs: the npm packages, ``capnp``, the dev bundle
    and (with ``wheels``) the wheels of flue's Worker requirements. Each step is skipped when cached."""
    packages = node_packages(cache)
    capnp_tool()
    bundle_dir = build_bundle(cache, packages)
    if wheels:
        download_wheels(cache, flue_worker_requirements())
    return Ingredients(packages, bundle_dir)


class LocalWorker:
    """``app`` served by a local workerd, with its configuration, log and Durable Object storage in
    ``folder`` (kept across stop, kill and start: the same storage, the same ports).

    ``ready_path`` is the path whose answer (any status below 500) means the Worker is up; ``port``
    the application's port (default: a free one); ``test_clock`` lets tests move the clocks of cron.js
    and queues.js.
    """

    def __init__(
        self,
        app: WorkerApp,
        folder: Path,
        *,
        cache: Cache | None = None,
        ready_path: str = "/",
        test_clock: bool = True,
        port: int | None = None,
    ) -> None:
        self.app = app
        self.port = port
        self.folder = folder
        self.cache = cache or Cache.default()
        self.ready_path = ready_path
        self.test_clock = test_clock
        self.ports: Ports | None = None
        self.laid_out: LaidOutApp | None = None
        self._workerd: Workerd | None = None
        self._lock = FolderLock(folder)

    @property
    def storage(self) -> Path:
        """The local disk holding the Durable Objects' SQLite files."""
        return self.folder / "storage"

    @property
    def workerd(self) -> Workerd:
        if self._workerd is None:
            raise ToolingError("The local Worker is not prepared; call prepare() or start() first.")
        return self._workerd

    @property
    def url(self) -> str:
        """The application's base URL, ``http://127.0.0.1:<port>``."""
        return self.workerd.url

    @property
    def cron_url(self) -> str:
        """The base URL of workerd's cron scheduler (``POST /clock?advance=<ms>``)."""
        if self.ports is None or self.ports.cron is None:
            raise ToolingError(f"Worker {self.app.name!r} has no cron triggers.")
        return f"http://127.0.0.1:{self.ports.cron}"

    @property
    def queues_url(self) -> str:
        """The base URL of workerd's Queues Worker (``POST /clock?advance=<ms>``): its first queue's."""
        if not self.app.queues:
            raise ToolingError(f"Worker {self.app.name!r} has no queues.")
        return self.queue_url(self.app.queues[0].name)

    def queue_url(self, name: str) -> str:
        """The base URL that sends to queue ``name`` (``POST /message``, the body the message, with
        ``X-Msg-Fmt: text``, ``json`` or ``bytes``)."""
        port = self.ports.queues.get(name) if self.ports is not None else None
        if port is None:
            raise ToolingError(f"Worker {self.app.name!r} has no queue {name!r}.")
        return f"http://127.0.0.1:{port}"

    @property
    def state_file(self) -> Path:
        """Where a started worker writes its URLs, for commands run beside it (``cron``, ``send``)."""
        return self.folder / "serving.json"

    def prepare(self) -> None:
        """Fetch, build and lay out what is missing from the cache and write the configuration;
        ports are chosen once and kept."""
        if self._workerd is not None:
            return
        ingredients = fetch_ingredients(self.cache, wheels=False)
        self.laid_out = lay_out(self.cache, self.app)
        self.ports = Ports(
            app=self.port or free_port(),
            cron=free_port() if self.app.crons else None,
            queues={queue.name: free_port() for queue in self.app.queues},
        )
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.folder / "workerd.capnp"
        config.write_text(
            render(
                self.laid_out,
                config_dir=self.folder,
                storage=self.storage.resolve(),
                ports=self.ports,
                test_clock=self.test_clock,
            )
        )
        self._workerd = Workerd(
            ingredients.packages.workerd,
            config,
            const=CONST,
            bundle_dir=ingredients.bundle_dir,
            url=f"http://127.0.0.1:{self.ports.app}",
            log=self.folder / "workerd.log",
            ready_path=self.ready_path,
        )

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Prepare if needed, start workerd and wait until the application answers.

        Free ports are chosen before workerd binds them; if another process took one in between, the
        first start is tried once more on newly chosen ports.
        """
        self._lock.acquire()
        try:
            first = self._workerd is None
            self.prepare()
            try:
                self._start_workerd(timeout)
            except WorkerdFailed as error:
                if not (first and self.port is None and _PORT_TAKEN in error.message):
                    raise
                self._workerd = None
                self.prepare()
                self._start_workerd(timeout)
        except BaseException:
            if not (self._workerd is not None and self._workerd.running):
                self._lock.release()
            raise

    def _start_workerd(self, timeout: float) -> None:
        assert self._lock.fd is not None
        self.workerd.pass_fds = (self._lock.fd,)
        self.workerd.start(timeout)
        self._lock.note(workerd_pid=self.workerd.pid)
        state = {
            "app": self.app.name,
            "url": self.url,
            "cron_url": self.cron_url if self.app.crons else None,
            "crons": list(self.app.crons),
            "queues": {queue.name: self.queue_url(queue.name) for queue in self.app.queues},
            "workerd_pid": self.workerd.pid,
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    def stop(self) -> None:
        """Stop workerd (gracefully, then killed) and give the folder up."""
        if self._workerd is not None:
            self._workerd.stop()
        self.state_file.unlink(missing_ok=True)
        self._lock.release()

    def kill(self) -> None:
        """kill -9: workerd ends at once, as in a crash; storage keeps what it committed."""
        self.workerd.kill()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.workerd.stop()
        self.start(timeout)

    def advance_cron_clock(self, milliseconds: int) -> dict[str, Any]:
        """Move cron.js's planning clock forward (``TEST_CLOCK``), re-arming every schedule; answers
        ``{now, at}``: its time and each schedule's planned alarm, epoch milliseconds."""
        return advance_clock(self.cron_url, milliseconds)

    def fire_crons_soon(self, lead_ms: int = 250) -> int:
        """Make the cron triggers due in about ``lead_ms`` of real time, returning the occurrence
        (epoch milliseconds on cron.js's clock) that ``scheduled()`` will receive as ``scheduledTime``.

        cron.js keeps alarms on the real clock and plans on its own, so advancing its clock to just
        before the next occurrence of any of the application's expressions (read in UTC, as Cloudflare
        does) arms that trigger for it, ``lead_ms`` from now.
        """
        return fire_crons_soon(self.cron_url, self.app.crons, lead_ms)

    def __enter__(self) -> LocalWorker:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def advance_clock(url: str, milliseconds: int) -> dict[str, Any]:
    """``POST <url>/clock?advance=<ms>`` to cron.js or queues.js (``TEST_CLOCK``): their answer."""
    response = httpx.post(f"{url}/clock", params={"advance": milliseconds}, timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def fire_crons_soon(cron_url: str, crons: tuple[str, ...] | list[str], lead_ms: int = 250) -> int:
    """Advance cron.js's clock (at ``cron_url``) to ``lead_ms`` before the next occurrence of any of
    ``crons`` (read in UTC, as Cloudflare does), so that it fires about ``lead_ms`` from now; the
    occurrence's epoch milliseconds on cron.js's clock, which ``scheduled()`` receives."""
    now = int(advance_clock(cron_url, 0)["now"])
    after = datetime.fromtimestamp((now + lead_ms) / 1000, UTC)
    upcoming = [next(ticks_after(cron, "UTC", after), None) for cron in crons]
    found = [moment for moment in upcoming if moment is not None]
    if not found:
        raise ToolingError(f"The cron triggers {list(crons)} never fire.")
    occurrence = int(min(found).timestamp() * 1000)
    advance_clock(cron_url, occurrence - lead_ms - now)
    return occurrence
