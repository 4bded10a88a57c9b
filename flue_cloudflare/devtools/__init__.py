"""Local development tooling for the Cloudflare target: Python Workers on a real workerd, offline.

Never imported by :mod:`flue_cloudflare` itself nor shipped to a Worker; it runs on the host (tests,
``python -m flue_cloudflare.devtools``). It fetches the pinned ingredients from the registries into
one git-ignored cache folder (:mod:`~flue_cloudflare.devtools.cache`), builds the Pyodide dev bundle
workerd loads offline (:mod:`~flue_cloudflare.devtools.bundle`), lays out an application with its
packages as ``python_modules/`` (:mod:`~flue_cloudflare.devtools.vendor`), writes its workerd
configuration (:mod:`~flue_cloudflare.devtools.config`) and runs workerd
(:mod:`~flue_cloudflare.devtools.process`); :class:`LocalWorker` does all of it::

    app = WorkerApp(name="myapp", main=Path("worker.py"), durable_objects=(DurableObjectClass("Run", "RUNS"),))
    with LocalWorker(app, Path(".cloudflare/local")) as worker:
        httpx.get(worker.url)
"""

from flue_cloudflare.devtools.app import DurableObjectClass, Queue, WorkerApp
from flue_cloudflare.devtools.cache import Cache
from flue_cloudflare.devtools.errors import (
    BundleBuildFailed,
    IngredientUnavailable,
    ToolingError,
    VendoringFailed,
    WorkerdFailed,
)
from flue_cloudflare.devtools.harness import Ingredients, LocalWorker, fetch_ingredients

__all__ = [
    "BundleBuildFailed",
    "Cache",
    "DurableObjectClass",
    "IngredientUnavailable",
    "Ingredients",
    "LocalWorker",
    "Queue",
    "ToolingError",
    "VendoringFailed",
    "WorkerApp",
    "WorkerdFailed",
    "fetch_ingredients",
]
