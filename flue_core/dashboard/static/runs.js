// The runs page: GET /runs with the page's filters and cursor, polled while the tab is visible.
// The filters, the cursor and the page size (limit) live in the address (shareable, kept by
// back/forward); the cursors of the pages before this one live in the history entry, for "Newer".
"use strict";

(() => {
  const {config, el, api, runUrl, badge, label, agoNode, when, fullTime, runDuration, compact, live} = Flue;
  const POLL_MS = 2000;
  const PAGE_SIZE = 50;

  const rows = document.getElementById("rows");
  const empty = document.getElementById("empty");
  const workflowInput = document.getElementById("workflow");
  const workflowList = document.getElementById("workflows");
  const chips = document.getElementById("statuses");
  const newer = document.getElementById("newer");
  const older = document.getElementById("older");
  const pageInfo = document.getElementById("page-info");
  const summary = document.getElementById("summary");

  let view = readAddress();
  let nextCursor = null;
  let generation = 0; // answers to an older view are dropped
  let shown = null; // run ids on screen, to mark the ones that arrive
  const workflowsSeen = new Set();

  function readAddress() {
    const query = new URLSearchParams(location.search);
    const state = history.state || {};
    return {
      workflow: query.get("workflow") || "",
      status: query.get("status") || "",
      cursor: query.get("cursor") || "",
      limit: query.get("limit") || "",
      stack: Array.isArray(state.stack) ? state.stack : [],
    };
  }

  function go(next, {push = false} = {}) {
    view = {...view, ...next};
    const query = new URLSearchParams();
    for (const name of ["workflow", "status", "cursor", "limit"]) if (view[name]) query.set(name, view[name]);
    const address = `${location.pathname}${query.toString() ? "?" + query : ""}`;
    history[push ? "pushState" : "replaceState"]({stack: view.stack}, "", address);
    shown = null;
    refresh();
  }

  // -- filters ------------------------------------------------------------------------------------

  function renderChips() {
    chips.replaceChildren(
      ...["", ...config.statuses].map((status) =>
        el("button", {
          type: "button",
          class: `chip ${status ? "status-" + status : "chip-all"}`,
          role: "radio",
          "aria-checked": String(view.status === status),
          dataset: {status},
          onclick: () => go({status, cursor: "", stack: []}),
        }, status ? el("i", {"aria-hidden": "true"}) : null, status ? label(status) : "All"),
      ),
    );
  }

  let typing = null;
  workflowInput.value = view.workflow;
  workflowInput.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => go({workflow: workflowInput.value.trim(), cursor: "", stack: []}), 350);
  });
  document.getElementById("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    go({workflow: workflowInput.value.trim(), cursor: "", stack: []});
  });

  newer.addEventListener("click", () => {
    const stack = view.stack.slice();
    const cursor = stack.pop() || "";
    go({cursor, stack}, {push: true});
  });
  older.addEventListener("click", () => {
    if (nextCursor) go({cursor: nextCursor, stack: [...view.stack, view.cursor]}, {push: true});
  });
  window.addEventListener("popstate", () => {
    view = readAddress();
    workflowInput.value = view.workflow;
    shown = null;
    refresh();
  });

  // -- the table ----------------------------------------------------------------------------------

  function outcome(run) {
    if (run.status === "failed" && run.error) return el("span", {class: "outcome-error", title: run.error.message}, run.error.message);
    if (run.status === "completed") return el("code", {class: "outcome-result", title: compact(run.result, 2000)}, compact(run.result, 90));
    if (run.status === "cancelled") return el("span", {class: "muted"}, "cancelled");
    if (run.queuedFor) return el("span", {class: "muted queued-for", title: run.queuedFor.message}, run.queuedFor.message);
    if (run.cancelRequested) return el("span", {class: "muted"}, "cancelling…");
    return el("span", {class: "muted"}, "—");
  }

  function row(run, fresh) {
    const open = runUrl(run.runId);
    const created = new Date(run.createdAt);
    return el("tr", {
      class: fresh ? "fresh" : null,
      dataset: {runId: run.runId, status: run.status, signature: JSON.stringify(run)},
      onclick: (event) => {
        if (event.target.closest("a") || getSelection().toString()) return;
        location.href = open;
      },
    },
    el("td", {class: "c-status"}, badge(run.status)),
    el("td", {class: "c-run"}, el("a", {href: open, class: "mono run-link"}, run.runId), run.key ? el("div", {class: "key mono", title: "idempotency key"}, run.key) : null),
    el("td", {class: "c-workflow"}, el("button", {type: "button", class: "link-like", title: `Only runs of ${run.workflow}`, onclick: (event) => {
      event.stopPropagation();
      workflowInput.value = run.workflow;
      go({workflow: run.workflow, cursor: "", stack: []});
    }}, run.workflow)),
    el("td", {class: "c-outcome"}, outcome(run)),
    el("td", {class: "c-created"}, el("span", {title: fullTime(created)}, when(created)), el("span", {class: "muted"}, " · ", agoNode(run.createdAt))),
    el("td", {class: "num"}, runDuration(run)),
    el("td", {class: "num"}, run.attempt ? String(run.attempt) : el("span", {class: "muted"}, "—")),
    );
  }

  /** Replace rows whose record changed, keep the others (and any text selected in them). */
  function renderRows(runs) {
    const existing = new Map([...rows.children].map((tr) => [tr.dataset.runId, tr]));
    const next = runs.map((run) => {
      const current = existing.get(run.runId);
      if (current && current.dataset.signature === JSON.stringify(run)) return current;
      return row(run, shown !== null && !shown.has(run.runId));
    });
    rows.replaceChildren(...next);
    shown = new Set(runs.map((run) => run.runId));
  }

  function renderPage(page) {
    renderRows(page.runs);
    nextCursor = page.nextCursor;
    older.disabled = !nextCursor;
    newer.disabled = !view.cursor;
    newer.textContent = view.cursor && !view.stack.length ? "← Newest" : "← Newer";
    pageInfo.textContent = view.cursor ? (view.stack.length ? `Page ${view.stack.length + 1}` : "Older runs") : "";
    for (const run of page.runs) workflowsSeen.add(run.workflow);
    workflowList.replaceChildren(...[...workflowsSeen].sort().map((name) => el("option", {value: name})));
    const filtered = [view.status && label(view.status).toLowerCase(), "runs", view.workflow && `of ${view.workflow}`].filter(Boolean).join(" ");
    summary.textContent = page.runs.length
      ? `${page.runs.length}${nextCursor ? "+" : ""} ${filtered}, newest first`
      : `No ${filtered}`;
    empty.hidden = page.runs.length > 0;
    if (!page.runs.length) {
      empty.replaceChildren(
        el("strong", {}, view.workflow || view.status ? "No runs match these filters." : "No runs yet."),
        el("p", {}, view.workflow || view.status
          ? el("a", {href: `${config.base}/`}, "Clear the filters")
          : ["Start one with ", el("code", {}, "POST /workflows/<name>"), ", ", el("code", {}, "workflows.start()"), " or ", el("code", {}, "flue start"), "."]),
      );
    }
  }

  function renderError(error) {
    rows.replaceChildren();
    shown = null;
    older.disabled = newer.disabled = true;
    empty.hidden = false;
    const reset = error.status === 400 ? el("p", {}, el("a", {href: `${config.base}/`}, "Back to all runs")) : null;
    empty.replaceChildren(el("strong", {class: "error-text"}, error.message), reset);
  }

  // -- polling ------------------------------------------------------------------------------------

  async function refresh() {
    polling.stop();
    renderChips();
    const mine = ++generation;
    try {
      const page = await api(`${config.api}/runs`, {params: {workflow: view.workflow, status: view.status, cursor: view.cursor, limit: view.limit || PAGE_SIZE}});
      if (mine !== generation) return;
      renderPage(page);
      live("live", "Live");
    } catch (error) {
      if (mine !== generation) return;
      if (error.status === 0) {
        live("offline", "Offline, retrying");
      } else {
        renderError(error.status === 404 ? new Flue.ApiError(404, error.code, "This listing is not available to you.") : error);
        live("paused", "Stopped");
        if (error.status === 400 || error.status === 404) return; // asking again will not help
      }
    }
    polling.schedule();
  }

  const polling = Flue.poller(refresh, POLL_MS, () => live("paused", "Paused"));
  refresh();
})();
