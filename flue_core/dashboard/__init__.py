"""The web dashboard of the HTTP app: ``create_app(runtime, dashboard=True)`` (see ``docs/dashboard.md``).

A runs page (filters, cursor paging, rows kept up to date), a schedules page (in an app with
schedules: next ticks, last runs, pause and resume) and a page per run (record, progress,
steps, a timeline filled live from the run's SSE stream, the actions the app grants), as server-made
HTML frames and small static scripts that read the app's own API. Nothing is built at install time
and nothing is fetched from another site.

``LinkAccess`` grants a local dashboard to whoever opens its secret link (``flue dashboard``).
"""

from __future__ import annotations

from flue_core.dashboard.access import LinkAccess

__all__ = ["LinkAccess"]
