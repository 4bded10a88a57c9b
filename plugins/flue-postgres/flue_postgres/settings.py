"""What a ``postgres://`` URL says: where the server is, which schema holds Flue's tables, and the
store's own options. Every message shows the URL with its password masked.

``postgres://USER:PASSWORD@HOST:PORT/DATABASE?schema=flue&timeout=10`` (``postgresql://`` too). The
store's options, taken out of the URL before it reaches the driver:

* ``schema`` — the Postgres schema of Flue's tables and functions (default ``flue``): several
  deployments can share one database, each in its own schema. Letters, digits and ``_``, at most 48.
* ``connect_timeout`` — seconds to reach the server (default 5);
* ``timeout`` — seconds an operation may wait for the server, a restart included, before it fails
  with :class:`~flue_core.errors.StoreUnavailable` (default 10);
* ``pool`` — connections for reads (default 4), beside the one that writes and the one that listens;
* ``retention`` — how long finished runs are kept, in seconds or with a unit (``7d``, ``12h``, ``30m``):
  every process that opens the store deletes older ones when it opens and every minute (default: kept).

Everything else (``sslmode``, ``sslrootcert``, ``application_name``, ``options``...) goes to asyncpg,
which reads it as libpq would; an empty host means the Unix socket, and the ``PG*`` environment
variables fill in what the URL leaves out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from flue_core.errors import ConfigurationError

__all__ = ["PostgresSettings", "SCHEMES"]

SCHEMES = ("postgres", "postgresql")
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")
_OPTIONS = ("schema", "connect_timeout", "timeout", "pool", "retention")
#: The longest timeout taken, in seconds.
MAX_TIMEOUT = 3600.0
#: The longest retention taken, in seconds (100 years): the cutoff must remain a date.
MAX_RETENTION = 100 * 365 * 86400.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class PostgresSettings:
    """A parsed URL. ``url`` is the URL as given with its password masked (safe to print)."""

    url: str
    dsn: str
    password: str | None
    schema: str = "flue"
    connect_timeout: float = 5.0
    timeout: float = 10.0
    pool: int = 4
    retention: float | None = None

    @classmethod
    def from_url(cls, url: object) -> PostgresSettings:
        if not isinstance(url, str):
            raise ConfigurationError(f"A Postgres store URL is a string like postgres://user@host/db, not {type(url).__name__}.")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises for a port that is not a number)
        except ValueError as exc:
            raise ConfigurationError(f"{_masked(url)} is not a valid Postgres URL ({exc}).") from None
        shown = _masked(url)
        if parts.scheme not in SCHEMES:
            raise ConfigurationError(f"Postgres store URLs start with postgres:// or postgresql://, not {shown}.")
        if parts.fragment:
            raise ConfigurationError(f"A Postgres store URL has no #fragment: {shown}.")
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {name: value for name, value in query if name in _OPTIONS}
        repeated = sorted({name for name, _ in query if name in _OPTIONS and sum(1 for n, _ in query if n == name) > 1})
        if repeated:
            raise ConfigurationError(f"{', '.join(repeated)} given twice in {shown}.")
        rest = [(name, value) for name, value in query if name not in _OPTIONS]
        schema = ours.get("schema", "flue")
        if not _SCHEMA.fullmatch(schema):
            raise ConfigurationError(
                f"schema={schema!r} in {shown}: a schema name is a letter or _ then letters, digits or _, at most 48."
            )
        retention = ours.get("retention")
        unit = _UNITS.get((retention or "")[-1:])
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
        return cls(
            url=shown,
            dsn=dsn,
            password=None if parts.password is None else unquote(parts.password),
            schema=schema,
            connect_timeout=_seconds(ours.get("connect_timeout", "5"), "connect_timeout", shown),
            timeout=_seconds(ours.get("timeout", "10"), "timeout", shown),
            pool=_count(ours.get("pool", "4"), "pool", shown),
            retention=None if retention is None else _seconds(
                retention[:-1] if unit else retention, "retention", shown, limit=MAX_RETENTION, unit=unit or 1
            ),
        )

    @property
    def channel(self) -> str:
        """The ``LISTEN`` channel of the run store's changes."""
        return f"flue:{self.schema}"

    def scrub(self, text: str) -> str:
        """``text`` without the password, should a driver's message quote it."""
        if self.password:
            for secret in {self.password, quote(self.password, safe="")}:
                text = text.replace(secret, "***")
        return text


def _masked(url: str) -> str:
    """``url`` with its password replaced by ``***``. The credentials end at the last ``@`` after the
    scheme, whatever reserved characters the password holds unencoded (``/``, ``?``, ``#``): guessing
    where a URL parser would cut them is how a piece of a password gets shown."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}"


def _seconds(value: str, name: str, shown: str, limit: float = MAX_TIMEOUT, unit: float = 1) -> float:
    try:
        seconds = float(value) * unit
    except ValueError:
        seconds = math.nan
    if not (0 < seconds <= limit):
        bound = "" if math.isinf(limit) else f" and at most {limit:g}"
        raise ConfigurationError(f"{name}={value!r} in {shown}: give a number of seconds above 0{bound}.")
    return seconds


def _count(value: str, name: str, shown: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise ConfigurationError(f"{name}={value!r} in {shown}: give a number of connections from 1 to 100.")
    return int(value)
