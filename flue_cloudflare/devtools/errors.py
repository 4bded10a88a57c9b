"""The errors of the local workerd tooling, under :class:`~flue_core.errors.FlueError`.

Each says what was missing or what failed and what to do about it: a test that needs workerd fails
with this message, it does not skip.
"""

from __future__ import annotations

from flue_core.errors import FlueError


class ToolingError(FlueError):
    """The local Cloudflare tooling could not do what was asked."""

    code = "cloudflare_tooling_error"


class IngredientUnavailable(ToolingError):
    """A pinned ingredient (npm, PyPI or Debian package, or a tool) cannot be had on this machine."""

    code = "ingredient_unavailable"


class BundleBuildFailed(ToolingError):
    """The Pyodide dev bundle could not be built, e.g. an edit of ``pyodide.asm.mjs`` matched a
    number of sites other than the one expected for the pinned Pyodide."""

    code = "bundle_build_failed"


class VendoringFailed(ToolingError):
    """An application's Python packages could not be resolved or laid out as ``python_modules/``."""

    code = "vendoring_failed"


class WorkerdFailed(ToolingError):
    """workerd did not start, did not answer in time, or exited; the message ends with its log."""

    code = "workerd_failed"
