"""Build the Pyodide dev bundle, ``pyodide_dev.capnp.bin``, that workerd loads offline.

workerd downloads its Pyodide bundle at start-up, which fails without the internet, and checks a
released bundle against a hash compiled into it. The one exempt name is the dev bundle: with the
compatibility flag ``python_workers_development`` (and ``--experimental``) workerd reads
``pyodide_dev.capnp.bin`` from ``--pyodide-bundle-disk-cache-dir`` and checks nothing. The bundle is a
Cap'n Proto ``Bundle`` of three internal modules (the adapted Emscripten module, the Wasm binary and
the standard library), encoded by ``capnp eval``. The schema below is wire-compatible with workerd's
own declaration of these three types (only field numbers and types matter on the wire).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from flue_cloudflare.devtools import pyodide_patch
from flue_cloudflare.devtools.cache import Cache, digest
from flue_cloudflare.devtools.errors import BundleBuildFailed
from flue_cloudflare.devtools.ingredients import WORKERD_VERSION, NodePackages, capnp_tool
from flue_cloudflare.devtools.python_version import PYODIDE_VERSION

BUNDLE_FILE = "pyodide_dev.capnp.bin"
SCHEMA = """\
@0xc4d2a61b9e3f7a05;
# The Pyodide bundle as workerd {workerd} reads it (a wire-compatible declaration).

struct Bundle {{
  modules @0 :List(Module);
}}

struct Module {{
  name @0 :Text;
  union {{
    src @1 :Data;
    wasm @4 :Data;
    data @5 :Data;
    json @6 :Text;
  }}
  tsDeclaration @3 :Text;
  type @2 :ModuleType;
  compileCache @7 :Data;
}}

enum ModuleType {{
  bundle @0;
  builtin @1;
  internal @2;
}}

const bundle :Bundle = (modules = [
  (name = "pyodideRuntime-internal:pyodide.asm", src = embed "pyodide.asm.mjs", type = internal),
  (name = "pyodideRuntime-internal:pyodide.asm.wasm", wasm = embed "pyodide.asm.wasm", type = internal),
  (name = "pyodideRuntime-internal:python_stdlib.zip", data = embed "python_stdlib.zip", type = internal),
]);
"""
_INPUTS = ("pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip")


def build_bundle(cache: Cache, packages: NodePackages) -> Path:
    """The folder holding ``pyodide_dev.capnp.bin`` (pass it as ``--pyodide-bundle-disk-cache-dir``),
    built unless a bundle of the same inputs (Pyodide files, these edits, this schema) is cached."""
    sources = [packages.pyodide / name for name in _INPUTS]
    key = digest([WORKERD_VERSION, PYODIDE_VERSION, SCHEMA, Path(pyodide_patch.__file__), *sources])
    return cache.build("bundle", key, lambda folder: _build(folder, packages.pyodide))


def _build(folder: Path, pyodide: Path) -> None:
    capnp = capnp_tool()
    (folder / "pyodide.asm.mjs").write_text(pyodide_patch.patch((pyodide / "pyodide.asm.mjs").read_text()))
    for name in _INPUTS[1:]:
        shutil.copyfile(pyodide / name, folder / name)
    (folder / "bundle.capnp").write_text(SCHEMA.format(workerd=WORKERD_VERSION))
    with (folder / BUNDLE_FILE).open("wb") as out:
        result = subprocess.run(
            [str(capnp), "eval", "--binary", "bundle.capnp", "bundle"],
            cwd=folder,
            stdout=out,
            stderr=subprocess.PIPE,
            text=False,
            check=False,
        )
    if result.returncode != 0:
        raise BundleBuildFailed(f"capnp eval failed (exit {result.returncode}):\n{result.stderr.decode()[-3000:]}")
    # The copies served only as embed inputs; the patched module stays for reading.
    for name in _INPUTS[1:]:
        (folder / name).unlink()
