// jobcast.js — the browser client of jobcast (docs/clients.md). A dependency-free ES module.
//
//   import { watchJob } from "/static/jobcast/jobcast.js";
//   const watch = watchJob(jobId, {
//     onSnapshot: (msg, job) => render(job),
//     onProgress: (event, job) => render(job),
//     onLog: (event) => appendLine(event.message),
//     onState: (event, job) => render(job),
//     onStatus: (status) => indicator.textContent = status,  // connecting | live | reconnecting | closed
//   });
//   watch.close();  // stop watching (the job goes on)
//
// It follows docs/protocol.md, "Writing a client": it keeps the last seq, drops what it already
// saw, reconnects after a drop, a 1012 or a 4408 with `after` = the last seq (so nothing is
// missed or repeated), backs off exponentially with jitter, stops after the terminal event, and
// stops for good on the close codes that say retrying cannot help.

export const TERMINAL_STATES = Object.freeze(["succeeded", "failed", "cancelled"]);

// Close codes after which reconnecting cannot help (4401 gets one retry with a fresh credential).
export const STOP_CODES = Object.freeze({
  1008: "refused by the server (policy violation)",
  1009: "refused by the server (message too big)",
  4401: "not authenticated",
  4403: "forbidden: staff users only",
  4404: "not found",
});

export const STATUS = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  CLOSED: "closed",
});

const DEFAULT_BACKOFF = { initial: 500, cap: 10000, giveUpAfter: 120000 };

export function isTerminal(state) {
  return TERMINAL_STATES.includes(state);
}

function isoFromTs(ts) {
  return ts ? new Date(ts * 1000).toISOString() : null;  // milliseconds: a browser's Date has no finer
}

/** The job document with `event` folded in (docs/protocol.md, "Keeping a job document up to date"). */
export function applyEvent(job, event) {
  const next = { ...job, seq: event.seq };
  if (event.type === "progress") {
    next.progress = { current: event.current, total: event.total, percent: event.percent, message: event.message };
  } else if (event.type === "state") {
    Object.assign(next, { state: event.state, result: event.result, error: event.error });
    if (event.state === "running") next.started_at = job.started_at || isoFromTs(event.ts);
    else if (isTerminal(event.state)) next.finished_at = isoFromTs(event.ts);
  }
  return next;
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** A single-use ticket from POST /api/ws-tickets/: with a Bearer `token`, or the session cookie (+ CSRF). */
export async function fetchTicket({ baseUrl = "", token = null } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : { "X-CSRFToken": csrfToken() };
  const response = await fetch(`${baseUrl}/api/ws-tickets/`, {
    method: "POST", headers, credentials: token ? "omit" : "same-origin",
  });
  if (!response.ok) {
    const error = new Error(`POST /api/ws-tickets/ answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return (await response.json()).ticket;
}

/** Cancel a job with the page's session (CSRF from the csrftoken cookie) or a Bearer `token`. */
export async function cancelJob(jobId, { baseUrl = "", token = null } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : { "X-CSRFToken": csrfToken() };
  const response = await fetch(`${baseUrl}/api/jobs/${encodeURIComponent(jobId)}/cancel/`, {
    method: "POST", headers, credentials: token ? "omit" : "same-origin",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `cancel answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function wsBase(baseUrl) {
  const url = new URL(baseUrl || window.location.href, window.location.href);
  return `${url.protocol === "https:" ? "wss:" : "ws:"}//${url.host}${baseUrl ? url.pathname.replace(/\/$/, "") : ""}`;
}

/**
 * The reconnecting socket both watches share. `path(lastSeq)` gives the URL path and query to open;
 * `handle(message)` returns true when the stream is over (the job's terminal event).
 */
function reconnectingSocket(path, handle, options) {
  const backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
  const WebSocketImpl = options.WebSocket || window.WebSocket;
  const onStatus = options.onStatus || (() => {});
  let socket = null, timer = null, stopped = false, failures = 0, failingSince = null, authRetried = false;
  let status = null;

  function setStatus(next, detail = {}) {
    status = next;
    onStatus(next, detail);
  }

  async function credentialQuery() {
    const { auth } = options;
    if (typeof auth === "function") return `ticket=${encodeURIComponent(await auth())}`;
    // A product-signed stream token (docs/integration.md): a string, or a function asked for a fresh
    // one at every (re)connect, e.g. from the product's own backend.
    if (auth && auth.jwt) return `token=${encodeURIComponent(typeof auth.jwt === "function" ? await auth.jwt() : auth.jwt)}`;
    if (auth && auth.token) return `ticket=${encodeURIComponent(await fetchTicket({ baseUrl: options.baseUrl, token: auth.token }))}`;
    if (auth === "ticket") return `ticket=${encodeURIComponent(await fetchTicket({ baseUrl: options.baseUrl }))}`;
    return "";  // the session cookie (a page on the same site)
  }

  function stop(reason, detail = {}) {
    stopped = true;
    clearTimeout(timer);
    setStatus(STATUS.CLOSED, { reason, ...detail });
  }

  function retry(detail) {
    if (stopped) return;
    const now = Date.now();
    if (failingSince === null) failingSince = now;
    const ceiling = Math.min(backoff.cap, backoff.initial * 2 ** failures++);
    const delay = ceiling / 2 + Math.random() * ceiling / 2;  // jitter: a restart drops everyone at once
    if (now + delay - failingSince > backoff.giveUpAfter) {
      stop("gave up", detail);
      return;
    }
    setStatus(STATUS.RECONNECTING, { ...detail, delay });
    timer = setTimeout(connect, delay);
  }

  function flowing() {
    failures = 0;
    failingSince = null;
    authRetried = false;
  }

  async function connect() {
    if (stopped) return;
    if (status !== STATUS.RECONNECTING) setStatus(STATUS.CONNECTING);
    let credential;
    try {
      credential = await credentialQuery();
    } catch (error) {
      if (error.status === 401 || error.status === 403) stop("not authenticated", { status: error.status });
      else retry({ reason: `no ticket (${error.message})` });
      return;
    }
    if (stopped) return;
    const [pathPart, query] = path().split("?");
    const search = [query, credential].filter(Boolean).join("&");
    const ws = new WebSocketImpl(`${wsBase(options.baseUrl)}${pathPart}${search ? "?" + search : ""}`);
    socket = ws;
    let over = false;
    ws.onopen = () => { if (!stopped) setStatus(STATUS.LIVE); };
    ws.onmessage = (frame) => {
      if (stopped || over) return;
      let message;
      try { message = JSON.parse(frame.data); } catch { return; }
      flowing();
      over = handle(message) === true;
      if (over) stop("finished");
    };
    ws.onclose = (event) => {
      if (socket === ws) socket = null;
      if (stopped || over) return;
      const code = event.code;
      if (code === 4401 && !authRetried && options.auth) {
        authRetried = true;  // a ticket is single use, a signed token expires: one more try with a fresh one
        retry({ code, reason: STOP_CODES[code] });
      } else if (code in STOP_CODES) {
        stop(STOP_CODES[code], { code });
      } else {
        retry({ code, reason: event.reason || `connection closed (${code})` });
      }
    };
  }

  connect();
  return {
    get status() { return status; },
    close() {
      if (stopped) return;
      stop("stopped");
      if (socket) socket.close(1000);
    },
  };
}

/**
 * Watch one job: its snapshot, then every event once, in order, until its terminal event.
 *
 * options: onSnapshot(msg, job), onProgress(event, job), onLog(event, job), onState(event, job),
 * onStatus(status, detail); `job`: a document the page already has (then the watch starts after
 * its seq, and a finished one is not watched at all); `after`: the last seq already seen;
 * `auth`: nothing for the session cookie (a page on the same site), "ticket" for a ticket paid
 * with the session, `{token}` for a ticket paid with an API token, or an async function returning
 * a ticket; `baseUrl`: the server when it is not this page's; `backoff`: {initial, cap, giveUpAfter} in ms.
 * Returns {job, lastSeq, status, close()}.
 */
export function watchJob(jobId, options = {}) {
  const call = (name, ...args) => options[name] && options[name](...args);
  const state = { job: options.job || null, lastSeq: options.job ? options.job.seq : (options.after ?? null) };

  function handle(message) {
    if (message.type === "snapshot") {
      const seq = message.job.seq;
      if (!message.reset && state.lastSeq !== null && seq <= state.lastSeq) return false;  // older than ours
      state.job = message.job;
      state.lastSeq = seq;
      call("onSnapshot", message, state.job);
      return isTerminal(message.job.state);
    }
    if (typeof message.seq !== "number") return false;  // an `error` frame: not an event
    if (state.lastSeq !== null && message.seq <= state.lastSeq) return false;  // a replayed duplicate
    state.lastSeq = message.seq;
    if (state.job) state.job = applyEvent(state.job, message);
    if (message.type === "progress") call("onProgress", message, state.job);
    else if (message.type === "log") call("onLog", message, state.job);
    else if (message.type === "state") call("onState", message, state.job);
    return message.type === "state" && isTerminal(message.state);
  }

  if (state.job && isTerminal(state.job.state)) {
    call("onStatus", STATUS.CLOSED, { reason: "finished" });
    return { get job() { return state.job; }, get lastSeq() { return state.lastSeq; }, status: STATUS.CLOSED, close() {} };
  }
  const path = () => `/ws/jobs/${encodeURIComponent(jobId)}/` + (state.lastSeq === null ? "" : `?after=${state.lastSeq}`);
  const socket = reconnectingSocket(path, handle, options);
  return {
    get job() { return state.job; },
    get lastSeq() { return state.lastSeq; },
    get status() { return socket.status; },
    close: socket.close,
  };
}

/**
 * Watch all of the user's jobs (`/ws/jobs/`), or with `all: true` every user's (staff only,
 * `/ws/jobs/?all=1`; its snapshots carry `owner`). The same callbacks as watchJob, each with the
 * job's document (null for a job the watch has no document of; pass the page's documents as `jobs`).
 * A snapshot comes for every active job on each (re)connect and for every
 * new job. The stream never ends by itself and has no replay: `onStatus(LIVE, {reconnected: true})`
 * tells a page to refresh its list over HTTP (jobs that ended while it was away).
 * Returns {jobs (a Map by id), status, close()}.
 */
export function watchAll(options = {}) {
  const call = (name, ...args) => options[name] && options[name](...args);
  const jobs = new Map((options.jobs || []).map((job) => [job.id, job]));  // documents the page already has
  let opened = 0;

  function handle(message) {
    if (message.type === "snapshot") {
      const known = jobs.get(message.job.id);
      if (known && message.job.seq < known.seq) return false;
      jobs.set(message.job.id, message.job);
      call("onSnapshot", message, message.job);
      return false;
    }
    if (typeof message.seq !== "number") return false;
    const known = jobs.get(message.job_id);
    if (known && message.seq <= known.seq) return false;  // the snapshot already covered it
    const job = known ? applyEvent(known, message) : null;
    if (job) jobs.set(job.id, job);
    if (message.type === "progress") call("onProgress", message, job);
    else if (message.type === "log") call("onLog", message, job);
    else if (message.type === "state") call("onState", message, job);
    return false;
  }

  const onStatus = (status, detail) => {
    if (status === STATUS.LIVE) detail = { ...detail, reconnected: opened++ > 0 };
    call("onStatus", status, detail);
  };
  const socket = reconnectingSocket(() => (options.all ? "/ws/jobs/?all=1" : "/ws/jobs/"), handle, { ...options, onStatus });
  return { jobs, get status() { return socket.status; }, close: socket.close };
}
