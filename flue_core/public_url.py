"""Where a runtime's runs are reachable over HTTP: the base of the ``stream_url`` of receipts.

A receipt from ``workflows.start()`` names the run's stream as ``<base>/runs/<run_id>``. The base is
``Runtime(public_url=...)`` when given — an absolute path (``/flue``) or an absolute ``http(s)://`` URL
— else what the runtime's HTTP app learned from the first request it served (the ``root_path`` under
which it is mounted), else the root. Receipts of ``POST /workflows/<name>`` always name the path the
request itself came in under.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from flue_core.arguments import RUN_ID
from flue_core.errors import ConfigurationError


def checked_public_url(value: str | None) -> str | None:
    """``value`` without its trailing ``/``, if it is ``None``, an absolute path or an absolute
    ``http(s)://`` URL without query or fragment; otherwise :class:`ConfigurationError`."""
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    absolute_path = parts is not None and not parts.scheme and not parts.netloc and value.startswith("/")
    absolute_url = parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)
    if not (absolute_path or absolute_url) or parts is None or parts.query or parts.fragment or value.startswith("//"):
        raise ConfigurationError(
            f"public_url must be an absolute path such as '/flue' or an http(s):// URL, not {value!r}.",
            details={"public_url": repr(value)},
        )
    return value.rstrip("/")


def run_url(base: str, run_id: str) -> str:
    """The URL of a run's stream under ``base`` (``""`` is the root)."""
    # A run id (RUN_ID: letters, digits, - and _) needs no quoting; anything else is quoted.
    return f"{base}/runs/{run_id if RUN_ID.fullmatch(run_id) else quote(run_id, safe='')}"
