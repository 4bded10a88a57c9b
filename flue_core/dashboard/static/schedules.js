// The schedules page: GET /schedules with each schedule's next ticks and last runs, polled while the
// tab is visible; Pause and Resume post the dashboard's schedule actions with the page's token.
"use strict";

(() => {
  const {config, el, api, runUrl, badge, label, when, fullTime, live, toast} = Flue;
  const POLL_MS = 5000;
  const TICKS = 5;
  const RUNS = 5;

  const rows = document.getElementById("rows");
  const empty = document.getElementById("empty");
  const summary = document.getElementById("summary");

  let generation = 0; // answers older than an action's are dropped

  /** "in 3 min", "in 2 h 5 min", "in 4 d 6 h"; "due" once it has come. */
  function until(date, now = Date.now()) {
    const minutes = Math.floor((date.getTime() - now) / 60000);
    if (minutes < 0) return "due";
    if (minutes < 1) return "in less than a minute";
    if (minutes < 60) return `in ${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return `in ${hours} h` + (minutes % 60 ? ` ${minutes % 60} min` : "");
    return `in ${Math.floor(hours / 24)} d` + (hours % 24 ? ` ${hours % 24} h` : "");
  }

  function nextTicks(schedule) {
    if (!schedule.nextTicks.length) return el("span", {class: "muted"}, "never again");
    const [first, ...rest] = schedule.nextTicks.map((iso) => new Date(iso));
    return el("div", {class: "ticks"},
      schedule.paused ? el("div", {class: "muted small"}, "would run at") : null,
      el("div", {class: "tick-next"}, el("time", {datetime: first.toISOString(), title: fullTime(first)}, when(first)),
        el("span", {class: "muted"}, " · ", until(first))),
      el("div", {class: "tick-rest muted"}, rest.map((date, i) => [i ? ", " : "", el("time", {datetime: date.toISOString(), title: fullTime(date)}, when(date))])),
    );
  }

  function lastRuns(schedule) {
    const started = schedule.lastRuns || [];
    if (!started.length) return el("span", {class: "muted"}, "none yet");
    return el("ul", {class: "last-runs"}, started.map((run) => {
      const tick = new Date(run.tick || run.createdAt);
      return el("li", {dataset: {runId: run.runId}},
        el("a", {href: runUrl(run.runId), class: `badge status-${run.status}`, title: `${label(run.status)}: run ${run.runId}, tick of ${fullTime(tick)}`},
          el("i", {"aria-hidden": "true"}), when(tick)));
    }));
  }

  function actionButton(schedule) {
    const action = schedule.paused ? "resume" : "pause";
    return el("button", {type: "button", class: "button", dataset: {action}, onclick: (event) => change(schedule.name, action, event.currentTarget)},
      schedule.paused ? "Resume" : "Pause");
  }

  function row(schedule) {
    return el("tr", {dataset: {schedule: schedule.name, paused: String(schedule.paused)}},
      el("td", {class: "c-schedule"}, el("div", {class: "mono schedule-name"}, schedule.name),
        el("div", {class: "muted small"}, schedule.declared ? `${schedule.workflow} · declared in code` : schedule.workflow)),
      el("td", {class: "c-cron"}, el("code", {}, schedule.cron), el("div", {class: "muted small"}, schedule.timezone)),
      el("td", {class: "c-state"}, el("span", {class: `badge state-${schedule.paused ? "paused" : "active"}`}, el("i", {"aria-hidden": "true"}), schedule.paused ? "Paused" : "Active")),
      el("td", {class: "c-ticks"}, nextTicks(schedule)),
      el("td", {class: "c-last"}, lastRuns(schedule)),
      el("td", {class: "c-actions"}, actionButton(schedule)),
    );
  }

  function renderSchedules(found) {
    rows.replaceChildren(...found.map(row));
    const paused = found.filter((s) => s.paused).length;
    summary.textContent = found.length
      ? `${found.length} schedule${found.length === 1 ? "" : "s"}${paused ? `, ${paused} paused` : ""}; times in your time zone`
      : "No schedules";
    empty.hidden = found.length > 0;
    if (!found.length) {
      empty.replaceChildren(el("strong", {}, "No schedules yet."),
        el("p", {}, ["Create one with ", el("code", {}, "@workflow(schedule=...)"), ", ", el("code", {}, "schedules.create()"), ", ",
          el("code", {}, "POST /schedules"), " or ", el("code", {}, "flue schedules create"), "."]));
    }
  }

  async function change(name, action, button) {
    button.disabled = true;
    generation++;
    try {
      await api(`${config.base}/schedules/${encodeURIComponent(name)}/${action}`, {method: "POST", headers: {"x-flue-csrf": config.csrf}});
      toast(action === "pause" ? `Paused ${name}: its ticks are skipped until it is resumed.` : `Resumed ${name}: it runs from its next tick.`, "info");
    } catch (error) {
      toast(error.message);
    }
    refresh();
  }

  async function refresh() {
    polling.stop();
    const mine = ++generation;
    try {
      const answer = await api(`${config.api}/schedules`, {params: {ticks: TICKS, runs: RUNS}});
      if (mine !== generation) return;
      renderSchedules(answer.schedules);
      live("live", "Live");
    } catch (error) {
      if (mine !== generation) return;
      if (error.status === 0) {
        live("offline", "Offline, retrying");
      } else {
        rows.replaceChildren();
        empty.hidden = false;
        empty.replaceChildren(el("strong", {class: "error-text"}, error.status === 404 ? "The schedules are not available to you." : error.message));
        live("paused", "Stopped");
        if (error.status === 400 || error.status === 404) return;
      }
    }
    polling.schedule();
  }

  const polling = Flue.poller(refresh, POLL_MS, () => live("paused", "Paused"));
  refresh();
})();
