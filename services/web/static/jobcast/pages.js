// The pages' script: live bars, the job page, the submit form's checks. Uses jobcast.js (docs/clients.md).
// Every page works without it (server-rendered, plain form posts); this makes them live.
import { STATUS, cancelJob, isTerminal, watchAll, watchJob } from "./jobcast.js";

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

function readJson(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

function formatNumber(value) {
  return value === null || value === undefined ? "" : String(Math.round(value * 100) / 100);
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  seconds = Math.round(seconds);
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

function localTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// --- the connection indicator -------------------------------------------------------------------

const STATUS_TEXT = {
  [STATUS.CONNECTING]: "Connecting…",
  [STATUS.LIVE]: "Live",
  [STATUS.RECONNECTING]: "Reconnecting…",
  [STATUS.CLOSED]: "Offline",
};

function showStatus(status, detail = {}) {
  const element = $("#connection");
  if (!element) return;
  element.hidden = false;
  element.dataset.status = status;
  let text = STATUS_TEXT[status] || status;
  if (status === STATUS.RECONNECTING && detail.delay) text = `Reconnecting in ${Math.ceil(detail.delay / 1000)} s…`;
  if (status === STATUS.CLOSED && detail.reason === "finished") text = "Finished";
  else if (status === STATUS.CLOSED && detail.reason && detail.reason !== "stopped") text = `Offline: ${detail.reason}`;
  element.textContent = text;
}

// --- bars and rows --------------------------------------------------------------------------

function renderBar(bar, job) {
  if (!bar) return;
  const { percent, message } = job.progress;
  bar.dataset.state = job.state;
  const known = percent !== null && percent !== undefined;
  const width = known ? percent : (job.state === "succeeded" ? 100 : 0);
  bar.classList.toggle("indeterminate", !known && job.state === "running");
  $(".bar-fill", bar).style.width = `${width}%`;
  if (known) {
    bar.setAttribute("aria-valuenow", formatNumber(percent));
    bar.setAttribute("aria-valuetext", `${formatNumber(percent)}%${message ? ": " + message : ""}`);
  } else {
    bar.removeAttribute("aria-valuenow");
    bar.setAttribute("aria-valuetext", job.state === "running" ? "in progress" : job.state);
  }
}

function renderState(element, state) {
  if (!element) return;
  element.textContent = state;
  element.className = `state state-${state}`;
}

function newRow(job, owner) {
  const row = document.createElement("tr");
  row.dataset.jobId = job.id;
  const staff = owner !== undefined;
  // The admin's job pages are under the changelist URL the page links to (its app label decides it).
  const link = staff ? `${$("[data-admin-changelist]").getAttribute("href")}${job.id}/change/` : `/jobs/${job.id}/`;
  const cells = [
    `<td data-label="Job"><a></a><br><code class="muted"></code></td>`,
    staff ? `<td data-label="Owner" data-owner></td>` : "",
    `<td data-label="State"><span class="state" data-state-badge></span></td>`,
    `<td class="progress" data-label="Progress"><div class="progress-line"><div class="bar" role="progressbar" data-bar aria-valuemin="0" aria-valuemax="100"><div class="bar-fill"></div></div><span class="percent" data-percent></span></div><span class="muted" data-message></span></td>`,
    staff ? `<td data-label="Waiting / running"><span data-duration></span></td>` : `<td data-label="Created"><time data-created></time></td>`,
  ];
  row.innerHTML = cells.join("");
  const anchor = $("a", row);
  anchor.href = link;
  anchor.textContent = job.kind;
  $("code", row).textContent = job.id.slice(0, 8);
  $("[data-bar]", row).setAttribute("aria-label", `Progress of ${job.kind} job ${job.id.slice(0, 8)}`);
  if (staff) $("[data-owner]", row).textContent = owner;
  const duration = $("[data-duration]", row);
  if (duration) {
    duration.dataset.createdAt = job.created_at;
    duration.dataset.startedAt = job.started_at || "";
  }
  const created = $("[data-created]", row);
  if (created) created.setAttribute("datetime", job.created_at);
  return row;
}

function updateRow(row, job) {
  renderState($("[data-state-badge]", row), job.state);
  renderBar($("[data-bar]", row), job);
  const percent = job.progress.percent;
  $("[data-percent]", row).textContent = percent === null || percent === undefined ? "" : `${formatNumber(percent)}%`;
  $("[data-message]", row).textContent = job.progress.message || "";
  const duration = $("[data-duration]", row);
  if (duration) {
    duration.dataset.startedAt = job.started_at || "";
    duration.dataset.finished = isTerminal(job.state) ? "1" : "";
    renderDuration(duration);
  }
  const created = $("[data-created]", row);
  if (created) created.textContent = new Date(created.getAttribute("datetime")).toLocaleString();
}

function renderDuration(element, now = Date.now()) {
  if (element.dataset.finished) {
    element.textContent = "ended";
    return;
  }
  const started = element.dataset.startedAt ? Date.parse(element.dataset.startedAt) : null;
  const since = started ?? Date.parse(element.dataset.createdAt);
  element.textContent = `${started ? "running" : "queued"} ${formatDuration((now - since) / 1000)}`;
}

function tickDurations() {
  const now = Date.now();
  for (const element of $$("[data-duration]")) renderDuration(element, now);
}

// --- the jobs pages ---------------------------------------------------------------------------

function jobsPage({ all }) {
  const body = $("#jobs tbody");
  const initial = readJson("jobs-data");
  if (!initial) return;  // an older page of the list: not live
  const rows = new Map($$("tr[data-job-id]", body).map((row) => [row.dataset.jobId, row]));
  for (const job of initial) updateRow(rows.get(job.id), job);

  const newest = () => (initial.length ? initial[0].created_at : "");
  function upsert(job, owner) {
    let row = rows.get(job.id);
    // My jobs are newest first and this page shows the newest ones: an active job older than
    // those is on a later page. The staff page lists every active job, oldest first.
    if (!row && !all && job.created_at < newest()) return;
    if (!row) {
      row = newRow(job, all ? owner : undefined);
      row.classList.add("new");
      if (all) body.append(row); else body.prepend(row);  // staff: oldest first; mine: newest first
      rows.set(job.id, row);
      $("#no-jobs").hidden = true;
    }
    updateRow(row, job);
  }

  async function refresh() {
    // /ws/jobs/ has no replay: after a reconnect, jobs that ended meanwhile are read over HTTP.
    if (all) return;
    const response = await fetch(`/api/jobs/?limit=${Math.min(100, Math.max(rows.size, 1))}`, { credentials: "same-origin" });
    if (!response.ok) return;
    for (const job of (await response.json()).items) {
      if (rows.has(job.id)) updateRow(rows.get(job.id), job);
    }
  }

  const update = (event, job) => { if (job && rows.has(job.id)) updateRow(rows.get(job.id), job); };
  watchAll({
    all, jobs: initial,
    onSnapshot: (message, job) => upsert(job, message.owner),
    onProgress: update,
    onState: update,
    onStatus: (status, detail) => {
      showStatus(status, detail);
      if (status === STATUS.LIVE && detail.reconnected) refresh();
    },
  });
  if (all) {
    tickDurations();
    setInterval(tickDurations, 1000);
  }
}

// --- the job page ------------------------------------------------------------------------------

function jobPage() {
  let job = readJson("job-data");
  const log = $("#log");

  function render() {
    renderState($("#job-state"), job.state);
    renderBar($("#job [data-bar]"), job);
    const { current, total, percent, message } = job.progress;
    $("#job-message").textContent = message || "";
    $("#job-count").textContent = total === null || total === undefined ? formatNumber(current) : `${formatNumber(current)} / ${formatNumber(total)}`;
    $("#job-percent").textContent = percent === null || percent === undefined ? "–" : `${formatNumber(percent)}%`;
    $("#job-attempts").textContent = job.attempts;
    const over = isTerminal(job.state);
    $("#cancel-form").hidden = over;
    const resultSection = $("#result-section");
    resultSection.hidden = job.state !== "succeeded";
    if (job.state === "succeeded") $("#job-result").textContent = JSON.stringify(job.result, null, 2);
    $("#error-section").hidden = !job.error;
    if (job.error) {
      const box = $("#job-error");
      box.replaceChildren();
      const strong = document.createElement("strong");
      strong.textContent = job.error.type;
      box.append(strong, `: ${job.error.message}`);
    }
    tick();
  }

  function tick() {
    const started = job.started_at ? Date.parse(job.started_at) : null;
    const finished = job.finished_at ? Date.parse(job.finished_at) : null;
    const end = finished ?? Date.now();
    $("#job-elapsed").textContent = started ? formatDuration((end - started) / 1000) : (job.state === "queued" ? "queued" : "–");
    const { current, total } = job.progress;
    let eta = "–";
    if (job.state === "succeeded") eta = "done";
    else if (isTerminal(job.state)) eta = "–";
    else if (started && total && current > 0 && current < total) {
      eta = formatDuration(((end - started) / 1000) * (total - current) / current);
    }
    $("#job-eta").textContent = eta;
  }

  function appendLog(event) {
    const item = document.createElement("li");
    item.dataset.seq = event.seq;
    const time = document.createElement("time");
    time.dataset.ts = event.ts;
    time.textContent = localTime(new Date(event.ts * 1000));
    const line = document.createElement("span");
    line.dataset.line = "";
    line.textContent = event.message;
    item.append(time, line);
    log.append(item);
    $("#no-log").hidden = true;
    log.scrollTop = log.scrollHeight;
  }

  for (const time of $$("time[data-ts]", log)) time.textContent = localTime(new Date(Number(time.dataset.ts) * 1000));
  const watch = watchJob(job.id, {
    job,
    onSnapshot: (message, doc) => {
      job = doc;
      if (message.reset) appendLog({ seq: doc.seq, ts: Date.now() / 1000, message: "(some events were trimmed from history; showing the job's current state)" });
      render();
    },
    onProgress: (event, doc) => { job = doc; render(); },
    onLog: (event, doc) => { job = doc; appendLog(event); },
    onState: (event, doc) => {
      job = doc;
      render();
      if (event.state === "running") refreshAttempts();
    },
    onStatus: showStatus,
  });

  async function refreshAttempts() {
    // No event carries `attempts` (docs/protocol.md): read it when the job (re)starts.
    const response = await fetch(`/api/jobs/${job.id}/`, { credentials: "same-origin" });
    if (response.ok) {
      job = { ...job, attempts: (await response.json()).attempts };
      $("#job-attempts").textContent = job.attempts;
    }
  }
  render();
  setInterval(tick, 1000);

  $("#cancel-form").addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const button = $("#cancel-button"), status = $("#cancel-status");
    button.disabled = true;
    status.textContent = "Cancelling…";
    try {
      const answer = await cancelJob(job.id);
      status.textContent = answer.state === "cancelled" ? "Cancelled." : "Cancel requested; the job stops at its next check.";
    } catch (error) {
      status.textContent = error.status === 409 ? "The job has already finished." : `Could not cancel: ${error.message}`;
      button.disabled = false;
    }
  });
  window.jobcastWatch = watch;  // for debugging in the console
}

// --- the submit form ----------------------------------------------------------------------------

export function checkField(input) {
  // The same rules the kind's JSON Schema gives the server; the server checks again.
  const value = input.value.trim();
  if (input.type === "checkbox") return "";
  if (value === "") return input.required ? "This field is required." : "";
  if (input.dataset.widget === "json") {
    try { JSON.parse(value); } catch { return "Enter valid JSON."; }
    return "";
  }
  if (input.dataset.widget === "lines") {
    const lines = input.value.split("\n").map((line) => line.trim()).filter(Boolean);
    if (input.dataset.minItems && lines.length < Number(input.dataset.minItems)) return `Enter at least ${input.dataset.minItems} line(s).`;
    if (input.dataset.maxItems && lines.length > Number(input.dataset.maxItems)) return `Enter at most ${input.dataset.maxItems} lines.`;
    return "";
  }
  if (input.type === "number") {
    const number = Number(value);
    if (!Number.isFinite(number)) return "Enter a number.";
    if (input.step === "1" && !Number.isInteger(number)) return "Enter a whole number.";
    if (input.min !== "" && number < Number(input.min)) return `Input should be greater than or equal to ${input.min}.`;
    if (input.max !== "" && number > Number(input.max)) return `Input should be less than or equal to ${input.max}.`;
    return "";
  }
  if (input.minLength > 0 && value.length < input.minLength) return `Enter at least ${input.minLength} characters.`;
  if (input.maxLength > 0 && value.length > input.maxLength) return `Enter at most ${input.maxLength} characters.`;
  if (input.pattern && !new RegExp(`^(?:${input.pattern})$`).test(value)) return "Enter a value in the expected format.";
  return "";
}

function showFieldError(input, message) {
  const error = document.getElementById(`${input.id}-error`);
  if (error) {
    error.textContent = message;
    error.hidden = !message;
  }
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

function submitPage() {
  const kindForm = $("#kind-form");
  $("#kind-select").addEventListener("change", () => kindForm.submit());
  $("#kind-choose").hidden = true;
  const form = $("#params-form");
  form.noValidate = true;  // our messages, next to the fields, in the same place as the server's
  const inputs = $$("input[name]:not([type=hidden]), textarea[name], select[name]", form);
  // Checked on submit, then again as a marked field is corrected. Not on blur: a message appearing
  // under a field moves the submit button down between the press and the release of a click.
  for (const input of inputs) {
    input.addEventListener("input", () => { if (input.getAttribute("aria-invalid")) showFieldError(input, checkField(input)); });
  }
  form.addEventListener("submit", (submitted) => {
    let first = null;
    for (const input of inputs) {
      const message = checkField(input);
      showFieldError(input, message);
      if (message && !first) first = input;
    }
    const summary = $("#form-errors");
    if (first) {
      submitted.preventDefault();
      summary.replaceChildren(Object.assign(document.createElement("p"), { textContent: "Please correct the fields marked below." }));
      summary.hidden = false;
      first.focus();
      return;
    }
    $("#submit-button").disabled = true;  // one submission per click
  });
}

// --- dispatch ------------------------------------------------------------------------------------

const page = document.body.dataset.page;
if (page === "jobs") jobsPage({ all: false });
else if (page === "all-jobs") jobsPage({ all: true });
else if (page === "job") jobPage();
else if (page === "submit") submitPage();
for (const time of $$("time[data-created]")) time.textContent = new Date(time.getAttribute("datetime")).toLocaleString();
