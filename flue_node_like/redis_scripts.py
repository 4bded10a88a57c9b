"""The run store's Lua scripts: one per operation, built from ``lua/steps.lua``, ``lua/runs.lua`` and
the chunks of ``lua/runs_*.lua``.

Redis runs a script's whole text on every call, and Lua creates each function the text defines
each time: one script holding every operation spent ~30 µs per call on that alone. So each
operation is a script of its own — the shared prelude (``runs.lua``), its chunk (the text after an
``-- op: <name>`` line, up to the next), and a last line that calls it. The scripts are loaded at
every connection and called by SHA-1, so processes of different releases each call their own code.

``save_step``, called for every step a workflow takes, is ``lua/steps.lua`` alone and one call: with
the prelude, whose functions Redis creates on every call, a save cost it 9 µs of CPU; without, 4.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

__all__ = ["scripts"]

#: The files holding operation chunks, after the prelude ``runs.lua``.
CHUNK_FILES = ("runs_lifecycle.lua", "runs_pool.lua", "runs_flow.lua", "runs_admin.lua")
_MARKER = re.compile(r"^-- op: (\w+)\n", re.MULTILINE)


@cache
def scripts() -> dict[str, str]:
    """Operation name → the source of its script."""
    folder = resources.files("flue_node_like").joinpath("lua")
    steps = folder.joinpath("steps.lua").read_text(encoding="utf-8")
    prelude = steps + folder.joinpath("runs.lua").read_text(encoding="utf-8")
    # ARGV as every script's: base, origin, opid, then run id, name, value; the reply of a write.
    found: dict[str, str] = {"save_step": f"{steps}\nput_step(ARGV[1], ARGV[4], ARGV[5], ARGV[6])\nreturn {{{{}}}}\n"}
    for name in CHUNK_FILES:
        parts = _MARKER.split(folder.joinpath(name).read_text(encoding="utf-8"))
        for op, chunk in zip(parts[1::2], parts[2::2]):  # parts[0]: the file's own comment
            if op in found:
                raise RuntimeError(f"The Lua operation {op!r} is defined twice.")
            found[op] = f"{prelude}\n-- op: {op}\n{chunk}\nreturn respond({op}(unpack(ARGV, 4)))\n"
    return found
