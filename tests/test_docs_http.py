"""docs/http.md's error table against the error tree: every code the HTTP surface can answer is
listed, with the status its class carries, so a new error cannot reach clients undocumented."""

from __future__ import annotations

import re
from pathlib import Path

import flue_cloudflare.errors  # noqa: F401 - its errors reach clients of the Cloudflare target
import flue_core.http.errors  # noqa: F401 - imported for error_classes() to see them
from flue_core.errors import error_classes

DOC = Path(__file__).parent.parent / "docs" / "http.md"
#: Where the errors a server raises are defined (the client's, the CLI's and the testkit's are not).
MODULES = {"flue_core.errors", "flue_core.http.errors", "flue_cloudflare.errors"}
ROW = re.compile(r"^\| (\d{3}|any) \| `([a-z_]+)` \|", re.M)

#: Codes no HTTP request can get, each with the reason.
NOT_ANSWERED = {
    "flue_error": "the root: every error raised is a subclass",
    "admission_failed": "the base of admission's errors: each raised is a subclass",
    "invalid_workflow_definition": "raised when workflows are defined, before any app serves",
    "duplicate_workflow": "raised when a runtime is built",
    "target_not_found": "raised when a runtime is built",
    "target_ambiguous": "raised when a runtime is built",
    "schema_version_unsupported": "raised when a store opens, before the app serves",
    "history_unsupported": "raised by flue replay",
    "sync_call_on_event_loop": "raised by *_sync entries in host code",
    "signal_timeout": "raised inside a workflow by wait_for_signal",
    "result_timeout": "?wait=result past wait_timeout answers 202 with the receipt instead",
    "step_error": "raised inside a workflow",
    "step_timeout": "raised inside a workflow",
    "invalid_event": "raised inside a workflow by ctx.emit",
}
#: The stream protocol's errors: listed in the paragraph after the table (streaming.md has the rest).
STREAM_CODES = {
    "invalid_stream_request", "producer_epoch_stale", "stream_not_found", "stream_closed",
    "producer_sequence_gap", "content_type_mismatch", "stream_seq_conflict", "stream_conflict", "stream_gone",
}


def errors_section() -> str:
    text = DOC.read_text()
    return text[text.index("\n## Errors\n") : text.index("\n## Examples with curl\n")]


def test_every_error_code_the_http_surface_answers_is_in_the_table_with_its_status():
    table = {code: status for status, code in ROW.findall(errors_section())}
    answered = {
        code: cls
        for code, cls in error_classes().items()
        if cls.__module__ in MODULES and code not in NOT_ANSWERED and code not in STREAM_CODES
    }
    assert sorted(set(answered) - set(table)) == []
    wrong = {code: (table[code], cls.status) for code, cls in answered.items() if table[code] not in ("any", str(cls.status))}
    assert wrong == {}


def test_the_stream_protocols_errors_are_listed_too():
    section = errors_section()
    assert sorted(code for code in STREAM_CODES if f"`{code}`" not in section) == []


def test_the_route_table_names_every_route_of_the_app():
    routes = DOC.read_text().split("\n## ", 1)[0]
    for path in ("/workflows/{name}", "/runs/{run_id}", "/runs/{run_id}/cancel", "/runs/{run_id}/rerun",
                 "/runs/{run_id}/signals/{name}", "/runs`", "/schedules`", "/schedules/{name}`",
                 "/schedules/{name}/pause", "/schedules/{name}/resume", "/streams/{path}", "/dashboard/"):
        assert path in routes, path
