"""The one Python of a Worker, local and deployed: the pin every other piece of the tooling follows.

Cloudflare picks a Python Worker's interpreter from its compatibility date and flags, through the
release table compiled into workerd (``src/pyodide/generated/pyodide_extra.capnp``): under
``python_workers``, dates from 2025-09-29 get Pyodide 0.28.2 (Python 3.13) and dates from
:data:`COMPATIBILITY_DATE` on Pyodide 314.0.6 (Python 3.14; the flag ``python_workers_314`` before
that date). The local dev bundle is built from npm's ``pyodide`` of the same release, and the
Worker's wheels are fetched for its Python and ABI, so what runs locally is what deploys.

To move to another Python, change this module and the ``pyodide`` pin of ``npm/package.json``
together; ``tests/cloudflare/test_python_version.py`` asks the pinned workerd which Pyodide the
generated ``wrangler.toml`` selects and fails while any of them disagree.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from flue_cloudflare.devtools.errors import ToolingError

#: The Python of the Worker, locally and on Cloudflare.
PYTHON_VERSION = "3.14"
#: The Pyodide release of that Python: npm's ``pyodide`` package the dev bundle is built from, and
#: the release Cloudflare runs at :data:`COMPATIBILITY_DATE`.
PYODIDE_VERSION = "314.0.6"
#: The wheel platform of Pyodide 314's ABI (``abi_version`` 2026_0 in its ``pyodide-lock.json``).
WHEEL_PLATFORM = "pyemscripten_2026_0_wasm32"
#: The first compatibility date on which ``python_workers`` selects :data:`PYODIDE_VERSION` (workerd
#: 1.20261117.1's table; pywrangler 1.17's ``PYTHON_COMPAT_VERSIONS`` agrees). Local and deployed
#: configurations both use it.
COMPATIBILITY_DATE = "2026-09-08"
#: How workerd names a released Pyodide bundle (in the URL it fetches and the file it caches).
_BUNDLE_NAME = re.compile(r"pyodide_([0-9][0-9A-Za-z.]*)_[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]+\.capnp\.bin")


def pip_platform_args() -> tuple[str, ...]:
    """pip's arguments that resolve wheels for the Worker's Python: a wasm wheel of its ABI or a pure one."""
    abi = "cp" + PYTHON_VERSION.replace(".", "")
    return (
        "--platform", WHEEL_PLATFORM,
        "--platform", "any",
        "--python-version", PYTHON_VERSION,
        "--implementation", "cp",
        "--abi", abi,
        "--abi", "none",
        "--only-binary=:all:",
    )  # fmt: skip


def deployed_pyodide(workerd: Path, compatibility_date: str, flags: Sequence[str], *, timeout: float = 60.0) -> str:
    """The Pyodide release Cloudflare runs a Python Worker on with these compatibility settings, as
    the ``workerd`` binary's own release table decides it.

    workerd is started on a one-module Worker with exactly ``flags`` (the deployed ones: no dev
    bundle), and an empty bundle cache; it asks for ``pyodide_<release>_<...>.capnp.bin``. Offline the
    request fails and its error names the file; online the file is downloaded into the cache. Either
    way workerd is stopped once the name is known.
    """
    with tempfile.TemporaryDirectory(prefix="flue-pyodide-probe-") as scratch:
        folder = Path(scratch)
        (folder / "probe.py").write_text("def on_fetch(request):\n    return None\n")
        quoted = ", ".join(json.dumps(flag) for flag in flags)
        (folder / "probe.capnp").write_text(
            'using Workerd = import "/workerd/workerd.capnp";\n'
            "const config :Workerd.Config = (services = [(name = \"probe\", worker = (\n"
            '  modules = [(name = "probe.py", pythonModule = embed "probe.py")],\n'
            f"  compatibilityDate = {json.dumps(compatibility_date)}, compatibilityFlags = [{quoted}]))]);\n"
        )
        cache = folder / "bundles"
        cache.mkdir()
        command = [str(workerd), "serve", "probe.capnp", "config", "--pyodide-bundle-disk-cache-dir", str(cache)]
        log = folder / "workerd.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                names = [log.read_text(errors="replace"), *(path.name for path in cache.iterdir())]
                found = next((m.group(1) for text in names if (m := _BUNDLE_NAME.search(text))), None)
                if found:
                    return found
                if process.poll() is not None:
                    break
                time.sleep(0.05)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        raise ToolingError(
            f"workerd did not say which Pyodide compatibility date {compatibility_date} with flags"
            f" {list(flags)} selects:\n{log.read_text(errors='replace')[-3000:]}"
        )
