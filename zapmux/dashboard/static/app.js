// zapmux dashboard. It reads and drives the tenants through the same JSON API as any
// other client, follows them live through /events (Server-Sent Events) and falls back to
// polling when the stream is down. No framework and no build step, on purpose: the page
// is served by the gateway itself and must work with no internet.
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("zapmux-config").textContent);
  const BASE = config.base || "";
  const STATES = new Map(config.states.map((s) => [s.id, s]));
  const KEY_STORAGE = "zapmux.apiKey";
  const POLL_FAST_MS = 4000; // no live stream: often enough to follow a QR rotation
  const POLL_SLOW_MS = 30000; // live stream up: only a safety net for what it missed
  const EVENTS_RETRY_MS = 5000;
  const RUNNING = new Set(["connecting", "awaiting_qr", "connected", "reconnecting"]);
  // Events may come named (`event: status`) or as plain `data:` envelopes: both are heard.
  const EVENT_NAMES = ["status", "qr", "deleted", "tenant.deleted"];
  const DELETED = new Set(["deleted", "tenant.deleted"]);

  const tenants = new Map(); // tenant_id → {data, card, qr, qrAt, qrTimer, pairCode, eventAt}
  let events = null;
  let live = false;
  let authDeclined = false; // the person cancelled the key prompt: do not ask again unasked

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  // --- talking to the API --------------------------------------------------------------

  class AuthNeeded extends Error {}

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  const savedKey = () => localStorage.getItem(KEY_STORAGE) || "";

  function fetchWithKey(method, path, body, key) {
    const headers = { Accept: "application/json" };
    if (key) headers["X-Api-Key"] = key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) init.body = JSON.stringify(body);
    return fetch(BASE + path, init);
  }

  // Sends a request; on 401 asks for the admin key (once) and tries again with it.
  async function api(method, path, body) {
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const key = savedKey();
      const response = await fetchWithKey(method, path, body, key);
      // 403: a tenant's token was entered where the admin key is needed; same remedy.
      if (response.status !== 401 && response.status !== 403) return response;
      // Requests in flight when the key was entered come back 401: retry them, do not re-ask.
      if (savedKey() && savedKey() !== key) continue;
      if (authDeclined || !askForKey(Boolean(key))) break;
    }
    showAuthNeeded(true);
    throw new AuthNeeded("admin key needed");
  }

  // Like api(), but returns the JSON body and turns an error answer into an ApiError.
  async function request(method, path, body) {
    const response = await api(method, path, body);
    const payload = await response.json().catch(() => ({}));
    if (!response.ok || payload.success === false) {
      const error = payload.error || {};
      const message = error.message || payload.detail || `${response.status} ${response.statusText}`;
      throw new ApiError(String(message), response.status);
    }
    return { status: response.status, payload, response };
  }

  function askForKey(rejected) {
    if (rejected) localStorage.removeItem(KEY_STORAGE);
    const question = rejected
      ? "That admin key was not accepted. Enter the admin key (ZAPMUX_API_KEY):"
      : "This zapmux server needs its admin key (ZAPMUX_API_KEY):";
    const key = (window.prompt(question) || "").trim();
    if (!key) {
      authDeclined = true;
      return false;
    }
    localStorage.setItem(KEY_STORAGE, key);
    authDeclined = false;
    showAuthNeeded(false);
    connectEvents(); // EventSource carries the key in the URL: reopen it with the new one
    return true;
  }

  function showAuthNeeded(needed) {
    $("auth-needed").hidden = !needed;
    $("change-key").hidden = needed || !savedKey();
    if (needed) setLiveMode("offline", "Admin key needed");
  }

  // --- live events and polling -----------------------------------------------------------

  function connectEvents() {
    if (events) events.close();
    const key = savedKey();
    events = new EventSource(`${BASE}/events${key ? `?api_key=${enc(key)}` : ""}`);
    events.onopen = () => {
      live = true;
      setLiveMode("live", "Live");
      refresh().catch(reportRefreshError); // catch up on what happened while it was down
    };
    events.onmessage = (e) => onEnvelope(e.data, "message");
    for (const name of EVENT_NAMES) events.addEventListener(name, (e) => onEnvelope(e.data, name));
    events.onerror = () => {
      live = false;
      setLiveMode("polling", "Updating every few seconds");
      // EventSource reconnects by itself after a drop, but gives up for good on an HTTP
      // error (401 before the key is known, a proxy's 502): then try again later.
      if (events && events.readyState === EventSource.CLOSED) {
        events = null;
        setTimeout(() => events || authDeclined || connectEvents(), EVENTS_RETRY_MS);
      }
    };
  }

  function onEnvelope(raw, name) {
    let envelope;
    try {
      envelope = JSON.parse(raw);
    } catch {
      return; // not ours (a keep-alive); nothing to show
    }
    const kind = envelope.event || name;
    const data = envelope.data || {};
    const id = envelope.tenant_id || data.tenant_id;
    if (!id) return;
    if (kind === "status") applyStatus({ ...data, tenant_id: id }, true);
    if (tenants.has(id)) tenants.get(id).eventAt = Date.now();
    else if (kind === "qr") applyQr(id, data);
    else if (DELETED.has(kind)) removeTenant(id);
  }

  async function poll() {
    try {
      await refresh();
    } catch (error) {
      reportRefreshError(error);
    } finally {
      setTimeout(poll, live ? POLL_SLOW_MS : POLL_FAST_MS);
    }
  }

  async function refresh() {
    const asked = Date.now();
    const { payload } = await request("GET", "/tenants");
    const seen = new Set();
    for (const tenant of payload.tenants || []) {
      seen.add(tenant.tenant_id);
      // An event that came while the list was on its way is newer than the list.
      if (!(tenants.get(tenant.tenant_id)?.eventAt > asked)) applyStatus(tenant, false);
    }
    for (const id of [...tenants.keys()]) if (!seen.has(id)) removeTenant(id);
    $("empty").hidden = tenants.size > 0;
    if (!live) setLiveMode("polling", "Updating every few seconds");
  }

  function reportRefreshError(error) {
    if (error instanceof AuthNeeded) return; // the banner says it
    if (error instanceof ApiError) notify(`The server answered: ${error.message}`, "error");
    else setLiveMode("offline", "Server unreachable");
    console.warn("zapmux: refresh failed", error);
  }

  // --- tenant state ------------------------------------------------------------------------

  // Takes a tenant snapshot (from /tenants or a status event) and shows it.
  // `changed` says it came from an event: the QR may have rotated, so fetch it again.
  function applyStatus(data, changed) {
    const entry = entryFor(data.tenant_id);
    entry.data = { ...entry.data, ...data };
    if (entry.data.status === "awaiting_qr") {
      if (changed || !entry.qr || expired(entry.qr)) scheduleQr(entry, 250);
    } else {
      entry.qr = null;
    }
    if (entry.data.status === "connected") entry.pairCode = null;
    render(entry);
  }

  function applyQr(id, qr) {
    const entry = entryFor(id);
    if (!qr || !qr.qr_image) {
      scheduleQr(entry, 250); // an event without the image: ask the API for it
      return;
    }
    entry.qr = qr;
    entry.qrAt = Date.now();
    entry.data.status = "awaiting_qr"; // a code to scan can only mean that
    // Without the live stream nobody tells us about the next code: look when this one ends.
    const ends = toMillis(qr.expires_at);
    if (ends) scheduleQr(entry, Math.max(ends - Date.now(), 0) + 500);
    render(entry);
  }

  // Fetches the tenant's current QR after `delayMs`, unless a newer one arrives meanwhile.
  function scheduleQr(entry, delayMs) {
    clearTimeout(entry.qrTimer);
    const asked = Date.now();
    entry.qrTimer = setTimeout(() => {
      if (entry.qrAt > asked && !expired(entry.qr)) return;
      loadQr(entry).catch((error) => console.warn("zapmux: QR fetch failed", error));
    }, delayMs);
  }

  async function loadQr(entry) {
    const id = entry.data.tenant_id;
    // Asking for a QR starts pairing: only ask for a tenant that is showing one already.
    if (tenants.get(id) !== entry || entry.data.status !== "awaiting_qr") return;
    const { status, payload, response } = await request("GET", `/tenants/${enc(id)}/qr`);
    if (status === 202) {
      const wait = Number(response.headers.get("Retry-After")) || 1;
      scheduleQr(entry, wait * 1000);
    } else if (payload.qr) {
      applyQr(id, payload);
    } else if (payload.status) {
      applyStatus({ tenant_id: id, status: payload.status }, false);
    }
  }

  function removeTenant(id) {
    const entry = tenants.get(id);
    if (!entry) return;
    clearTimeout(entry.qrTimer);
    entry.card.remove();
    tenants.delete(id);
    $("empty").hidden = tenants.size > 0;
    renderSummary();
  }

  // --- rendering ---------------------------------------------------------------------------

  function entryFor(id) {
    let entry = tenants.get(id);
    if (!entry) {
      const card = $("tenant-card").content.firstElementChild.cloneNode(true);
      card.dataset.tenantId = id;
      entry = { data: { tenant_id: id }, card, qr: null, qrAt: 0, qrTimer: 0, pairCode: null };
      entry.eventAt = 0; // when a live event last spoke about this tenant
      tenants.set(id, entry);
      insertInOrder(card, id);
      $("empty").hidden = true;
    }
    return entry;
  }

  function insertInOrder(card, id) {
    const byName = (a, b) => a.localeCompare(b, undefined, { numeric: true });
    const after = [...$("tenants").children].find((c) => byName(c.dataset.tenantId, id) > 0);
    $("tenants").insertBefore(card, after || null);
  }

  const field = (card, name) => card.querySelector(`[data-field="${name}"]`);
  const row = (card, name) => card.querySelector(`[data-row="${name}"]`);
  const setText = (card, name, text) => {
    const el = field(card, name);
    if (el.textContent !== text) el.textContent = text;
  };

  function render(entry) {
    const { data, card } = entry;
    const state = STATES.get(data.status) || { label: data.status || "Unknown", hint: "" };
    card.dataset.status = data.status || "";
    setText(card, "tenant_id", data.tenant_id);
    setText(card, "status", state.label);
    field(card, "status").title = data.status || "";
    setText(card, "hint", state.hint);
    setText(card, "engine", ENGINES[data.engine] || data.engine || "—");
    setText(card, "phone", formatPhone(data.phone) || "—");
    setText(card, "push_name", data.push_name || "—");
    setText(card, "last_error", data.last_error || "");
    row(card, "last_error").hidden = !data.last_error;
    renderQr(entry);
    renderPairing(entry);
    renderActions(entry);
    renderClocks(entry);
    renderSummary();
  }

  function renderQr(entry) {
    const { card, qr } = entry;
    const awaiting = entry.data.status === "awaiting_qr";
    row(card, "qr").hidden = !awaiting;
    const img = field(card, "qr_image");
    img.hidden = !(awaiting && qr);
    if (awaiting && qr && img.getAttribute("src") !== qr.qr_image) {
      img.src = qr.qr_image; // only on a new code: the image must not flicker every second
      img.dataset.qr = qr.qr || "";
    }
  }

  function renderPairing(entry) {
    const { card, data, pairCode } = entry;
    // Only an unlinked number can pair; a paired one that is down needs Start or Restart.
    // A Cloud API number connects with its access token: there is nothing to pair.
    const unpaired =
      data.engine !== "cloud" && !data.phone && data.status !== "connected" && data.status !== "banned";
    row(card, "pairing").hidden = !unpaired;
    row(card, "pair_code").hidden = !pairCode;
    setText(card, "pair_code", pairCode || "");
  }

  function renderActions(entry) {
    const { card, data } = entry;
    const running = RUNNING.has(data.status);
    const paired = Boolean(data.phone) || data.status === "connected";
    card.querySelector('[data-action="start"]').hidden = running;
    card.querySelector('[data-action="stop"]').hidden = !running;
    card.querySelector('[data-action="logout"]').hidden = !paired;
  }

  // The texts that count time: redrawn every second.
  function renderClocks(entry) {
    const { card, data, qr } = entry;
    setText(card, "since", data.since ? `for ${duration(Date.now() - toMillis(data.since))}` : "—");
    const retry = toMillis(data.next_retry_at);
    row(card, "next_retry").hidden = !retry || data.status !== "reconnecting";
    setText(card, "next_retry_at", retry ? untilText(retry) : "");
    let qrText = "Preparing the QR code…";
    if (qr) {
      const ends = toMillis(qr.expires_at);
      const left = ends > Date.now() ? remaining(ends) : "";
      if (!left) qrText = "Getting a new code…";
      else if (qr.index && qr.total) qrText = `Code ${qr.index} of ${qr.total} · next one in ${left}`;
      else qrText = `A new code comes in ${left}`;
    }
    setText(card, "qr_expires", qrText);
  }

  function renderSummary() {
    const counts = new Map();
    for (const { data } of tenants.values()) counts.set(data.status, (counts.get(data.status) || 0) + 1);
    const summary = $("summary");
    summary.replaceChildren(
      ...[...STATES.keys()]
        .filter((id) => counts.has(id))
        .map((id) => summaryPill(id, counts.get(id)))
    );
  }

  function summaryPill(status, count) {
    const pill = document.createElement("span");
    pill.className = "pill";
    pill.dataset.status = status;
    const number = document.createElement("span");
    number.className = "count";
    number.textContent = String(count);
    pill.append(number, ` ${STATES.get(status).label}`);
    return pill;
  }

  function setLiveMode(mode, text) {
    $("live").dataset.mode = mode;
    $("live-text").textContent = text;
  }

  function notify(message, kind = "ok", sticky = false) {
    const notice = $("notice");
    notice.textContent = message;
    notice.dataset.kind = kind;
    notice.hidden = false;
    clearTimeout(notify.timer);
    if (!sticky) notify.timer = setTimeout(() => (notice.hidden = true), 8000);
  }

  // --- formatting ----------------------------------------------------------------------------

  // Times come as epoch seconds (or milliseconds, or ISO text): all become milliseconds.
  function toMillis(value) {
    if (value === null || value === undefined || value === "") return 0;
    const number = Number(value);
    if (Number.isFinite(number)) return number < 1e12 ? number * 1000 : number;
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? 0 : parsed;
  }

  const expired = (qr) => !qr || (toMillis(qr.expires_at) || Infinity) <= Date.now();

  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} days`;
  }

  // Countdowns round up: "in 0 s" while there is still time left would read as a bug.
  const remaining = (when) => duration(Math.ceil((when - Date.now()) / 1000) * 1000);
  const untilText = (when) => (when > Date.now() ? `in ${remaining(when)}` : "now");
  const ENGINES = {
    whatsmeow: "WhatsApp Web (whatsmeow)",
    sandbox: "Sandbox",
    cloud: "WhatsApp Cloud API",
  };
  const formatPhone = (phone) => (phone ? `+${String(phone).replace(/^\+/, "")}` : "");

  // --- what the person does ------------------------------------------------------------------

  const ACTIONS = {
    start: (id) => ["POST", `/tenants/${enc(id)}/start`],
    stop: (id) => ["POST", `/tenants/${enc(id)}/stop`],
    restart: (id) => ["POST", `/restart/${enc(id)}`],
    logout: (id) => ["POST", `/tenants/${enc(id)}/logout`],
    delete: (id) => ["DELETE", `/tenants/${enc(id)}`],
  };
  const CONFIRM = {
    logout: (id) => `Log out “${id}”? The phone is unlinked and must scan a new QR code.`,
    delete: (id) => `Delete “${id}”? It is logged out of WhatsApp and removed from this server.`,
  };
  const DONE = {
    start: "is starting",
    stop: "was stopped",
    restart: "is restarting",
    logout: "was logged out",
    delete: "was deleted",
  };

  // Answers to tenant actions carry the tenant's view, flat or under "tenant".
  const snapshotOf = (payload) => payload.tenant || (payload.status ? payload : null);

  // Runs `work` with `button` disabled; API errors become a message on the page.
  async function busy(button, work) {
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      if (error instanceof ApiError) notify(error.message, "error");
      else if (!(error instanceof AuthNeeded)) {
        notify(`Could not reach the server: ${error.message}`, "error");
      }
    } finally {
      button.disabled = false;
    }
  }

  async function onAction(event) {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const id = button.closest(".card").dataset.tenantId;
    if (CONFIRM[action] && !window.confirm(CONFIRM[action](id))) return;
    await busy(button, async () => {
      const [method, path] = ACTIONS[action](id);
      const { payload } = await request(method, path);
      if (action === "delete") removeTenant(id);
      else if (snapshotOf(payload)) applyStatus({ ...snapshotOf(payload), tenant_id: id }, true);
      notify(`“${id}” ${DONE[action]}.`);
      await refresh();
    });
  }

  async function onPairSubmit(event) {
    const form = event.target.closest(".pair-form");
    if (!form) return;
    event.preventDefault();
    const entry = tenants.get(form.closest(".card").dataset.tenantId);
    const phone = form.elements.phone.value.replace(/[^\d]/g, "");
    await busy(form.querySelector("button"), async () => {
      const path = `/tenants/${enc(entry.data.tenant_id)}/pair-code`;
      const { payload } = await request("POST", path, { phone });
      entry.pairCode = payload.code;
      render(entry);
    });
  }

  async function onCreate(event) {
    event.preventDefault();
    const form = event.target;
    const id = form.elements.tenant_id.value.trim();
    await busy(form.querySelector("button"), async () => {
      const { payload } = await request("POST", "/tenants", { tenant_id: id });
      form.reset();
      applyStatus({ status: "connecting", ...(snapshotOf(payload) || {}), tenant_id: id }, false);
      // The tenant's token is shown once by the server: keep it on screen until dismissed.
      if (payload.token) {
        const token = `Its own API token (shown only now, keep it safe): ${payload.token}`;
        notify(`“${id}” added. ${token}`, "ok", true);
      } else {
        notify(`“${id}” added. Its QR code appears here in a moment.`);
      }
      await refresh();
    });
  }

  async function loadServerInfo() {
    const { payload } = await request("GET", "/status");
    if (payload.engine === "sandbox") {
      $("engine").textContent = "Sandbox: simulated WhatsApp";
      $("engine").hidden = false;
    }
  }

  // --- start ---------------------------------------------------------------------------------

  // A page link cannot carry a header: the docs take the key as ?api_key= instead.
  function docsLinkWithKey(event) {
    const key = savedKey();
    if (key) event.currentTarget.href = `${event.currentTarget.pathname}?api_key=${encodeURIComponent(key)}`;
  }

  async function start() {
    $("docs-link").addEventListener("click", docsLinkWithKey);
    $("create-form").addEventListener("submit", onCreate);
    $("notice").addEventListener("click", () => ($("notice").hidden = true));
    $("tenants").addEventListener("click", onAction);
    $("tenants").addEventListener("submit", onPairSubmit);
    $("auth-retry").addEventListener("click", () => askForKey(false) && refresh().catch(reportRefreshError));
    $("change-key").addEventListener("click", () => askForKey(false) && refresh().catch(reportRefreshError));
    setInterval(() => tenants.forEach(renderClocks), 1000);
    // The first request asks for the key if one is needed; everything after uses it.
    await poll();
    $("change-key").hidden = !savedKey();
    if (!authDeclined && !events) connectEvents();
    loadServerInfo().catch(() => {}); // only decoration: the sandbox badge
  }

  start();
})();
