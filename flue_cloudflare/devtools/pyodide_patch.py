"""Adapt npm's ``pyodide.asm.mjs`` (Pyodide 314.0.6) to workerd's sandbox.

workerd runs the Emscripten module as an internal module whose helpers live in the binary's
``pyodide-internal:builtin_wrappers``: Wasm is compiled through ``newWasmModule``/``wasmInstantiate``
(plain ``WebAssembly.Module`` is refused), time through ``monotonicDateNow``, randomness through
``getRandomValues(Module, ...)``, shared libraries are read from workerd's read-only file system, and
``eval`` does not exist. Each edit below must match exactly the number of sites it has in the pinned
Pyodide; any other count means the input is not the file these edits were written for, and the build
fails rather than produce a bundle that breaks at run time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from flue_cloudflare.devtools.errors import BundleBuildFailed

IMPORTS = (
    "addEventListener",
    "getRandomValues",
    "location",
    "monotonicDateNow",
    "newWasmModule",
    "patchedLoadLibData",
    "wasmInstantiate",
)
PRELUDE = f'import {{ {", ".join(IMPORTS)} }} from "pyodide-internal:builtin_wrappers";\n'
EVAL_REFUSED = '(() => { throw new Error("eval is not available in workerd"); })()'
# A name not preceded by an identifier character or a dot: `Date.now`, not `x.Date.now` or `myDate.now`.
_FREE = r"(?<![\w$.])"


@dataclass(frozen=True)
class Edit:
    """One rewrite of the source and the number of sites it must match."""

    name: str
    sites: int
    apply: Callable[[str], tuple[str, int]]


def _replace(pattern: str, replacement: str) -> Callable[[str], tuple[str, int]]:
    regex = re.compile(pattern)
    return lambda source: regex.subn(lambda _: replacement, source)


def _closing(source: str, start: int, opening: str, closing: str) -> int:
    """The index just past the bracket that closes the one at ``start``."""
    depth = 0
    for index in range(start, len(source)):
        char = source[index]
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return index + 1
    raise BundleBuildFailed(f"unbalanced {opening}{closing} after offset {start} in pyodide.asm.mjs")


def _refuse_eval(source: str) -> tuple[str, int]:
    """Every ``eval(...)`` call, whole (its argument may itself be a call), becomes a throw."""
    out: list[str] = []
    count, position = 0, 0
    for match in re.finditer(_FREE + r"eval\(", source):
        if match.start() < position:
            continue
        end = _closing(source, match.end() - 1, "(", ")")
        out += [source[position : match.start()], EVAL_REFUSED]
        position = end
        count += 1
    out.append(source[position:])
    return "".join(out), count


def _load_lib_data(source: str) -> tuple[str, int]:
    """The body of ``loadLibData`` reads the library through workerd's read-only file system."""
    header = "function loadLibData(){"
    count = source.count(header)
    if count != 1:
        return source, count
    start = source.index(header)
    end = _closing(source, start + len(header) - 1, "{", "}")
    body = (
        header
        + "var libData=patchedLoadLibData(Module,libName,flags.rpath);"
        + "return flags.loadAsync?Promise.resolve(libData):libData}"
    )
    return source[:start] + body + source[end:], 1


def _get_memory(source: str) -> tuple[str, int]:
    """``getMemory(`` inside ``loadWebAssemblyModule`` keeps a library's memory base stable across
    snapshots (workerd's ``getMemoryPatched``)."""
    owner = source.find("var loadWebAssemblyModule=")
    sites = [m.start() for m in re.finditer(_FREE + r"getMemory\(", source)]
    inside = [site for site in sites if owner >= 0 and site > owner]
    if len(sites) != 1 or len(inside) != 1:
        return source, len(inside)
    site = inside[0]
    replaced = "Module.getMemoryPatched(Module,libName,"
    return source[:site] + replaced + source[site + len("getMemory(") :], 1


def _named_export(source: str) -> tuple[str, int]:
    if "export default _createPyodideModule;" not in source or "export {" in source:
        return source, 0
    return source.rstrip() + "\nexport { _createPyodideModule };\n", 1


EDITS = (
    Edit("new WebAssembly.Module( -> newWasmModule(", 4, _replace(r"\bnew WebAssembly\.Module\(", "newWasmModule(")),
    Edit(
        "WebAssembly.instantiate( -> wasmInstantiate(",
        2,
        _replace(_FREE + r"WebAssembly\.instantiate\(", "wasmInstantiate("),
    ),
    Edit("Date.now -> monotonicDateNow", 22, _replace(_FREE + r"Date\.now\b", "monotonicDateNow")),
    Edit(
        "crypto.getRandomValues(x) -> getRandomValues(Module, x)",
        1,
        _replace(_FREE + r"crypto\.getRandomValues\(", "getRandomValues(Module,"),
    ),
    Edit("eval(...) -> throw", 6, _refuse_eval),
    Edit("loadLibData body -> patchedLoadLibData", 1, _load_lib_data),
    Edit("getMemory( -> Module.getMemoryPatched(", 1, _get_memory),
    Edit("named export of _createPyodideModule", 1, _named_export),
)


def patch(source: str) -> str:
    """``pyodide.asm.mjs`` adapted to workerd, or :class:`BundleBuildFailed` naming every edit whose
    count of sites differs from the expected one."""
    if source.startswith(PRELUDE):
        raise BundleBuildFailed("pyodide.asm.mjs is already patched")
    wrong: list[str] = []
    for edit in EDITS:
        source, count = edit.apply(source)
        if count != edit.sites:
            wrong.append(f"{edit.name}: {count} sites, expected {edit.sites}")
    if wrong:
        raise BundleBuildFailed(
            "pyodide.asm.mjs is not the Pyodide these edits were written for:\n  " + "\n  ".join(wrong)
        )
    return PRELUDE + source
