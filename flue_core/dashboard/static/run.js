// A run's page: its record (GET /runs/{id}?meta) and its events, read live from the run's own
// Durable Streams SSE endpoint (GET /runs/{id}?offset=...&live=sse) until the stream closes.
"use strict";

(() => {
  const {config, el, api, act, runUrl, badge, label, duration, agoNode, when, fullTime, runDuration, jsonNodes, compact, live, toast, FINISHED} = Flue;
  const runId = config.runId;
  const streamUrl = `${config.api}/runs/${encodeURIComponent(runId)}`;

  const $ = (id) => document.getElementById(id);
  const timeline = $("timeline");

  let record = null;
  let offset = "-1"; // where the next read starts: strictly after this
  let lastIndex = -1; // events already shown (a reconnection never shows one twice)
  let firstAt = null; // the first event's time: the timeline counts from it
  let closed = false;
  let source = null;
  const steps = [];
  let attempt = 0;

  // Without the listing there is no runs page to go back to; the crumbs keep the workflow's name.
  if (!config.mayList) $("back").replaceWith(el("span", {}, "Run"));

  // -- the record ---------------------------------------------------------------------------------

  let metaTimer = null;
  function refreshRecord(delay = 0) {
    clearTimeout(metaTimer);
    metaTimer = setTimeout(async () => {
      try {
        record = await api(`${streamUrl}?meta`);
        renderRecord();
      } catch (error) {
        toast(error.status === 404 ? "This run is no longer readable." : `Could not read the run: ${error.message}`);
      }
    }, delay);
  }

  function renderRecord() {
    const run = record;
    document.title = `${run.workflow} ${run.runId} · Flue`;
    $("workflow-name").textContent = run.workflow;
    $("status").replaceWith(Object.assign(badge(run.status, "badge-lg"), {id: "status"}));
    const rows = [
      ["Workflow", el("span", {class: "mono"}, run.workflow)],
      ["Attempts", run.attempt ? String(run.attempt) : el("span", {class: "muted"}, "not started")],
      ["Recoveries", el("span", {id: "recoveries", class: run.recoveries ? null : "muted", title: "times the run was interrupted (a process stopped or died, the store was lost) and resumed"}, String(run.recoveries || 0))],
      ["Created", timeNode(run.createdAt)],
      ["Started", run.startedAt ? timeNode(run.startedAt) : el("span", {class: "muted"}, "—")],
      ["Ended", run.endedAt ? timeNode(run.endedAt) : el("span", {class: "muted"}, "—")],
      ["Duration", runDuration(run)],
    ];
    if (run.key) rows.push(["Idempotency key", el("span", {class: "mono"}, run.key)]);
    if (run.parentRunId) rows.push(["Parent run", el("a", {class: "mono", href: `${config.base}/runs/${encodeURIComponent(run.parentRunId)}`}, run.parentRunId)]);
    if (run.rerunOf) rows.push(["Re-run of", el("a", {class: "mono", id: "rerun-of", href: runUrl(run.rerunOf)}, run.rerunOf)]);
    if (run.queuedFor) rows.push(["Queued for", el("span", {id: "queued-for", title: run.queuedFor.message}, run.queuedFor.message)]);
    else if (run.waitingFor) rows.push([run.status === "scheduled" ? "Starts" : "Waiting for", waitingNode(run)]);
    if (run.priority) rows.push(["Priority", el("span", {id: "priority"}, String(run.priority))]);
    for (const [name, value] of [["Concurrency key", run.concurrencyKey], ["Rate-limit key", run.rateKey], ["Debounce key", run.debounceKey]]) {
      if (value) rows.push([name, el("span", {class: "mono"}, value)]);
    }
    if (run.cancelRequested && !FINISHED.has(run.status)) rows.push(["Cancel", el("span", {class: "warn-text"}, "requested")]);
    $("details").replaceChildren(...rows.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
    $("input").replaceChildren(...jsonNodes(run.input));
    renderOutcome(run);
    renderActions(run);
  }

  function waitingNode(run) {
    const wait = run.waitingFor;
    const what = {
      start: "its start time",
      sleep: "a durable sleep to end",
      signal: `signal ${wait.name}`,
      children: `${(wait.runIds || []).length} child run(s)`,
      retry: "its next attempt",
      debounce: "its debounce window to pass",
    }[wait.kind] || wait.kind;
    const until = run.wakeAt ? [el("span", {class: "muted"}, wait.kind === "signal" ? " · times out " : " · until "), timeNode(run.wakeAt)] : [];
    return el("span", {}, wait.kind === "start" ? [] : what, ...(wait.kind === "start" ? [timeNode(run.wakeAt)] : until));
  }

  function timeNode(iso) {
    const date = new Date(iso);
    return el("span", {title: fullTime(date)}, when(date), " ", el("span", {class: "muted small"}, "· "), el("span", {class: "muted small"}, agoNode(iso)));
  }

  function renderOutcome(run) {
    const card = $("outcome-card");
    const body = $("outcome");
    card.hidden = !FINISHED.has(run.status);
    card.dataset.status = run.status;
    if (run.status === "completed") {
      $("outcome-title").textContent = "Result";
      body.replaceChildren(el("pre", {class: "json"}, jsonNodes(run.result)));
    } else if (run.status === "failed") {
      const error = run.error || {code: "unknown", message: "unknown error"};
      $("outcome-title").textContent = "Error";
      body.replaceChildren(
        el("div", {class: "error-head"}, el("code", {class: "error-code"}, error.code), error.type ? el("span", {class: "muted mono small"}, error.type) : null),
        el("p", {class: "error-message"}, error.message),
        error.traceback ? el("details", {class: "traceback"}, el("summary", {}, "Traceback"), el("pre", {}, error.traceback)) : null,
      );
    } else if (run.status === "cancelled") {
      $("outcome-title").textContent = "Cancelled";
      body.replaceChildren(el("p", {class: "muted"}, "The run was cancelled before it finished."));
    }
  }

  // -- actions ------------------------------------------------------------------------------------
  // Each action the app grants this viewer (config.actions) has a control here; the server checks the
  // grant again on every request.

  const ACTIONS = {
    cancel: (run) => FINISHED.has(run.status) ? null : confirmButton("Cancel run", "Cancel this run?", async () => {
      record = await act(runId, "cancel");
      renderRecord();
      toast(FINISHED.has(record.status) ? `Run ${label(record.status).toLowerCase()}.` : "Cancel requested; the run stops at its next await.", "info");
    }),
    signal: (run) => FINISHED.has(run.status) ? null : signalForm(run),
    rerun: (run) => FINISHED.has(run.status) ? rerunForm() : null,
  };

  /** Re-run a finished run, from a step or (empty) from where it stopped, and open the new run. */
  function rerunForm() {
    const names = el("datalist", {id: "rerun-steps"});
    const fillNames = () => names.replaceChildren(...[...new Set(steps.map((step) => step.key || step.name))].map((name) => el("option", {value: name})));
    const from = el("input", {type: "text", id: "rerun-from", list: "rerun-steps", placeholder: "from step (optional)", "aria-label": "Re-run from step", spellcheck: "false", onfocus: fillNames});
    const send = el("button", {type: "submit", class: "button", id: "rerun", title: "A new run with the same input; the steps stored before the one named are taken over"}, "Re-run");
    async function submit(event) {
      event.preventDefault();
      send.disabled = true;
      try {
        const fromStep = from.value.trim();
        const started = await act(runId, "rerun", fromStep ? {fromStep} : undefined);
        location.href = runUrl(started.runId);
      } catch (error) {
        toast(error.message);
        send.disabled = false;
      }
    }
    fillNames();
    return el("form", {class: "rerun-form", onsubmit: submit}, from, names, send);
  }

  /** Send a named signal with a JSON payload: the name is prefilled when the run waits for one. */
  function signalForm(run) {
    const waitsFor = run.waitingFor && run.waitingFor.kind === "signal" ? run.waitingFor.name : "";
    const name = el("input", {type: "text", id: "signal-name", placeholder: "signal name", value: waitsFor, "aria-label": "Signal name", spellcheck: "false"});
    const data = el("input", {type: "text", id: "signal-data", placeholder: "JSON data, e.g. {\"approved\": true}", "aria-label": "Signal data (JSON)", spellcheck: "false"});
    const send = el("button", {type: "submit", class: "button", id: "signal-send"}, "Send signal");
    async function submit(event) {
      event.preventDefault();
      let payload = null;
      try {
        payload = data.value.trim() ? JSON.parse(data.value) : null;
      } catch (error) {
        toast("The signal's data is not valid JSON.");
        return;
      }
      send.disabled = true;
      try {
        await act(runId, "signal", {name: name.value.trim(), data: payload});
        data.value = "";
        toast(`Signal ${name.value.trim()} sent.`, "info");
        refreshRecord(100);
      } catch (error) {
        toast(error.message);
      } finally {
        send.disabled = false;
      }
    }
    return el("form", {class: "signal-form", onsubmit: submit}, name, data, send);
  }

  let offered = null;
  function renderActions(run) {
    // Rebuilt only when what is offered changes: a refresh of the record must not undo a confirmation.
    const key = `${run.status}:${run.cancelRequested}:${run.waitingFor ? run.waitingFor.kind + run.waitingFor.name : ""}`;
    if (key === offered) return;
    offered = key;
    const controls = (config.actions || []).map((name) => ACTIONS[name] && ACTIONS[name](run)).filter(Boolean);
    $("actions").replaceChildren(...controls);
  }

  /** A button that asks once more before it acts, instead of a modal dialog. */
  function confirmButton(text, question, perform) {
    const box = el("div", {class: "confirm"});
    const idle = () => box.replaceChildren(el("button", {type: "button", class: "button danger-outline", id: "cancel", onclick: ask}, text));
    let reset = null;
    function ask() {
      box.replaceChildren(
        el("span", {class: "confirm-question"}, question),
        el("button", {type: "button", class: "button", id: "cancel-keep", onclick: () => { clearTimeout(reset); idle(); }}, "Keep running"),
        el("button", {type: "button", class: "button danger", id: "cancel-confirm", onclick: go}, "Yes, cancel"),
      );
      reset = setTimeout(idle, 8000);
    }
    async function go(event) {
      clearTimeout(reset);
      event.target.disabled = true;
      try {
        await perform();
      } catch (error) {
        toast(error.message);
        idle();
      }
    }
    idle();
    return box;
  }

  // -- the event stream ---------------------------------------------------------------------------

  function connect() {
    live("connecting", "Connecting");
    $("stream-state").textContent = "connecting…";
    source = new EventSource(`${streamUrl}?offset=${encodeURIComponent(offset)}&live=sse`);
    source.addEventListener("open", () => {
      live("live", "Live");
      $("stream-state").textContent = "live";
    });
    source.addEventListener("data", (message) => {
      for (const event of JSON.parse(message.data)) show(event);
    });
    source.addEventListener("control", (message) => {
      const control = JSON.parse(message.data);
      if (control.streamNextOffset) offset = control.streamNextOffset;
      if (control.streamClosed) finish();
    });
    source.addEventListener("error", () => {
      source.close();
      if (closed) return;
      // The server ends every SSE response after a while (and proxies drop idle ones): resume
      // strictly after the last offset received, never from the start again.
      live("offline", "Reconnecting");
      $("stream-state").textContent = "reconnecting…";
      setTimeout(connect, 1000);
    });
  }

  function finish() {
    closed = true;
    source.close();
    live("ended", "Ended");
    $("stream-state").textContent = `${timeline.children.length} events · ended`;
    refreshRecord();
  }

  const LIFECYCLE = new Set(["run_start", "run_resume", "run_retry", "run_interrupted", "run_waiting", "run_end"]);

  function show(event) {
    if (event.index <= lastIndex) return;
    lastIndex = event.index;
    const at = new Date(event.timestamp);
    if (firstAt === null) firstAt = at;
    if (event.type === "run_start") attempt = event.data.attempt || attempt + 1;
    if (event.type === "progress") renderProgress(event.data);
    if (event.type === "step") addStep(event.data, at);
    timeline.append(entry(event, at));
    if (!closed) $("stream-state").textContent = `${timeline.children.length} events · live`;
    if (LIFECYCLE.has(event.type)) refreshRecord(50);
  }

  function entry(event, at) {
    const since = at - firstAt;
    return el("li", {class: `event type-${kind(event)}`, dataset: {type: event.type, index: String(event.index)}},
      el("span", {class: "event-time", title: fullTime(at)}, since > 0 ? `+${duration(since)}` : when(at)),
      el("span", {class: "event-dot", "aria-hidden": "true"}),
      el("span", {class: "event-type", title: event.type}, event.type),
      el("div", {class: "event-body"}, describe(event)),
    );
  }

  function kind(event) {
    if (event.type === "log") return `log-${event.data.level || "info"}`;
    if (event.type === "run_end") return `end-${event.data.status}`;
    if (event.type.startsWith("run_") || ["progress", "step"].includes(event.type)) return event.type;
    return "custom";
  }

  function describe(event) {
    const data = event.data || {};
    switch (event.type) {
      case "run_queued":
        return ["Queued", data.key ? el("span", {class: "muted"}, ` with key ${data.key}`) : null];
      case "run_start":
        return `Attempt ${data.attempt} started`;
      case "run_resume":
        return `Attempt ${data.attempt} resumed`;
      case "run_waiting":
        return waitingText(data);
      case "signal_received":
        return ["Signal ", el("strong", {}, data.name), " received", data.data === null || data.data === undefined ? null : el("code", {class: "payload"}, " " + compact(data.data, 200))];
      case "signal_delivered":
        return ["Signal ", el("strong", {}, data.name), " delivered"];
      case "signal_timeout":
        return ["No signal ", el("strong", {}, data.name), " in time"];
      case "child_started":
        return ["Child run ", el("a", {class: "mono", href: `${config.base}/runs/${encodeURIComponent(data.runId)}`}, data.runId), el("span", {class: "muted"}, ` · ${data.workflow}`)];
      case "step_retry":
        return ["Step ", el("strong", {}, data.name), ` try ${data.attempt} failed: ${(data.error && data.error.message) || ""}`, el("span", {class: "muted"}, ` · again in ${duration((data.delay || 0) * 1000)}`)];
      case "log":
        return [el("span", {class: `level level-${data.level}`}, data.level), " ", data.message,
          ...Object.entries(data.attributes || {}).map(([k, v]) => el("code", {class: "attr"}, `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`))];
      case "progress":
        return [el("span", {class: "mini-bar"}, fill(data)), " ", progressText(data), data.message ? el("span", {class: "muted"}, ` · ${data.message}`) : null];
      case "step":
        return ["Step ", el("strong", {}, data.name), data.replayed ? el("span", {class: "tag"}, "replayed") : el("span", {class: "muted"}, ` · ${duration(data.durationMs)}`)];
      case "run_retry":
        return [`Attempt ${data.attempt} failed`, data.error ? `: ${data.error.message || data.error.code}` : "", el("span", {class: "muted"}, ` · retrying in ${duration((data.delay || 0) * 1000)}`)];
      case "run_interrupted":
        return [`Attempt ${data.attempt} interrupted`, el("span", {class: "muted"}, ` · ${data.action}`)];
      case "run_end":
        return [badge(data.status), data.durationMs !== undefined ? el("span", {class: "muted"}, ` after ${duration(data.durationMs)}`) : null,
          data.error ? [el("span", {class: "muted"}, " · "), el("span", {class: "error-text"}, data.error.message)] : null];
      default:
        return el("code", {class: "payload"}, compact(data, 400));
    }
  }

  function waitingText(data) {
    const wait = data.for || {};
    const what = {sleep: "Sleeping", signal: `Waiting for signal ${wait.name}`, children: `Waiting for ${(wait.runIds || []).length} child run(s)`, retry: "Waiting to retry"}[wait.kind] || "Waiting";
    return [what, data.until ? el("span", {class: "muted"}, ` until ${when(new Date(data.until))}`) : null];
  }

  // -- progress and steps -------------------------------------------------------------------------

  function fraction(data) {
    return data.total ? Math.max(0, Math.min(1, data.current / data.total)) : null;
  }

  function progressText(data) {
    const share = fraction(data);
    return data.total ? `${data.current} / ${data.total} (${Math.round(share * 100)}%)` : String(data.current);
  }

  function fill(data) {
    const inner = el("span", {});
    const share = fraction(data);
    inner.style.width = share === null ? "100%" : `${share * 100}%`;
    if (share === null) inner.className = "indeterminate";
    return inner;
  }

  function renderProgress(data) {
    $("progress-card").hidden = false;
    $("progress-text").textContent = progressText(data);
    const bar = $("progress-bar");
    const share = fraction(data);
    bar.classList.toggle("indeterminate", share === null);
    bar.firstElementChild.style.width = share === null ? "100%" : `${share * 100}%`;
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuenow", String(data.current));
    if (data.total) bar.setAttribute("aria-valuemax", String(data.total));
    $("progress-message").textContent = data.message || "";
  }

  /** Steps as a waterfall: each bar spans from the step's start (its end less its duration) to its end. */
  function addStep(data, at) {
    const end = at.getTime();
    steps.push({...data, attempt, end, start: end - (data.replayed ? 0 : data.durationMs || 0)});
    const from = Math.min(...steps.map((step) => step.start));
    const span = Math.max(1, Math.max(...steps.map((step) => step.end)) - from);
    const attempts = new Set(steps.map((step) => step.attempt)).size;
    const total = steps.reduce((sum, step) => sum + (step.replayed ? 0 : step.durationMs || 0), 0);
    $("steps-card").hidden = false;
    $("steps-total").textContent = `${steps.length} step${steps.length === 1 ? "" : "s"} · ${duration(total)} in steps`;
    $("steps").replaceChildren(...steps.map((step) => {
      const bar = el("span", {class: "step-fill"});
      bar.style.left = `${(100 * (step.start - from)) / span}%`;
      bar.style.width = `${Math.max(0.6, (100 * (step.end - step.start)) / span)}%`;
      return el("li", {class: step.replayed ? "step replayed" : "step", dataset: {name: step.name}},
        el("span", {class: "step-name mono", title: step.name}, step.name),
        el("span", {class: "step-track"}, bar),
        el("span", {class: "step-time num"}, step.replayed ? el("span", {class: "tag"}, "replayed") : duration(step.durationMs)),
        el("span", {class: "muted small step-attempt"}, attempts > 1 ? `attempt ${step.attempt}` : ""),
      );
    }));
  }

  refreshRecord();
  connect();
})();
