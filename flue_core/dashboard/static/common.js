// What both pages use: their configuration, building DOM nodes, reading the API, formatting.
// Every value from the API reaches the page through textContent, never as HTML.
"use strict";

const Flue = (() => {
  const config = JSON.parse(document.getElementById("flue-dashboard").textContent);

  /** el("td", {class: "x", title: "y"}, child, "text", ...) */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** An error of the API: its envelope's code and message, and the HTTP status. */
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** GET (or another method) a path of the app's API, with the browser's own credentials. */
  async function api(path, {method = "GET", params = null, headers = {}, body = undefined} = {}) {
    const query = params ? "?" + new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== "")) : "";
    let response;
    try {
      response = await fetch(path + query, {method, headers: {accept: "application/json", ...headers}, body, credentials: "same-origin", cache: "no-store"});
    } catch (error) {
      throw new ApiError(0, "unreachable", "The server cannot be reached.");
    }
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (answer && answer.error) || {};
      throw new ApiError(response.status, error.code || "http_" + response.status, error.message || response.statusText);
    }
    return answer;
  }

  /** POST an action of the dashboard (cancel, signal...), with the page's anti-forgery token. */
  function act(runId, action, payload = undefined) {
    const headers = {"x-flue-csrf": config.csrf};
    if (payload !== undefined) headers["content-type"] = "application/json";
    const body = payload === undefined ? undefined : JSON.stringify(payload);
    return api(`${config.base}/runs/${encodeURIComponent(runId)}/${action}`, {method: "POST", headers, body});
  }

  function runUrl(runId) {
    return `${config.base}/runs/${encodeURIComponent(runId)}`;
  }

  const STATUS_LABELS = {queued: "Queued", scheduled: "Scheduled", running: "Running", waiting: "Waiting",
    completed: "Completed", failed: "Failed", cancelled: "Cancelled"};
  const FINISHED = new Set(["completed", "failed", "cancelled"]);

  function label(status) {
    return STATUS_LABELS[status] || String(status).charAt(0).toUpperCase() + String(status).slice(1);
  }

  function badge(status, extra = "") {
    return el("span", {class: `badge status-${status} ${extra}`.trim()}, el("i", {"aria-hidden": "true"}), label(status));
  }

  // -- time ---------------------------------------------------------------------------------------

  function duration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "";
    if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
    const s = ms / 1000;
    if (s < 10) return `${s.toFixed(2)} s`;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  function ago(date, now = Date.now()) {
    const s = Math.round((now - date.getTime()) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  const sameDay = (a, b) => a.toDateString() === b.toDateString();
  const clock = new Intl.DateTimeFormat(undefined, {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
  const dated = new Intl.DateTimeFormat(undefined, {month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false});

  /** 14:03:12 today, Jun 2, 14:03 another day. */
  function when(date) {
    return sameDay(date, new Date()) ? clock.format(date) : dated.format(date);
  }

  function fullTime(date) {
    return date.toISOString().replace("T", " ").replace("Z", " UTC");
  }

  /** A <time> that keeps saying how long ago it was (the ticker updates it). */
  function agoNode(iso) {
    const date = new Date(iso);
    return el("time", {datetime: iso, title: fullTime(date), class: "ago", dataset: {since: iso}}, ago(date));
  }

  /** How long a run has been going: fixed once ended, ticking while it runs. */
  function runDuration(run) {
    if (run.startedAt && run.endedAt) return el("span", {}, duration(new Date(run.endedAt) - new Date(run.startedAt)));
    if (run.startedAt && !FINISHED.has(run.status)) return el("span", {class: "ticking", dataset: {from: run.startedAt}}, duration(Date.now() - new Date(run.startedAt)));
    return el("span", {class: "muted"}, "—");
  }

  setInterval(() => {
    const now = Date.now();
    for (const node of document.querySelectorAll("[data-since]")) node.textContent = ago(new Date(node.dataset.since), now);
    for (const node of document.querySelectorAll("[data-from]")) node.textContent = duration(now - new Date(node.dataset.from));
  }, 1000);

  // -- JSON ---------------------------------------------------------------------------------------

  /** Pretty JSON as spans (keys, strings, numbers, literals), for a <pre>. */
  function jsonNodes(value, indent = 0) {
    const pad = "  ".repeat(indent);
    if (value === null || typeof value !== "object") {
      const kind = value === null ? "null" : typeof value === "string" ? "string" : typeof value === "number" ? "number" : "literal";
      return [el("span", {class: `j-${kind}`}, JSON.stringify(value))];
    }
    const isArray = Array.isArray(value);
    const entries = isArray ? value.map((v) => [null, v]) : Object.entries(value);
    if (!entries.length) return [isArray ? "[]" : "{}"];
    const out = [isArray ? "[\n" : "{\n"];
    entries.forEach(([key, item], i) => {
      out.push(pad + "  ");
      if (key !== null) out.push(el("span", {class: "j-key"}, JSON.stringify(key)), ": ");
      out.push(...jsonNodes(item, indent + 1));
      out.push(i < entries.length - 1 ? ",\n" : "\n");
    });
    out.push(pad + (isArray ? "]" : "}"));
    return out;
  }

  function compact(value, limit = 120) {
    const text = value === undefined ? "" : JSON.stringify(value);
    return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
  }

  // -- the page's chrome ----------------------------------------------------------------------------

  const liveNode = document.getElementById("live");

  /** The indicator in the top bar: "live", "paused", "ended", "offline" or "connecting". */
  function live(state, text) {
    liveNode.dataset.state = state;
    liveNode.lastElementChild.textContent = text;
  }

  let toastTimer = null;
  function toast(message, kind = "error") {
    const node = document.getElementById("toast");
    node.textContent = message;
    node.dataset.kind = kind;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 6000);
  }

  // A page's polling: `schedule()` calls `refresh` again after `ms` while the page is visible (else
  // `paused()`), `stop()` cancels that call; a page that becomes visible again refreshes at once.
  function poller(refresh, ms, paused) {
    let timer = null;
    const stop = () => clearTimeout(timer);
    const schedule = () => {
      stop();
      if (document.visibilityState === "visible") timer = setTimeout(refresh, ms);
      else paused();
    };
    document.addEventListener("visibilitychange", () => (document.visibilityState === "visible" ? refresh() : schedule()));
    return {schedule, stop};
  }

  return {config, el, append, api, act, ApiError, runUrl, label, badge, FINISHED, duration, ago, when, fullTime,
    agoNode, runDuration, jsonNodes, compact, live, toast, poller};
})();
