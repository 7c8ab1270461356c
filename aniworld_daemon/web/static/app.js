// The dashboard: login, then the queue, the series, rescans and the system, live from the WebSocket.

import { api, ApiError, credentials, setUnauthorizedHandler, Stream } from "./api.js";

const $ = (id) => document.getElementById(id);
const state = { queue: null, series: [], detailKey: null, view: "queue", auth: null, scan: null };
let stream = null;
const timers = {};

// ------------------------------------------------------------------------------------------------ small helpers

/** An element with attributes (`text`, `class`, `on<event>`, others as attributes) and children. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function episodeLabel(item) {
  return `${item.serie_name || item.serie_id} S${String(item.season).padStart(2, "0")}E${String(item.episode).padStart(2, "0")}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function when(text) {
  if (!text) return "–";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString();
}

function showMessage(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.className = `banner ${isError ? "error" : "info"}`;
  box.hidden = false;
  clearTimeout(timers.message);
  timers.message = setTimeout(() => { box.hidden = true; }, 6000);
}

/** Run an API action from a control: errors become a message, never an unhandled rejection. */
async function act(action, done) {
  try {
    const result = await action();
    if (done) showMessage(typeof done === "function" ? done(result) : done);
    return result;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    showMessage(err.message || String(err), true);
    return null;
  }
}

/** Call `fn` once shortly after the last of several calls. */
function debounce(name, fn, wait = 150) {
  clearTimeout(timers[name]);
  timers[name] = setTimeout(() => { fn().catch(() => {}); }, wait);
}

function emptyItem(text) { return el("li", { class: "empty", text }); }

function stats(container, pairs) {
  container.replaceChildren(...pairs.map(([label, value]) => el("div", {}, el("dt", { text: label }), el("dd", { text: String(value) }))));
}

// ------------------------------------------------------------------------------------------------ views

function show(view) {
  state.view = view;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `${view}-view`;
  for (const tab of document.querySelectorAll(".tab")) {
    const current = tab.dataset.view === view || (view === "detail" && tab.dataset.view === "series");
    if (current) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
}

// ------------------------------------------------------------------------------------------------ the queue

async function loadQueue() {
  renderQueue(await api("GET", "api/queue/status?limit=200"));
}

function renderQueue(queue) {
  state.queue = queue;
  const status = queue.status;
  const stat = queue.statistics;
  const badge = $("queue-state");
  let label = status.is_running ? "running" : "stopped";
  if (status.is_paused) label = `paused (${status.pause_reason === "low_disk_space" ? "low disk space" : status.pause_reason || "user"})`;
  badge.textContent = `Queue ${label}`;
  badge.className = `badge ${status.is_running && !status.is_paused ? "ok" : ""}`;
  $("queue-start").disabled = status.is_running;
  $("queue-stop").disabled = !status.is_running;
  $("queue-pause").disabled = status.is_paused;
  $("queue-resume").disabled = !status.is_paused;
  const pause = $("pause-banner");
  pause.hidden = status.pause_reason !== "low_disk_space";
  pause.textContent = "Downloads are paused: the library's disk is almost full. Free some space, then resume.";

  stats($("queue-stats"), [
    ["Pending", stat.pending_count],
    ["Active", stat.active_count],
    ["Completed", stat.completed_count],
    ["Failed", stat.failed_count],
    ["Downloaded", `${stat.total_downloaded_mb} MB`],
    ["Average speed", stat.average_speed_mbps === null ? "–" : `${stat.average_speed_mbps} MB/s`],
    ["Time remaining", duration(stat.estimated_time_remaining)],
  ]);

  $("active-list").replaceChildren(...(status.active_downloads.length
    ? status.active_downloads.map(activeItem) : [emptyItem("Nothing is downloading.")]));
  const pending = status.pending_queue;
  $("pending-list").replaceChildren(...(pending.length ? pending.map((item, index) => pendingItem(item, index, pending.length))
    : [emptyItem("Nothing is waiting.")]));
  const failed = [...status.failed_downloads, ...(status.cancelled_downloads || [])];
  $("failed-list").replaceChildren(...(failed.length ? failed.map(failedItem) : [emptyItem("Nothing failed.")]));
  $("completed-list").replaceChildren(...(status.completed_downloads.length
    ? status.completed_downloads.map(completedItem) : [emptyItem("Nothing completed yet.")]));
}

function removeButton(item) {
  return el("button", {
    type: "button",
    "aria-label": `Remove ${episodeLabel(item)}`,
    text: "Remove",
    onclick: () => act(() => api("DELETE", `api/queue/${encodeURIComponent(item.id)}`), "Removed").then(() => loadQueue()),
  });
}

function activeItem(item) {
  const bar = el("span");
  const node = el(
    "li",
    { "data-id": item.id, class: "active-item" },
    el("span", { class: "name", text: episodeLabel(item) }),
    removeButton(item),
    el("div", { class: "bar", role: "progressbar", "aria-label": `Progress of ${episodeLabel(item)}`, "aria-valuemin": "0", "aria-valuemax": "100" }, bar),
    el("span", { class: "detail" }),
  );
  updateProgress(node, item.progress || {});
  return node;
}

function updateProgress(node, progress) {
  const percent = progress.percent ?? null;
  const bar = node.querySelector(".bar");
  bar.firstChild.style.width = `${percent ?? 0}%`;
  if (percent === null) bar.removeAttribute("aria-valuenow");
  else bar.setAttribute("aria-valuenow", String(percent));
  const speed = progress.speed_mbps ?? (progress.speed_bps != null ? progress.speed_bps / 1e6 : null);
  const parts = [
    percent === null ? "starting…" : `${percent.toFixed(1)} %`,
    speed === null || speed === undefined ? null : `${speed.toFixed(2)} MB/s`,
    progress.eta_seconds == null ? null : `ETA ${duration(progress.eta_seconds)}`,
  ].filter(Boolean);
  node.querySelector(".detail").textContent = parts.join(" · ");
}

function onProgress(data) {
  const entries = Array.isArray(data.active) ? data.active.map((entry) => ({ ...entry, item_id: entry.id })) : [data];
  for (const entry of entries) {
    const node = document.querySelector(`#active-list li[data-id="${CSS.escape(entry.item_id)}"]`);
    if (node) updateProgress(node, entry);
    else debounce("queue", loadQueue);
  }
}

function pendingItem(item, index, count) {
  const label = episodeLabel(item);
  const move = (to) => act(() => api("POST", "api/queue/reorder", { item_id: item.id, new_position: to })).then(() => loadQueue());
  return el(
    "li",
    { "data-id": item.id, class: "pending-item" },
    el("span", { class: "name", text: label }),
    el("span", { class: "state", text: `priority ${item.priority}` }),
    el("button", { type: "button", "aria-label": `Move ${label} up`, text: "↑", disabled: index === 0, onclick: () => move(index - 1) }),
    el("button", { type: "button", "aria-label": `Move ${label} down`, text: "↓", disabled: index === count - 1, onclick: () => move(index + 1) }),
    removeButton(item),
  );
}

function failedItem(item) {
  const label = episodeLabel(item);
  return el(
    "li",
    { "data-id": item.id, class: "failed-item" },
    el("span", { class: "name", text: label }),
    el("span", { class: "state", text: item.status }),
    el("button", {
      type: "button",
      "aria-label": `Retry ${label}`,
      text: "Retry",
      onclick: () => act(() => api("POST", `api/queue/retry/${encodeURIComponent(item.id)}`), "Queued again").then(() => loadQueue()),
    }),
    removeButton(item),
    el("span", { class: "detail error-text", text: item.error ? `${item.error.code}: ${item.error.message}` : "cancelled" }),
  );
}

function completedItem(item) {
  return el(
    "li",
    { "data-id": item.id, class: "completed-item" },
    el("span", { class: "name", text: episodeLabel(item) }),
    el("span", { class: "detail", text: `${item.file_path || ""} · ${when(item.completed_at)}` }),
  );
}

function bindQueueControls() {
  for (const action of ["start", "stop", "pause", "resume"]) {
    $(`queue-${action}`).addEventListener("click", () => act(() => api("POST", `api/queue/${action}`)).then(() => loadQueue()));
  }
  $("retry-all").addEventListener("click", () => act(() => api("POST", "api/queue/retry", { item_ids: [] }), (r) => `${r.retried_count} queued again`).then(() => loadQueue()));
  $("clear-failed").addEventListener("click", () => act(() => api("DELETE", "api/queue/failed"), (r) => `${r.cleared_count} cleared`).then(() => loadQueue()));
  $("clear-completed").addEventListener("click", () => act(() => api("DELETE", "api/queue/completed"), (r) => `${r.cleared_count} cleared`).then(() => loadQueue()));
}

// ------------------------------------------------------------------------------------------------ the series

function missingCount(series) {
  return Object.values(series.missing_episodes || {}).reduce((sum, list) => sum + list.length, 0);
}

async function loadSeries() {
  const page = await api("GET", "api/anime?limit=1000");
  state.series = page.items;
  const list = $("series-list");
  list.replaceChildren(...(page.items.length ? page.items.map((series) => el(
    "li",
    { "data-key": series.key, class: "series-item" },
    el("span", { class: "name" }, el("a", {
      href: `#series/${encodeURIComponent(series.key)}`,
      text: series.name || series.key,
    })),
    el("span", { class: "state", text: `${missingCount(series)} missing` }),
    el("span", { class: "state", text: `${series.episodes.downloaded} downloaded` }),
    el("span", { class: "state", text: series.monitored ? "monitored" : "not monitored" }),
  )) : [emptyItem("No series followed yet: search for one above.")]));
}

async function search(query) {
  const results = await api("GET", `api/search?q=${encodeURIComponent(query)}`);
  const followed = new Set(state.series.map((series) => series.key));
  $("search-results").replaceChildren(...(results.results.length ? results.results.map((result) => {
    const years = result.start_year ? ` (${result.start_year}${result.end_year ? `–${result.end_year}` : ""})` : "";
    return el(
      "li",
      { class: "search-result" },
      el("span", { class: "name", text: `${result.title}${years}` }),
      followed.has(result.key) ? el("span", { class: "state", text: "followed" }) : el("button", {
        type: "button",
        "aria-label": `Follow ${result.title}`,
        text: "Follow",
        onclick: (event) => follow(result.url || result.key, event.currentTarget),
      }),
      result.description ? el("span", { class: "detail", text: result.description.slice(0, 200) }) : null,
    );
  }) : [emptyItem(`Nothing found for “${query}”.`)]));
}

async function follow(link, button) {
  if (button) button.disabled = true;
  const added = await act(() => api("POST", "api/anime/add", { link }), (series) => `Following ${series.name}`);
  if (button) button.disabled = false;
  if (added) {
    $("search-results").replaceChildren();
    await loadSeries().catch(() => {});
    location.hash = `#series/${encodeURIComponent(added.key)}`;
  }
}

function bindSeriesControls() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("search-input").value.trim();
    if (!query) return;
    if (/^https?:\/\//.test(query)) follow(query);
    else act(() => search(query));
  });
  $("follow-url").addEventListener("click", () => {
    const link = $("search-input").value.trim();
    if (link) follow(link);
  });
  $("detail-back").addEventListener("click", () => { location.hash = "#series"; });
  $("detail-download").addEventListener("click", () => act(
    () => api("POST", `api/anime/${encodeURIComponent(state.detailKey)}/download`),
    (r) => `${r.added_items.length} episodes queued`,
  ).then(() => loadDetail()));
  $("detail-rescan").addEventListener("click", () => act(
    () => api("POST", "api/anime/rescan", { key: state.detailKey }),
    "Rescan started",
  ));
  $("detail-monitored").addEventListener("change", (event) => act(
    () => api("PATCH", `api/anime/${encodeURIComponent(state.detailKey)}`, { monitored: event.target.checked }),
    (r) => (r.monitored ? "Monitored" : "No longer monitored"),
  ));
  $("detail-languages-save").addEventListener("click", () => {
    const languages = $("detail-languages").value.split(/[\s,]+/).filter(Boolean);
    act(() => api("PATCH", `api/anime/${encodeURIComponent(state.detailKey)}`, { languages }), "Languages saved");
  });
  const unfollow = $("detail-unfollow");
  unfollow.addEventListener("click", async () => {
    if (unfollow.dataset.armed !== "yes") {
      unfollow.dataset.armed = "yes";
      unfollow.textContent = "Really unfollow? Click again";
      timers.unfollow = setTimeout(() => { unfollow.dataset.armed = ""; unfollow.textContent = "Unfollow"; }, 5000);
      return;
    }
    clearTimeout(timers.unfollow);
    unfollow.dataset.armed = "";
    unfollow.textContent = "Unfollow";
    await act(() => api("DELETE", `api/anime/${encodeURIComponent(state.detailKey)}`), "Unfollowed");
    location.hash = "#series";
  });
}

async function loadDetail() {
  if (!state.detailKey) return;
  let series;
  try {
    series = await api("GET", `api/anime/${encodeURIComponent(state.detailKey)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      location.hash = "#series";
      return;
    }
    throw err;
  }
  $("detail-title").textContent = series.name || series.key;
  const years = series.year_start ? `${series.year_start}${series.year_end ? `–${series.year_end}` : ""} · ` : "";
  $("detail-meta").textContent = `${years}${missingCount(series)} missing · ${series.folder || "no folder yet"} · ${series.link}`;
  $("detail-monitored").checked = series.monitored;
  if (document.activeElement !== $("detail-languages")) $("detail-languages").value = series.languages.join(", ");
  const seasons = new Map();
  for (const episode of series.episode_list) {
    if (!seasons.has(episode.season)) seasons.set(episode.season, []);
    seasons.get(episode.season).push(episode);
  }
  const tables = [...seasons.entries()].sort((a, b) => a[0] - b[0]).map(([season, episodes]) => el(
    "table",
    { class: "season" },
    el("caption", { text: season === 0 ? "Movies and specials" : `Season ${season}` }),
    el("thead", {}, el("tr", {}, el("th", { text: "Episode" }), el("th", { text: "State" }), el("th", { text: "Title" }))),
    el("tbody", {}, ...episodes.map((episode) => el(
      "tr",
      { "data-episode": `${episode.season}-${episode.episode}` },
      el("td", { text: String(episode.episode) }),
      el("td", {}, el("span", { class: `state state-${episode.state}`, text: episode.state.replace("_", " ") })),
      el("td", { text: episode.title_en || episode.title_de || "" }),
    ))),
  ));
  $("detail-seasons").replaceChildren(...(tables.length ? tables : [el("p", { class: "muted", text: "No episodes known yet: rescan the series." })]));
}

// ------------------------------------------------------------------------------------------------ rescans

async function loadScans() {
  const page = await api("GET", "api/scans?limit=10");
  $("scan-list").replaceChildren(...(page.items.length ? page.items.map((report) => {
    const missing = Object.values(report.missing).reduce((a, b) => a + b, 0);
    const errors = Object.entries(report.errors);
    return el(
      "li",
      { class: "scan-item", "data-id": report.id },
      el("span", { class: "name", text: `${when(report.started_at)} · ${report.trigger}` }),
      el("span", { class: "state", text: report.status }),
      el("span", { class: "detail", text: `${report.series_checked} series · ${report.requests} requests · ${report.new_episodes} new · ${missing} missing` }),
      errors.length ? el("ul", { class: "detail error-text" }, ...errors.map(([key, message]) => el("li", { text: `${key}: ${message}` }))) : null,
    );
  }) : [emptyItem("No rescan yet.")]));
}

function renderScanProgress(text) {
  $("scan-progress").textContent = text;
  $("rescan-now").disabled = Boolean(text);
}

function onScanMessage(message) {
  const data = message.data;
  if (message.type === "scan_status") {
    renderScanProgress(data.running ? "Rescan running…" : "");
    return;
  }
  if (message.type === "scan_started") renderScanProgress(`Rescan started: series 0/${data.series_total}`);
  if (message.type === "scan_progress") {
    renderScanProgress(`Rescanning: series ${data.series_done}/${data.series_total} · ${data.requests} requests${data.current ? ` · ${data.current}` : ""}`);
  }
  if (message.type === "scan_complete" || message.type === "scan_failed") {
    renderScanProgress("");
    if (message.type === "scan_failed") showMessage(`Rescan failed: ${data.error_message}`, true);
    debounce("scans", loadScans);
    debounce("series", loadSeries);
    debounce("system", loadSystem);
    if (state.detailKey) debounce("detail", loadDetail);
  }
}

// ------------------------------------------------------------------------------------------------ the system

async function loadSystem() {
  const [system, schedule] = await Promise.all([api("GET", "api/system/status"), api("GET", "api/scheduler/config")]);
  $("version").textContent = `v${system.version}`;
  const problems = system.checks.filter((check) => check.level !== "ok");
  const banner = $("health-banner");
  banner.hidden = problems.length === 0;
  banner.replaceChildren(
    el("strong", { text: `Health: ${system.status}` }),
    el("ul", {}, ...problems.map((check) => el("li", { text: `${check.name}: ${check.message}` }))),
  );
  banner.className = `banner ${problems.some((check) => check.level === "error") ? "error" : "warn"}`;
  stats($("system-info"), [
    ["Version", system.version],
    ["Status", system.status],
    ["Up for", duration(system.uptime_seconds)],
    ["Last rescan", system.scans.last ? when(system.scans.last.finished_at || system.scans.last.started_at) : "never"],
    ["Next rescan", when(schedule.next_run)],
    ["Schedule", `${schedule.description} (${schedule.source})`],
  ]);
  $("health-checks").replaceChildren(...system.checks.map((check) => el(
    "li",
    { class: `check check-${check.level}` },
    el("span", { class: "name", text: check.name }),
    el("span", { class: `state ${check.level === "ok" ? "state-downloaded" : "state-missing"}`, text: check.level }),
    el("span", { class: "detail", text: check.message }),
  )));
}

// ------------------------------------------------------------------------------------------------ live updates

function onMessage(message) {
  switch (message.type) {
    case "queue_status":
      if (message.data && message.data.status) renderQueue(message.data);
      else debounce("queue", loadQueue);
      break;
    case "download_progress":
      onProgress(message.data);
      break;
    case "download_started":
    case "download_cancelled":
    case "download_failed":
    case "queue_started":
    case "queue_stopped":
    case "queue_paused":
    case "queue_resumed":
      debounce("queue", loadQueue);
      break;
    case "download_complete":
      debounce("queue", loadQueue);
      debounce("series", loadSeries, 500);
      if (state.detailKey) debounce("detail", loadDetail, 500);
      break;
    case "scan_status":
    case "scan_started":
    case "scan_progress":
    case "scan_complete":
    case "scan_failed":
      onScanMessage(message);
      break;
    case "system_status":
    case "health_changed":
      debounce("system", loadSystem);
      break;
    case "series_added":
    case "series_removed":
    case "series_updated":
    case "episodes_found":
      debounce("series", loadSeries);
      if (state.detailKey) debounce("detail", loadDetail);
      break;
    case "server_shutdown":
      setConnection("reconnecting");
      break;
    default:
      break;
  }
}

function setConnection(status) {
  const badge = $("connection");
  badge.textContent = status === "open" ? "live" : "reconnecting…";
  badge.className = `badge ${status === "open" ? "ok" : ""}`;
  $("reconnecting").hidden = status === "open";
}

async function loadAll() {
  const results = await Promise.allSettled([loadQueue(), loadSeries(), loadScans(), loadSystem(), loadDetail()]);
  const failed = results.find((result) => result.status === "rejected");
  if (failed && !(failed.reason instanceof ApiError && failed.reason.status === 401)) {
    showMessage(failed.reason.message || String(failed.reason), true);
  }
}

// ------------------------------------------------------------------------------------------------ routing and login

function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#/, ""));
  if (hash.startsWith("series/")) {
    state.detailKey = hash.slice("series/".length);
    show("detail");
    loadDetail().catch((err) => showMessage(err.message, true));
    return;
  }
  state.detailKey = null;
  show(["queue", "series", "scans", "system"].includes(hash) ? hash : "queue");
}

async function authenticate() {
  let status;
  try {
    status = await api("GET", "api/auth/status");
  } catch (err) {
    $("login-view").hidden = true;
    setConnection("reconnecting");
    setTimeout(authenticate, 2000);
    return;
  }
  state.auth = status;
  if (status.authenticated) {
    $("login-view").hidden = true;
    $("logout").hidden = status.method === "ingress";
    startApp();
    return;
  }
  credentials.clear();
  stopApp();
  $("login-view").hidden = false;
  $("login-form").hidden = !status.password_login;
  $("key-form").hidden = status.password_login;
  $("connection").textContent = "not logged in";
  (status.password_login ? $("password") : $("api-key")).focus();
}

function startApp() {
  $("app-view").hidden = false;
  route();
  loadAll();
  if (!stream) {
    stream = new Stream({ message: onMessage, status: setConnection, reconnected: () => loadAll() });
    stream.start();
  }
  clearInterval(timers.poll);
  // No event tells when a health check changes its mind (a full disk, an unwritable library): ask now and then.
  timers.poll = setInterval(() => { if (!document.hidden) loadSystem().catch(() => {}); }, 5000);
}

function stopApp() {
  $("app-view").hidden = true;
  clearInterval(timers.poll);
  if (stream) stream.stop();
  stream = null;
}

function bindLogin() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const session = await api("POST", "api/auth/login", { password: $("password").value });
      credentials.setToken(session.access_token);
      $("password").value = "";
      $("login-error").textContent = "";
      authenticate();
    } catch (err) {
      $("login-error").textContent = err.message;
    }
  });
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    credentials.setKey($("api-key").value.trim());
    $("api-key").value = "";
    const status = await api("GET", "api/auth/status").catch(() => null);
    if (status && status.authenticated) {
      $("login-error").textContent = "";
      authenticate();
    } else {
      credentials.clear();
      $("login-error").textContent = "This API key is not valid.";
    }
  });
  $("logout").addEventListener("click", async () => {
    if (credentials.token) await api("POST", "api/auth/logout").catch(() => {});
    credentials.clear();
    authenticate();
  });
}

function main() {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => { location.hash = `#${tab.dataset.view}`; });
  }
  window.addEventListener("hashchange", route);
  bindLogin();
  bindQueueControls();
  bindSeriesControls();
  $("rescan-now").addEventListener("click", () => act(() => api("POST", "api/scheduler/trigger-rescan"), "Rescan started"));
  setUnauthorizedHandler(() => { if (state.auth && state.auth.method !== "ingress") authenticate(); });
  authenticate();
}

main();
