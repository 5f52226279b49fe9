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
  const EVENT_NAMES = ["status", "qr", "deleted", "tenant.deleted", "message", "receipt", "message.sent"];
  const MESSAGE_EVENTS = new Set(["message", "receipt", "message.sent"]);
  const HEALTH_EVERY_MS = 15000;
  const MESSAGES_SHOWN = 10;
  const DELETED = new Set(["deleted", "tenant.deleted"]);

  const tenants = new Map(); // tenant_id → {data, row, qr, qrAt, qrTimer, pairCode, eventAt}
  let selected = null; // the tenant id shown in the detail pane
  let detailCard = null; // its card element
  let filter = "all"; // a state key, or "all"
  let query = ""; // the search box, lower case
  let pending = null; // while a refresh adds rows: the fragment they gather in
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
    if (kind === "qr") applyQr(id, data);
    else if (DELETED.has(kind)) removeTenant(id);
    else if (MESSAGE_EVENTS.has(kind) && id === selected) scheduleMessages(id);
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
    const list = await allTenants();
    const seen = new Set();
    list.sort((a, b) => byName(a.tenant_id, b.tenant_id));
    // New rows go in with one insertion (the list is sorted): 1,000 at once stay cheap.
    pending = document.createDocumentFragment();
    for (const tenant of list) {
      seen.add(tenant.tenant_id);
      // An event that came while the list was on its way is newer than the list.
      if (!(tenants.get(tenant.tenant_id)?.eventAt > asked)) applyStatus(tenant, false);
    }
    const fresh = pending;
    pending = null;
    insertRows(fresh);
    for (const id of [...tenants.keys()]) if (!seen.has(id)) removeTenant(id);
    applyFilter();
    if (!live) setLiveMode("polling", "Updating every few seconds");
  }

  // Every tenant, following the pages when the server pages its list.
  async function allTenants() {
    const all = [];
    let path = "/tenants";
    for (let page = 0; page < 1000 && path; page += 1) {
      const { payload } = await request("GET", path);
      all.push(...(payload.tenants || []));
      const next = payload.next_cursor ?? payload.next_after ?? payload.cursor ?? null;
      path = next && (payload.tenants || []).length ? `/tenants?after=${enc(next)}` : null;
    }
    return all;
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
    const before = stateKey(entry.data);
    entry.data = { ...entry.data, ...data };
    if (entry.data.status === "awaiting_qr") {
      // Only the tenant on screen fetches its code: at 1,000 tenants nothing else would scale.
      if (entry.data.tenant_id === selected && (changed || !entry.qr || expired(entry.qr))) {
        scheduleQr(entry, 250);
      }
    } else {
      entry.qr = null;
    }
    if (entry.data.status === "connected") entry.pairCode = null;
    renderRow(entry);
    if (stateKey(entry.data) !== before) countsChanged();
    if (entry.data.tenant_id === selected) renderDetail();
  }

  function applyQr(id, qr) {
    const entry = tenants.get(id);
    if (!entry || id !== selected) return; // fetched again when it is picked
    if (!qr || !qr.qr_image) {
      scheduleQr(entry, 250); // an event without the image: ask the API for it
      return;
    }
    entry.qr = qr;
    entry.qrAt = Date.now();
    if (entry.data.status !== "awaiting_qr") {
      entry.data.status = "awaiting_qr"; // a code to scan can only mean that
      renderRow(entry);
      countsChanged();
    }
    // Without the live stream nobody tells us about the next code: look when this one ends.
    const ends = toMillis(qr.expires_at);
    if (ends) scheduleQr(entry, Math.max(ends - Date.now(), 0) + 500);
    renderDetail();
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
    if (tenants.get(id) !== entry || id !== selected || entry.data.status !== "awaiting_qr") return;
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
    entry.row.remove();
    tenants.delete(id);
    if (selected === id) select(null);
    countsChanged();
  }

  // --- the list: rows, search and state filters ----------------------------------------------

  // The state a person filters by: a never-paired tenant is "not paired", not "stopped".
  const stateKey = (data) =>
    data.status === "stopped" && !data.phone && !data.jid ? "not_paired" : data.status || "";

  function entryFor(id) {
    let entry = tenants.get(id);
    if (!entry) {
      const row = $("tenant-row").content.firstElementChild.cloneNode(true);
      row.dataset.tenantId = id;
      entry = { data: { tenant_id: id }, row, qr: null, qrAt: 0, qrTimer: 0, pairCode: null };
      entry.eventAt = 0; // when a live event last spoke about this tenant
      entry.search = "";
      tenants.set(id, entry);
      if (pending) pending.append(row);
      else insertInOrder(row, id);
    }
    return entry;
  }

  const byName = new Intl.Collator(undefined, { numeric: true }).compare;

  // Rows gathered by a refresh, sorted: appended at once when they all come last.
  function insertRows(fragment) {
    const rows = [...fragment.children];
    const last = $("tenants").lastElementChild;
    if (!rows.length) return;
    if (!last || byName(last.dataset.tenantId, rows[0].dataset.tenantId) < 0) {
      $("tenants").append(fragment);
    } else {
      for (const each of rows) insertInOrder(each, each.dataset.tenantId);
    }
  }

  function insertInOrder(row, id) {
    const list = $("tenants");
    const last = list.lastElementChild;
    // The list comes sorted: appending is the common case and costs nothing.
    if (!last || byName(last.dataset.tenantId, id) < 0) {
      list.append(row);
      return;
    }
    const after = [...list.children].find((c) => byName(c.dataset.tenantId, id) > 0);
    list.insertBefore(row, after || null);
  }

  const field = (root, name) => root.querySelector(`[data-field="${name}"]`);
  const row = (root, name) => root.querySelector(`[data-row="${name}"]`);
  const setText = (root, name, text) => {
    const el = field(root, name);
    if (el && el.textContent !== text) el.textContent = text;
  };
  const labelOf = (data) => STATES.get(stateKey(data)) || { label: data.status || "Unknown", hint: "" };

  function renderRow(entry) {
    const { data, row: el } = entry;
    const key = stateKey(data);
    el.dataset.status = data.status || "";
    el.dataset.state = key;
    setText(el, "tenant_id", data.tenant_id);
    setText(el, "status", labelOf(data).label);
    setText(el, "phone", formatPhone(data.phone));
    setText(el, "push_name", data.push_name || "");
    field(el, "engine").hidden = !data.engine;
    setText(el, "engine", data.engine || "");
    el.title = data.reason || "";
    entry.search = [data.tenant_id, data.phone, data.push_name].join(" ").toLowerCase();
    el.hidden = !matches(entry);
  }

  function matches(entry) {
    if (filter !== "all" && stateKey(entry.data) !== filter) return false;
    if (!query) return true;
    return entry.search.includes(query) || entry.search.includes(query.replace(/^\+/, ""));
  }

  function applyFilter() {
    let shown = 0;
    for (const entry of tenants.values()) {
      const visible = matches(entry);
      if (entry.row.hidden === visible) entry.row.hidden = !visible;
      shown += visible ? 1 : 0;
    }
    $("empty").hidden = tenants.size > 0;
    $("no-match").hidden = tenants.size === 0 || shown > 0;
    renderFilters();
  }

  // Counts change with states: redrawn on the next frame, once however many changed.
  function countsChanged() {
    if (countsChanged.pending) return;
    countsChanged.pending = true;
    requestAnimationFrame(() => {
      countsChanged.pending = false;
      applyFilter();
    });
  }

  function renderFilters() {
    const counts = new Map();
    for (const { data } of tenants.values()) {
      const key = stateKey(data);
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    if (filter !== "all" && !counts.has(filter)) filter = "all";
    const keys = [...STATES.keys()].filter((key) => counts.has(key));
    const buttons = [filterButton("all", "All", tenants.size)];
    for (const key of keys) buttons.push(filterButton(key, STATES.get(key).label, counts.get(key)));
    $("filters").replaceChildren(...buttons);
    $("total").textContent = tenants.size ? `(${tenants.size})` : "";
  }

  function filterButton(key, label, count) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "pill filter";
    button.dataset.filter = key;
    button.dataset.status = key === "not_paired" ? "stopped" : key;
    button.setAttribute("aria-pressed", String(filter === key));
    const number = document.createElement("span");
    number.className = "count";
    number.textContent = String(count);
    button.append(number, ` ${label}`);
    return button;
  }

  // --- the detail pane: the tenant picked ------------------------------------------------------

  function select(id) {
    if (selected === id) return;
    const previous = selected && tenants.get(selected);
    if (previous) {
      previous.row.classList.remove("selected");
      clearTimeout(previous.qrTimer);
    }
    selected = id;
    detailCard?.remove();
    detailCard = null;
    $("detail-empty").hidden = Boolean(id);
    const entry = id && tenants.get(id);
    if (!entry) return;
    entry.row.classList.add("selected");
    detailCard = $("tenant-card").content.firstElementChild.cloneNode(true);
    detailCard.dataset.tenantId = id;
    $("detail").append(detailCard);
    if (entry.data.status === "awaiting_qr") scheduleQr(entry, 0);
    renderDetail();
    loadMessages(id).catch((error) => console.warn("zapmux: messages failed", error));
  }

  function renderDetail() {
    const entry = selected && tenants.get(selected);
    if (!entry || !detailCard) return;
    const { data } = entry;
    const card = detailCard;
    const state = labelOf(data);
    card.dataset.status = data.status || "";
    setText(card, "tenant_id", data.tenant_id);
    setText(card, "status", state.label);
    field(card, "status").title = data.status || "";
    // The server's words for why it is not connected; the state's own when it has none.
    setText(card, "hint", data.reason || state.hint);
    setText(card, "engine", ENGINES[data.engine] || data.engine || "—");
    setText(card, "phone", formatPhone(data.phone) || "—");
    setText(card, "push_name", data.push_name || "—");
    row(card, "engine").hidden = !data.engine;
    setText(card, "last_error", data.last_error || "");
    row(card, "last_error").hidden = !data.last_error || data.status === "connected";
    const raw = data.detail || data.last_error || "";
    row(card, "raw_error").hidden = !raw || data.status === "connected";
    setText(card, "raw_error", raw);
    renderQr(entry);
    renderPairing(entry);
    renderActions(entry);
    renderClocks(entry);
  }

  function renderQr(entry) {
    const card = detailCard;
    const { qr } = entry;
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
    const card = detailCard;
    const { data, pairCode } = entry;
    // Only an unlinked number can pair; a paired one that is down needs Start or Restart.
    // A Cloud API number connects with its access token: there is nothing to pair.
    const unpaired =
      data.engine !== "cloud" && !data.phone && data.status !== "connected" && data.status !== "banned";
    row(card, "pairing").hidden = !unpaired;
    row(card, "pair_code").hidden = !pairCode;
    setText(card, "pair_code", pairCode || "");
  }

  function renderActions(entry) {
    const card = detailCard;
    const { data } = entry;
    const running = RUNNING.has(data.status);
    const paired = Boolean(data.phone) || data.status === "connected";
    const notPaired = stateKey(data) === "not_paired" || data.status === "qr_timeout";
    card.querySelector('[data-action="pair"]').hidden = !notPaired;
    card.querySelector('[data-action="start"]').hidden = running || notPaired;
    card.querySelector('[data-action="stop"]').hidden = !running;
    card.querySelector('[data-action="logout"]').hidden = !paired;
  }

  // The texts that count time: redrawn every second, for the tenant on screen only.
  function renderClocks(entry) {
    const card = detailCard;
    if (!card || !entry) return;
    const { data, qr } = entry;
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

  // --- recent messages of the tenant on screen ---------------------------------------------------

  const MESSAGE_STATUS = {
    queued: "Queued",
    sent: "Sent",
    delivered: "Delivered",
    read: "Read",
    failed: "Failed",
    received: "Received",
  };

  function scheduleMessages(id) {
    clearTimeout(scheduleMessages.timer);
    scheduleMessages.timer = setTimeout(() => {
      if (id === selected) loadMessages(id).catch((e) => console.warn("zapmux: messages", e));
    }, 300);
  }

  async function loadMessages(id) {
    const path = `/tenants/${enc(id)}/messages?limit=${MESSAGES_SHOWN}`;
    const { payload } = await request("GET", path);
    if (id !== selected || !detailCard) return;
    const items = (payload.messages || []).map(messageItem);
    field(detailCard, "messages").replaceChildren(...items);
    field(detailCard, "messages_empty").hidden = items.length > 0;
  }

  function messageItem(message) {
    const item = document.createElement("li");
    item.className = "message";
    item.dataset.direction = message.direction;
    item.dataset.messageStatus = message.status;
    const who = document.createElement("span");
    who.className = "message-who";
    const phone = formatPhone(message.phone) || message.chat || "";
    who.textContent = message.direction === "out" ? `→ ${phone}` : `← ${phone}`;
    const text = document.createElement("span");
    text.className = "message-text";
    text.textContent = message.text || `(${message.message_type})`;
    const status = document.createElement("span");
    status.className = "message-status";
    status.textContent = MESSAGE_STATUS[message.status] || message.status;
    if (message.error) status.title = message.error;
    item.append(who, text, status);
    return item;
  }

  // --- delivery health -------------------------------------------------------------------------

  async function loadHealth() {
    const { payload } = await request("GET", "/deliveries/health");
    const failing = payload.failing > 0 || payload.dead > 0;
    const banner = $("delivery-health");
    banner.hidden = !failing;
    if (!failing) return;
    const parts = [`${payload.pending} waiting`, `${payload.dead} dead`];
    setText(banner, "counts", `${parts.join(", ")}.`);
    const where = payload.last_error_tenant_id ? ` (tenant ${payload.last_error_tenant_id})` : "";
    setText(banner, "last_error", `${payload.last_error || "—"}${where}`);
    $("retry-dead").hidden = !payload.dead;
  }

  async function pollHealth() {
    try {
      await loadHealth();
    } catch (error) {
      if (!(error instanceof AuthNeeded)) console.warn("zapmux: delivery health", error);
    } finally {
      setTimeout(pollHealth, HEALTH_EVERY_MS);
    }
  }

  async function onRetryDead(event) {
    await busy(event.currentTarget, async () => {
      const { payload } = await request("POST", "/deliveries/retry-dead");
      notify(`${payload.retried} dead deliveries queued again.`);
      await loadHealth();
    });
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
    pair: (id) => ["POST", `/tenants/${enc(id)}/start`],
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
    pair: "is preparing its QR code",
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
      renderDetail();
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
      countsChanged();
      select(id); // its QR code is what the person wants to see next
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

  function onPick(event) {
    const picked = event.target.closest(".row");
    if (picked) select(picked.dataset.tenantId);
  }

  function onPickKey(event) {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      onPick(event);
    }
  }

  function onFilter(event) {
    const button = event.target.closest("[data-filter]");
    if (!button) return;
    filter = button.dataset.filter;
    applyFilter();
  }

  function onSearch(event) {
    query = event.target.value.trim().toLowerCase();
    applyFilter();
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
    $("tenants").addEventListener("click", onPick);
    $("tenants").addEventListener("keydown", onPickKey);
    $("detail").addEventListener("click", onAction);
    $("detail").addEventListener("submit", onPairSubmit);
    $("filters").addEventListener("click", onFilter);
    $("search").addEventListener("input", onSearch);
    $("retry-dead").addEventListener("click", onRetryDead);
    $("auth-retry").addEventListener("click", () => askForKey(false) && refresh().catch(reportRefreshError));
    $("change-key").addEventListener("click", () => askForKey(false) && refresh().catch(reportRefreshError));
    setInterval(() => renderClocks(selected && tenants.get(selected)), 1000);
    // The first request asks for the key if one is needed; everything after uses it.
    await poll();
    $("change-key").hidden = !savedKey();
    if (!authDeclined && !events) connectEvents();
    loadServerInfo().catch(() => {}); // only decoration: the sandbox badge
    pollHealth();
  }

  start();
})();
