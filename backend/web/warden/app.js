// iParking wardens' handheld app, offline first: screens by the URL's hash (#/login, #/,
// #/point/HK001, #/collect/HK001/30A12345, #/violation/HK001/30A12345, #/slip/NUMBER,
// #/history), rendered with the DOM (no HTML strings, no inline script).
//
// With no network the app keeps working: checks answer from the point's last roster, marked
// as such; cash collections and violations are queued in IndexedDB with their client ids
// and sent through /v1/warden/sync when the network returns (the server applies each once).
import { api, ApiError, newKey, setToken, token } from "./api.js";
import { h } from "./dom.js";
import { current, errorBox, every, nextScreen, show } from "./screen.js";
import { lang, number, setLang, showLanguage, t, tOr } from "./i18n.js";
import { formatPlate, normalise } from "./plate.js";
import { all, clientId, get, put, remove } from "./queue.js";
import { qrSvg } from "./qr.js";

const PILOT = { lat: 21.0245, lon: 105.8525 };
const ROSTER_MS = 15000;
const SYNC_MS = 15000;
const ME = "iparking.warden.me";
const DEVICE = "iparking.warden.device";
const POINTS = "iparking.warden.points";
const SHIFT = "iparking.warden.shift";

const offlineError = (err) => err instanceof ApiError && err.status === 0;

function money(v) {
  return lang() === "en" ? number(v) + " VND" : number(v).replace(/,/g, ".") + " đ";
}

/** Hanoi time: `HH:MM`, with the day when it is not today. */
function hanoi(iso, withDay = false) {
  const d = new Date(iso);
  const opts = { timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", hour12: false };
  const day = new Intl.DateTimeFormat("en-GB", { timeZone: "Asia/Ho_Chi_Minh", day: "2-digit", month: "2-digit" }).format(d);
  const today = new Intl.DateTimeFormat("en-GB", { timeZone: "Asia/Ho_Chi_Minh", day: "2-digit", month: "2-digit" }).format(new Date());
  const time = new Intl.DateTimeFormat("en-GB", opts).format(d);
  return withDay || day !== today ? `${time} ${day}` : time;
}

function me() {
  return JSON.parse(localStorage.getItem(ME) || "null");
}

function chosenPoints() {
  return JSON.parse(localStorage.getItem(POINTS) || "[]");
}

function choosePoint(code) {
  const list = chosenPoints().filter((c) => c !== code);
  list.unshift(code);
  localStorage.setItem(POINTS, JSON.stringify(list.slice(0, 8)));
}

function deviceName() {
  let d = localStorage.getItem(DEVICE);
  if (!d) {
    d = "handheld-" + clientId().slice(0, 6);
    localStorage.setItem(DEVICE, d);
  }
  return d;
}

// ---- The queue --------------------------------------------------------------------------

/** This warden's staff id: the queue holds each warden's own actions. */
function staffId() {
  const m = me();
  return m ? m.staff_id : null;
}

async function mine(store) {
  const id = staffId();
  return (await all(store)).filter((a) => a.staff_id === id);
}

async function refreshBadge() {
  const waiting = (await mine("queue")).length + (await mine("pending")).length;
  const badge = document.getElementById("queue");
  document.getElementById("queue-count").textContent = String(waiting);
  badge.hidden = waiting === 0;
  badge.title = t("queued_count", { n: waiting });
}

/**
 * Queues an action for /v1/warden/sync: kept on the device until the server answers it. Its
 * id is the attempt's own (never sent online), so the server applies it once.
 */
async function enqueue(id, kind, payload, extra = {}) {
  const action = { id, staff_id: staffId(), device_time: new Date().toISOString(), kind, payload, ...extra };
  await put("queue", action);
  await refreshBadge();
  return action;
}

/**
 * An online call whose answer was lost (it may have been applied): kept, and sent again with
 * the same Idempotency-Key when the network returns, so it is applied once.
 */
async function keepPending(key, call, extra = {}) {
  await put("pending", { id: key, staff_id: staffId(), device_time: new Date().toISOString(), ...call, ...extra });
  await refreshBadge();
}

/** What a money call's network failure means: queued for sync, or to be resent as it was. */
async function lostOrQueued(err, key, queued, pending) {
  if (err.details && err.details.sent === false) {
    await queued();
    return "queued";
  }
  await pending();
  return "pending";
}

let syncing = false;
/** Most bytes of actions per sync request (photos travel in base64). */
const SYNC_BYTES = 4 * 1024 * 1024;

async function recordDone(a, status, fields) {
  await put("done", {
    id: a.id, kind: a.kind, device_time: a.device_time, status, flags: [], error: null, result: null,
    summary: a.summary || null, ...fields,
  });
}

/** Resends the lost online calls, then sends the queue in batches of at most SYNC_BYTES. */
async function syncNow() {
  if (syncing || !token() || staffId() === null) return;
  syncing = true;
  try {
    for (const p of (await mine("pending")).sort((a, b) => a.device_time.localeCompare(b.device_time))) {
      let body = p.body;
      if (p.form) {
        body = new FormData();
        for (const [k, v] of p.form.fields) body.append(k, v);
        p.form.photos.forEach((ph, i) => body.append("photo", base64Blob(ph.data, ph.type), `photo-${i + 1}`));
      }
      try {
        const answer = await api(p.method, p.path, body, { key: p.id, form: Boolean(p.form) });
        if (answer && answer.receipt) await keepSlip(answer.receipt);
        if (answer && answer.number && answer.verification_code && !answer.receipt) {
          await put("done", { id: "citation:" + answer.number, kind: "citation", citation: answer });
        }
        await recordDone(p, "applied", { result: answer });
      } catch (err) {
        if (offlineError(err)) return;
        if (err instanceof ApiError && err.code === "idempotency_in_progress") continue;
        await recordDone(p, "rejected", { error: err.message || t("error_unknown") });
      }
      await remove("pending", p.id);
    }
    for (;;) {
      const waiting = (await mine("queue")).sort((a, b) => a.device_time.localeCompare(b.device_time));
      if (!waiting.length) break;
      const batch = [];
      let bytes = 0;
      for (const a of waiting.slice(0, 20)) {
        const size = JSON.stringify(a.payload).length;
        if (batch.length && bytes + size > SYNC_BYTES) break;
        batch.push(a);
        bytes += size;
      }
      let answer;
      try {
        answer = await api("POST", "/v1/warden/sync", {
          actions: batch.map((a) => ({ id: a.id, device_time: a.device_time, kind: a.kind, payload: a.payload })),
        });
      } catch (err) {
        if (offlineError(err) || !(err instanceof ApiError) || err.status === 401 || err.status >= 500) throw err;
        // The server refused the batch for one action: that one is rejected, the rest go on.
        const at = err.details && Number.isInteger(err.details.index) ? err.details.index : 0;
        const bad = batch[Math.min(at, batch.length - 1)];
        await recordDone(bad, "rejected", { error: err.message });
        await remove("queue", bad.id);
        continue;
      }
      for (const r of answer.results) {
        const a = batch.find((w) => w.id === r.id);
        if (!a) continue;
        await recordDone(a, r.status, { flags: r.flags || [], error: r.error ? r.error.message : null, result: r.result || null });
        if ((a.kind === "cash_session" || a.kind === "cash_extension") && r.result && r.result.receipt) await keepSlip(r.result.receipt);
        await remove("queue", a.id);
      }
    }
  } catch (err) {
    if (!offlineError(err) && !(err instanceof ApiError && err.status === 401)) console.warn("sync", err.message);
  } finally {
    syncing = false;
    await refreshBadge();
  }
}

function base64Blob(data, type) {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type });
}

async function keepSlip(receipt) {
  await put("done", { id: "slip:" + receipt.number, kind: "slip", receipt });
}

// ---- Login ------------------------------------------------------------------------------

function loginScreen(message) {
  const status = h("div", { id: "login-status", "aria-live": "polite" }, message ? h("p", { class: "error", role: "alert" }, message) : null);
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", maxlength: "64" });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true, maxlength: "128" });
  const device = h("input", { id: "device", name: "device", value: deviceName(), maxlength: "64", required: true });
  const submit = h("button", { type: "submit" }, t("log_in"));
  const form = h("form", { id: "login-form", class: "card" },
    h("label", { for: "username" }, t("username")), user,
    h("label", { for: "password" }, t("password")), pass,
    h("label", { for: "device" }, t("device")), device,
    h("p", { class: "help" }, t("device_help")),
    status, submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    try {
      localStorage.setItem(DEVICE, device.value.trim() || deviceName());
      const tok = await api("POST", "/v1/warden/auth/token", { username: user.value.trim(), password: pass.value, device: localStorage.getItem(DEVICE) });
      setToken(tok.token);
      localStorage.setItem(ME, JSON.stringify({ name: tok.name, staff_id: tok.staff_id, token_id: tok.token_id, role: tok.role, districts: tok.districts }));
      location.hash = "#/";
      route();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  show(h("h1", {}, t("login_title")), form);
}

// ---- Home: the shift and the points ------------------------------------------------------

async function loadShift() {
  try {
    const s = await api("GET", "/v1/warden/shifts/current");
    localStorage.setItem(SHIFT, JSON.stringify(s));
    return { shift: s, offline: false };
  } catch (err) {
    if (err instanceof ApiError && err.code === "no_open_shift") {
      localStorage.removeItem(SHIFT);
      return { shift: null, offline: false };
    }
    if (offlineError(err)) return { shift: JSON.parse(localStorage.getItem(SHIFT) || "null"), offline: true };
    throw err;
  }
}

async function homeScreen() {
  const live = current();
  const profile = me();
  show(h("p", {}, t("loading")));
  let state;
  try {
    state = await loadShift();
  } catch (err) {
    if (!live()) return;
    show(errorBox(err));
    return;
  }
  if (!live()) return;
  const status = h("div", { id: "home-status", "aria-live": "polite" });
  const shiftBox = h("section", { class: "card", id: "shift" }, h("h2", {}, t("shift")));
  const s = state.shift;
  if (!s) {
    const open = h("button", { type: "button", id: "open-shift" }, t("open_shift"));
    let key = null;
    open.addEventListener("click", async () => {
      open.disabled = true;
      key = key || newKey();
      try {
        await api("POST", "/v1/warden/shifts", {}, { key });
        key = null;
        route();
      } catch (err) {
        if (err instanceof ApiError && err.status !== 0 && err.status < 500) key = null;
        if (err instanceof ApiError && err.code === "shift_open") route();
        status.replaceChildren(offlineError(err) ? h("p", { class: "error", role: "alert" }, t("shift_offline")) : errorBox(err));
      } finally {
        open.disabled = false;
      }
    });
    shiftBox.append(h("p", {}, t("no_shift")), open);
  } else {
    shiftBox.append(
      h("p", { class: "help" }, t("shift_opened", { id: s.id, at: hanoi(s.opened_at, true), device: s.device })),
      h("p", { class: "big", id: "expected-cash" }, money(s.expected_cash)),
      h("p", {}, t("expected_cash_help", { n: s.collections })),
      state.offline ? h("p", { class: "warn" }, t("shift_as_of_last")) : null,
      closeShiftForm(s, status));
  }
  const code = h("input", { id: "point-code", name: "point", autocomplete: "off", maxlength: "12", autocapitalize: "characters" });
  const pick = h("form", { id: "pick-point", class: "row" },
    h("label", { for: "point-code" }, t("point_code")), code, h("button", { type: "submit" }, t("go")));
  pick.addEventListener("submit", (e) => {
    e.preventDefault();
    const c = code.value.trim().toUpperCase();
    if (/^[A-Z0-9]{1,12}$/.test(c)) location.hash = "#/point/" + c;
  });
  const near = h("ul", { class: "points", id: "nearby" });
  const mine = chosenPoints();
  const floatBox = h("section", { class: "card", id: "float" }, h("h2", {}, t("float")),
    h("p", { class: "big", id: "float-balance" }, t("loading")), h("p", { class: "help" }, t("float_help")));
  loadFloat().then((f) => {
    floatBox.querySelector("#float-balance").textContent = f ? money(f.balance) : t("float_offline");
  });
  show(
    h("h1", {}, profile ? t("hello", { name: profile.name }) : t("home")),
    shiftBox,
    floatBox,
    h("section", { class: "card" }, h("h2", {}, t("where")), pick,
      mine.length ? [h("h3", {}, t("my_points")), h("ul", { class: "points", id: "my-points" },
        mine.map((c) => h("li", {}, h("a", { href: "#/point/" + c }, c))))] : null,
      h("h3", {}, t("nearest")), near),
    h("p", {}, h("a", { href: "#/history" }, t("history_title"))),
    status,
    h("p", { id: "logout-waiting", class: "warn", hidden: true }),
    h("button", { type: "button", id: "logout", class: "secondary", onclick: logout }, t("log_out")),
  );
  // What waits belongs to this warden: it is sent when they log in again on this handheld.
  Promise.all([mine("queue"), mine("pending")]).then(([q, p]) => {
    const n = q.length + p.length;
    const note = document.getElementById("logout-waiting");
    if (note && n > 0) {
      note.textContent = t("logout_waiting", { n });
      note.hidden = false;
    }
  });
  nearest(near).catch(() => near.replaceChildren(h("li", { class: "help" }, t("nearest_offline"))));
  syncNow();
}

const FLOAT = "iparking.warden.float";

/** The warden's float (cached for offline use); null when unknown. */
async function loadFloat() {
  try {
    const f = await api("GET", "/v1/warden/float");
    localStorage.setItem(FLOAT, JSON.stringify(f));
    return f;
  } catch {
    return JSON.parse(localStorage.getItem(FLOAT) || "null");
  }
}

async function nearest(list) {
  const pos = await new Promise((resolve) => {
    if (!navigator.geolocation) return resolve(PILOT);
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude }),
      () => resolve(PILOT), { timeout: 4000, maximumAge: 60000 });
  });
  const r = await api("GET", `/v1/points?lat=${pos.lat}&lon=${pos.lon}&radius_m=2000&limit=8`);
  list.replaceChildren(...r.points.map((p) => h("li", {},
    h("a", { href: "#/point/" + p.point.code }, h("strong", {}, p.point.code), " ", p.point.name,
      h("span", { class: "dist" }, ` · ${Math.round(p.distance_m)} m`)))));
}

/** Counting the cash handed over: the difference shown, confirmed twice when not zero. */
function closeShiftForm(s, status) {
  const amount = h("input", { id: "cash-counted", name: "cash", inputmode: "numeric", autocomplete: "off", maxlength: "12", required: true });
  const note = h("input", { id: "close-note", name: "note", maxlength: "500", autocomplete: "off" });
  const diff = h("div", { id: "difference", "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "close-shift", class: "secondary" }, t("close_shift"));
  let confirmations = 0;
  let key = null;
  const counted = () => Number(amount.value.replace(/\D/g, ""));
  amount.addEventListener("input", () => { confirmations = 0; key = null; diff.replaceChildren(); submit.textContent = t("close_shift"); });
  const form = h("form", { id: "close-form" },
    h("h3", {}, t("close_shift")),
    h("label", { for: "cash-counted" }, t("cash_counted")), amount,
    h("label", { for: "close-note" }, t("close_note")), note,
    diff, submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (amount.value.trim() === "") return;
    const d = counted() - s.expected_cash;
    const needed = d === 0 ? 1 : 3;
    confirmations += 1;
    if (confirmations < needed) {
      diff.replaceChildren(h("p", { class: d < 0 ? "error" : "warn", role: "alert" },
        t(d < 0 ? "short_by" : "over_by", { amount: money(Math.abs(d)) }), " ",
        t(confirmations === 1 ? "confirm_difference" : "confirm_again")));
      submit.textContent = t(confirmations === 1 ? "confirm_close" : "confirm_close_again");
      return;
    }
    submit.disabled = true;
    key = key || newKey();
    try {
      const closed = await api("POST", `/v1/warden/shifts/${s.id}/close`, { cash_handed_over: counted(), note: note.value.trim() || null }, { key });
      key = null;
      localStorage.removeItem(SHIFT);
      show(h("h1", {}, t("shift_closed")),
        h("section", { class: "card", id: "closed-shift" },
          h("dl", {},
            h("dt", {}, t("expected")), h("dd", {}, money(closed.expected_cash)),
            h("dt", {}, t("handed_over")), h("dd", {}, money(closed.declared_cash)),
            h("dt", {}, t("difference")), h("dd", { id: "closed-difference", class: closed.difference < 0 ? "neg" : "" },
              (closed.difference > 0 ? "+" : "") + money(closed.difference)))),
        h("p", {}, h("a", { href: "#/" }, t("home"))));
    } catch (err) {
      if (err instanceof ApiError && err.status !== 0 && err.status < 500) key = null;
      confirmations = 0;
      status.replaceChildren(offlineError(err) ? h("p", { class: "error", role: "alert" }, t("close_offline")) : errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

async function logout() {
  try {
    await api("POST", "/v1/warden/auth/logout");
  } catch {
    // Gone already, or offline: the device forgets it anyway.
  }
  setToken(null);
  localStorage.removeItem(ME);
  localStorage.removeItem(SHIFT);
  localStorage.removeItem(FLOAT);
  location.hash = "#/login";
  route();
}

// ---- A point: roster and plate checks ---------------------------------------------------

async function loadRoster(code) {
  try {
    const r = await api("GET", `/v1/warden/points/${encodeURIComponent(code)}/vehicles`);
    const saved = { point_code: code, roster: r, at: new Date().toISOString() };
    await put("rosters", saved);
    return { ...saved, offline: false };
  } catch (err) {
    if (!offlineError(err)) throw err;
    const saved = await get("rosters", code);
    if (!saved) throw err;
    return { ...saved, offline: true };
  }
}

function verdictOf(v, now = Date.now()) {
  if (new Date(v.paid_until) > now) return "valid";
  if (new Date(v.expires_at) > now) return "grace";
  return "expired";
}

function rosterList(saved) {
  const now = Date.now();
  return h("ul", { class: "roster", id: "roster" }, saved.roster.vehicles.length
    ? saved.roster.vehicles.map((v) => {
      const verdict = verdictOf(v, now);
      return h("li", { class: "v-" + verdict, "data-plate": v.plate },
        h("button", { type: "button", class: "plate-link", onclick: () => checkPlate(saved.point_code, v.plate) }, formatPlate(v.plate)),
        h("span", { class: "until" }, hanoi(v.paid_until)),
        h("span", { class: "channel" }, tOr("channel_" + v.channel, "channel_other")),
        h("span", { class: "state" }, t("verdict_" + verdict)));
    })
    : [h("li", { class: "help" }, t("roster_empty"))]);
}

let checkPlate = () => {};

async function pointScreen(code) {
  const live = current();
  show(h("p", {}, t("loading")));
  let saved;
  try {
    saved = await loadRoster(code);
  } catch (err) {
    if (!live()) return;
    show(h("p", {}, h("a", { href: "#/" }, "← " + t("home"))), offlineError(err) ? h("p", { class: "error" }, t("roster_none_offline")) : errorBox(err));
    return;
  }
  if (!live()) return;
  choosePoint(code);
  const r = saved.roster;
  const rosterBox = h("div", { id: "roster-box" });
  const asOf = h("p", { class: "help", id: "roster-as-of" });
  const paint = (s) => {
    saved = s;
    asOf.textContent = s.offline ? t("roster_offline", { time: hanoi(s.at) }) : t("roster_fresh", { time: hanoi(s.at), occupied: s.roster.occupied, capacity: s.roster.capacity });
    asOf.classList.toggle("warn", s.offline);
    rosterBox.replaceChildren(rosterList(s));
  };
  const plate = h("input", { id: "plate", name: "plate", class: "plate-input", autocomplete: "off", autocapitalize: "characters", spellcheck: "false", maxlength: "16", inputmode: "text", "aria-describedby": "plate-help" });
  plate.addEventListener("input", () => {
    const f = formatPlate(plate.value);
    if (f !== plate.value) plate.value = f;
  });
  const verdictBox = h("div", { id: "verdict", "aria-live": "assertive" });
  const form = h("form", { id: "check-form", class: "card" },
    h("label", { for: "plate" }, t("plate")), plate,
    h("p", { id: "plate-help", class: "help" }, t("plate_help")),
    h("button", { type: "submit", class: "big-button" }, t("check")));
  checkPlate = async (text) => {
    plate.value = formatPlate(text);
    const p = normalise(text);
    if (!p) return;
    verdictBox.replaceChildren(h("p", {}, t("checking")));
    try {
      const c = await api("GET", `/v1/warden/checks?plate=${encodeURIComponent(p)}&point=${encodeURIComponent(code)}`);
      verdictBox.replaceChildren(verdictCard(code, c, false));
    } catch (err) {
      if (!offlineError(err)) {
        verdictBox.replaceChildren(errorBox(err));
        return;
      }
      // Offline: the last roster answers, marked as such; the check is queued for the trace.
      const v = saved.roster.vehicles.find((x) => x.plate === p);
      const offline = { plate: p, point_code: code, verdict: v ? verdictOf(v) : "unpaid", paid_until: v ? v.paid_until : null, near_misses: [], offline_roster_at: saved.at };
      await enqueue(clientId(), "check", { plate: p, point: code }, { summary: { plate: p, point: code } });
      verdictBox.replaceChildren(verdictCard(code, offline, true));
    }
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    checkPlate(plate.value);
  });
  show(
    h("p", {}, h("a", { href: "#/" }, "← " + t("home"))),
    h("h1", {}, t("point_title", { code })),
    h("p", { class: "help" }, `${r.point_name} · ${r.street}`),
    form, verdictBox,
    h("section", { class: "card" }, h("h2", {}, t("roster")), asOf, rosterBox),
  );
  paint(saved);
  every(ROSTER_MS, async () => {
    try {
      paint(await loadRoster(code));
    } catch {
      // Keep the last one on screen.
    }
  });
}

function verdictCard(code, c, offline) {
  const v = c.verdict;
  const lines = [];
  if (v === "valid" && c.paid_until) lines.push(t("valid_until", { time: hanoi(c.paid_until), left: minutesLeft(c.paid_until) }));
  if ((v === "grace" || v === "expired") && c.minutes_over !== null && c.minutes_over !== undefined) lines.push(t("minutes_over", { n: c.minutes_over }));
  if ((v === "grace" || v === "expired") && offline && c.paid_until) lines.push(t("ended_at", { time: hanoi(c.paid_until) }));
  if (v === "elsewhere" && c.elsewhere) lines.push(t("paid_elsewhere", { code: c.elsewhere.code, name: c.elsewhere.name }));
  const plateParam = encodeURIComponent(c.plate);
  // In its grace period the car's session is still running: more time on it, not a new one.
  const collectHref = v === "grace" && c.session_id ? `#/collect/${code}/${plateParam}/${c.session_id}` : `#/collect/${code}/${plateParam}`;
  return h("section", { class: "verdict v-" + v, id: "verdict-card", "data-verdict": v },
    h("p", { class: "verdict-word" }, t("verdict_" + v)),
    h("p", { class: "verdict-plate" }, formatPlate(c.plate)),
    lines.map((l) => h("p", {}, l)),
    offline ? h("p", { class: "offline-note", id: "offline-answer" }, t("offline_answer", { time: hanoi(c.offline_roster_at) })) : null,
    (c.near_misses || []).length ? h("div", { class: "near" },
      h("p", {}, t("near_misses")),
      c.near_misses.map((n) => h("button", { type: "button", class: "secondary near-miss", "data-plate": n.plate, onclick: () => checkPlate(n.plate) },
        formatPlate(n.plate), " · ", t("verdict_" + n.verdict)))) : null,
    v !== "valid" ? h("div", { class: "actions" },
      h("a", { class: "button", id: "to-collect", href: collectHref }, t(v === "grace" && c.session_id ? "collect_extend" : "collect_cash")),
      h("a", { class: "button secondary", id: "to-violation", href: `#/violation/${code}/${plateParam}` }, t("record_violation"))) : null);
}

function minutesLeft(iso) {
  return Math.max(0, Math.round((new Date(iso) - Date.now()) / 60000));
}

// ---- Collect cash -----------------------------------------------------------------------

async function collectScreen(code, plateText, sessionId) {
  const live = current();
  const plate = normalise(plateText);
  const extending = Boolean(sessionId);
  const status = h("div", { id: "collect-status", "aria-live": "polite" });
  const price = h("div", { id: "collect-price", "aria-live": "polite" });
  const vclass = h("select", { id: "vehicle-class", name: "vehicle_class" },
    ["car", "motorbike", "minibus", "large"].map((c) => h("option", { value: c }, t("class_" + c))));
  const turns = h("select", { id: "turns", name: "turns" },
    [1, 2, 3, 4, 5, 6, 8, 10, 12].map((n) => h("option", { value: String(n) }, t("turns_n", { n }))));
  const payment = h("select", { id: "payment", name: "payment" },
    h("option", { value: "cash" }, t("pay_cash")), h("option", { value: "float" }, t("pay_float")));
  loadFloat().then((f) => {
    if (f) payment.options[1].textContent = t("pay_float_balance", { balance: money(f.balance) });
  });
  const confirm = h("button", { type: "submit", id: "confirm-collect", disabled: true }, t("confirm_collect"));
  let key = null;
  let quoted = null;
  const reprice = async () => {
    key = null;
    quoted = null;
    confirm.disabled = true;
    const n = Number(turns.value);
    try {
      let q;
      if (extending) {
        q = await api("GET", `/v1/warden/sessions/${sessionId}/extension-quote?turns=${n}`);
      } else {
        q = await api("POST", "/v1/quotes", { point_code: code, vehicle_class: vclass.value, minutes: n * 60, channel: "warden" });
        if (q.turn_minutes !== 60) q = await api("POST", "/v1/quotes", { point_code: code, vehicle_class: vclass.value, minutes: n * q.turn_minutes, channel: "warden" });
      }
      quoted = q;
      price.replaceChildren(h("p", { class: "big" }, money(q.total)), h("p", { class: "help" }, t("until", { time: hanoi(q.end) })));
      confirm.textContent = t(payment.value === "float" ? "float_amount" : "collect_amount", { amount: money(q.total) });
    } catch (err) {
      if (offlineError(err)) {
        price.replaceChildren(h("p", { class: "warn" }, t("price_offline")));
        confirm.textContent = t("confirm_collect");
      } else {
        price.replaceChildren(errorBox(err));
        return;
      }
    }
    confirm.disabled = false;
  };
  vclass.addEventListener("change", reprice);
  turns.addEventListener("change", reprice);
  payment.addEventListener("change", reprice);
  const form = h("form", { id: "collect-form", class: "card" },
    h("p", { class: "verdict-plate" }, formatPlate(plate)),
    extending ? h("p", { class: "help" }, t("extend_help")) : [h("label", { for: "vehicle-class" }, t("vehicle_class")), vclass],
    h("label", { for: "turns" }, t("turns")), turns,
    h("label", { for: "payment" }, t("paid_by")), payment,
    price, status, confirm);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (confirm.disabled) return;
    confirm.disabled = true;
    const body = extending
      ? { turns: Number(turns.value), payment: payment.value }
      : { point_code: code, plate, vehicle_class: vclass.value, turns: Number(turns.value), payment: payment.value };
    // One attempt, one key (a UUID): a retry, or the same payment queued, reuses it.
    key = key || clientId();
    const path = extending ? `/v1/warden/sessions/${sessionId}/extend` : "/v1/warden/sessions";
    try {
      const paid = await api("POST", path, body, { key });
      key = null;
      await keepSlip(paid.receipt);
      location.hash = "#/slip/" + encodeURIComponent(paid.receipt.number);
    } catch (err) {
      if (offlineError(err)) {
        // Never lost, never twice: with no network it is queued under this attempt's id; if
        // the answer was lost on the way, the same call is sent again with the same key.
        const summary = { plate, point: code, amount: quoted ? quoted.total : null, turns: body.turns };
        const how = await lostOrQueued(err, key,
          () => (extending
            ? enqueue(key, "cash_extension", { session_id: Number(sessionId), ...body }, { summary })
            : enqueue(key, "cash_session", body, { summary })),
          () => keepPending(key, { method: "POST", path, body, kind: extending ? "cash_extension" : "cash_session" }, { summary }));
        const id = key.slice(0, 8);
        key = null;
        // This payment is taken: the form is done (a second tap would be a second payment).
        form.replaceChildren(h("p", { class: "warn", role: "status", id: "queued-note" },
          t(how === "queued" ? "collect_queued" : "collect_pending", { id })),
        h("p", {}, h("a", { href: "#/point/" + code }, "← " + t("point_title", { code }))));
        return;
      }
      // A refusal is final for this key; an answer still being made keeps it.
      if (err instanceof ApiError && err.status < 500 && err.code !== "idempotency_in_progress") key = null;
      status.replaceChildren(errorBox(err));
    } finally {
      confirm.disabled = false;
    }
  });
  if (!live()) return;
  show(h("p", {}, h("a", { href: "#/point/" + code }, "← " + t("point_title", { code }))),
    h("h1", {}, t(extending ? "extend_title" : "collect_title")), form);
  await reprice();
}

// ---- Slips ------------------------------------------------------------------------------

async function slipScreen(number) {
  const live = current();
  const kept = await get("done", "slip:" + number);
  if (!live()) return;
  if (!kept) {
    show(h("p", {}, h("a", { href: "#/" }, "← " + t("home"))), h("p", { class: "error" }, t("slip_unknown")));
    return;
  }
  const r = kept.receipt;
  const url = new URL(r.public_path, location.origin).href;
  show(
    h("p", { class: "no-print" }, h("a", { href: "#/point/" + r.point_code }, "← " + t("point_title", { code: r.point_code }))),
    h("section", { class: "slip", id: "slip", "data-url": url },
      h("h1", {}, t("slip_title")),
      h("p", { class: "slip-number" }, r.number),
      h("p", { class: "slip-amount" }, money(r.amount)),
      h("dl", {},
        h("dt", {}, t("plate")), h("dd", {}, formatPlate(r.plate)),
        h("dt", {}, t("point")), h("dd", {}, `${r.point_code} · ${r.point_name}`),
        h("dt", {}, t("taken_at")), h("dd", {}, hanoi(r.issued_at, true)),
        h("dt", {}, t("paid_until")), h("dd", {}, hanoi(r.paid_until, true)),
        h("dt", {}, t("turns")), h("dd", {}, String(r.turns)),
        h("dt", {}, t("paid_by")), h("dd", {}, t(r.payment === "float" ? "pay_float" : "pay_cash")),
        h("dt", {}, t("badge")), h("dd", {}, r.badge),
        h("dt", {}, t("code")), h("dd", { class: "code" }, r.verification_code)),
      qrSvg(url, t("qr_label")),
      h("p", { class: "help" }, t("slip_scan"))),
    h("button", { type: "button", id: "print", class: "no-print", onclick: () => window.print() }, t("print")),
  );
}

// ---- Violations -------------------------------------------------------------------------

const REASONS = ["unpaid", "overstay", "wrong_vehicle_class", "outside_bay", "obstruction"];
const PHOTO_KEEP = 1500000;

/** A photo as the API takes it: small ones as they are, big ones scaled to 1600 px JPEG. */
async function photoBytes(file) {
  if (file.size <= PHOTO_KEEP) return file;
  try {
    const bmp = await createImageBitmap(file);
    const scale = Math.min(1, 1600 / Math.max(bmp.width, bmp.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bmp.width * scale);
    canvas.height = Math.round(bmp.height * scale);
    canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
    return await new Promise((resolve) => canvas.toBlob((b) => resolve(b || file), "image/jpeg", 0.82));
  } catch {
    return file;
  }
}

function base64Of(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",")[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function violationScreen(code, plateText) {
  const plate = normalise(plateText);
  const status = h("div", { id: "violation-status", "aria-live": "polite" });
  const reason = h("select", { id: "reason", name: "kind" }, REASONS.map((k) => h("option", { value: k }, t("kind_" + k))));
  const note = h("textarea", { id: "note", name: "note", rows: "3", maxlength: "500", required: true });
  const photos = h("input", { id: "photos", name: "photo", type: "file", accept: "image/jpeg,image/png", capture: "environment", multiple: true, required: true, "aria-describedby": "photos-help" });
  const submit = h("button", { type: "submit", id: "submit-violation" }, t("record_violation"));
  let key = null;
  const reset = () => { key = null; };
  for (const el of [reason, note, photos]) el.addEventListener("change", reset);
  const form = h("form", { id: "violation-form", class: "card" },
    h("p", { class: "verdict-plate" }, formatPlate(plate)),
    h("label", { for: "reason" }, t("reason")), reason,
    h("label", { for: "note" }, t("note")), note,
    h("label", { for: "photos" }, t("photos")), photos,
    h("p", { class: "help", id: "photos-help" }, t("photos_help")),
    status, submit);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const files = [...photos.files];
    if (files.length < 1 || files.length > 5) {
      status.replaceChildren(h("p", { class: "error", role: "alert" }, t("photos_count")));
      return;
    }
    submit.disabled = true;
    const where = await new Promise((resolve) => {
      if (!navigator.geolocation) return resolve(null);
      navigator.geolocation.getCurrentPosition((p) => resolve(p.coords), () => resolve(null), { timeout: 3000, maximumAge: 60000 });
    });
    const blobs = await Promise.all(files.map(photoBytes));
    const fd = new FormData();
    fd.append("plate", plate);
    fd.append("point", code);
    fd.append("kind", reason.value);
    fd.append("note", note.value.trim());
    if (where) {
      fd.append("lat", String(where.latitude));
      fd.append("lon", String(where.longitude));
    }
    blobs.forEach((b, i) => fd.append("photo", b, `photo-${i + 1}.${b.type === "image/png" ? "png" : "jpg"}`));
    key = key || clientId();
    try {
      const v = await api("POST", "/v1/warden/violations", fd, { key, form: true });
      key = null;
      await put("done", { id: "citation:" + v.number, kind: "citation", citation: v });
      show(h("h1", {}, t("violation_recorded")),
        h("section", { class: "card", id: "citation" },
          h("p", { class: "slip-number", id: "citation-number" }, v.number),
          h("p", {}, t("citation_code", { code: v.verification_code })),
          h("p", {}, `${formatPlate(v.plate)} · ${v.point_code} · ${tOr("kind_" + v.kind, "kind_other")}`)),
        h("p", {}, h("a", { href: "#/point/" + code }, "← " + t("point_title", { code }))));
    } catch (err) {
      if (offlineError(err)) {
        const encoded = await Promise.all(blobs.map(base64Of));
        const summary = { plate, point: code, kind: reason.value, photos: blobs.length };
        const payload = {
          plate, point: code, kind: reason.value, note: note.value.trim(),
          lat: where ? where.latitude : null, lon: where ? where.longitude : null,
          photos: encoded,
        };
        const fields = [...fd.entries()].filter(([k]) => k !== "photo").map(([k, v]) => [k, String(v)]);
        const how = await lostOrQueued(err, key,
          () => enqueue(key, "violation", payload, { summary }),
          () => keepPending(key, {
            method: "POST", path: "/v1/warden/violations", kind: "violation",
            form: { fields, photos: encoded.map((data, i) => ({ data, type: blobs[i].type || "image/jpeg" })) },
          }, { summary }));
        key = null;
        form.replaceChildren(h("p", { class: "warn", role: "status", id: "queued-note" },
          t(how === "queued" ? "violation_queued" : "violation_pending")),
        h("p", {}, h("a", { href: "#/point/" + code }, "← " + t("point_title", { code }))));
        return;
      }
      if (err instanceof ApiError && err.status < 500 && err.code !== "idempotency_in_progress") key = null;
      status.replaceChildren(errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
  show(h("p", {}, h("a", { href: "#/point/" + code }, "← " + t("point_title", { code }))),
    h("h1", {}, t("violation_title")), form);
}

// ---- History ----------------------------------------------------------------------------

async function historyScreen() {
  const live = current();
  show(h("p", {}, t("loading")));
  const waiting = [...await mine("queue"), ...await mine("pending")].sort((a, b) => b.device_time.localeCompare(a.device_time));
  const done = (await all("done")).filter((d) => d.status);
  let hist = null;
  let problem = null;
  try {
    const s = JSON.parse(localStorage.getItem(SHIFT) || "null") || (await loadShift()).shift;
    if (s) hist = await api("GET", `/v1/warden/shifts/${s.id}/history`);
  } catch (err) {
    problem = err;
  }
  if (!live()) return;
  const sync = h("button", { type: "button", id: "sync-now", class: "secondary" }, t("sync_now"));
  sync.addEventListener("click", async () => {
    await syncNow();
    route();
  });
  const actionLine = (a) => h("li", { class: "queued" },
    h("span", {}, tOr("action_" + a.kind, "action_other")),
    h("span", {}, a.summary ? [a.summary.plate ? formatPlate(a.summary.plate) : "", a.summary.point ? " · " + a.summary.point : ""] : ""),
    h("span", { class: "state" }, hanoi(a.device_time)));
  const resultLine = (d) => h("li", { class: "result r-" + d.status, "data-status": d.status },
    h("span", {}, tOr("action_" + d.kind, "action_other"), d.summary && d.summary.plate ? " · " + formatPlate(d.summary.plate) : ""),
    h("span", { class: "state" }, tOr("sync_" + d.status, "sync_other")),
    d.flags.length ? h("span", { class: "flags" }, d.flags.map((f) => tOr("flag_" + f, "flag_other")).join(", ")) : null,
    d.error ? h("span", { class: "flags" }, d.error) : null);
  const conflicts = done.filter((d) => d.status !== "applied");
  show(
    h("p", {}, h("a", { href: "#/" }, "← " + t("home"))),
    h("h1", {}, t("history_title")),
    h("section", { class: "card", id: "waiting" }, h("h2", {}, t("waiting", { n: waiting.length })),
      waiting.length ? h("ul", { class: "lines" }, waiting.map(actionLine)) : h("p", { class: "help" }, t("nothing_waiting")), sync),
    conflicts.length ? h("section", { class: "card", id: "conflicts" }, h("h2", {}, t("conflicts")),
      h("ul", { class: "lines" }, conflicts.map(resultLine))) : null,
    problem ? (offlineError(problem) ? h("p", { class: "warn" }, t("history_offline")) : errorBox(problem)) : null,
    hist ? [
      h("section", { class: "card", id: "history-slips" }, h("h2", {}, t("slips", { n: hist.slips.length })),
        h("ul", { class: "lines" }, hist.slips.map((r) => h("li", {},
          h("a", { href: "#/slip/" + encodeURIComponent(r.number), onclick: () => keepSlip(r) }, r.number),
          h("span", {}, formatPlate(r.plate) + " · " + r.point_code),
          h("span", { class: "num" }, money(r.amount)))))),
      h("section", { class: "card", id: "history-citations" }, h("h2", {}, t("citations", { n: hist.citations.length })),
        h("ul", { class: "lines" }, hist.citations.map((v) => h("li", {},
          h("span", {}, v.number), h("span", {}, formatPlate(v.plate) + " · " + v.point_code),
          h("span", {}, tOr("kind_" + v.kind, "kind_other")))))),
      h("section", { class: "card", id: "history-checks" }, h("h2", {}, t("checks", { n: hist.checks.length })),
        h("ul", { class: "lines" }, hist.checks.map((c) => h("li", {},
          h("span", {}, formatPlate(c.plate) + " · " + c.point_code),
          h("span", { class: "state v-" + c.verdict }, t("verdict_" + c.verdict)),
          h("span", {}, hanoi(c.at)))))),
    ] : (!problem ? h("p", { class: "help" }, t("no_shift")) : null),
  );
}

// ---- Router -----------------------------------------------------------------------------

function route() {
  nextScreen();
  const hash = location.hash || "#/";
  if (!token()) return loginScreen(sessionStorage.getItem("iparking.warden.why"));
  sessionStorage.removeItem("iparking.warden.why");
  let m = hash.match(/^#\/point\/([A-Za-z0-9]{1,12})$/);
  if (m) return pointScreen(m[1].toUpperCase());
  m = hash.match(/^#\/collect\/([A-Za-z0-9]{1,12})\/([^/]{1,32})(?:\/(\d{1,18}))?$/);
  if (m) return collectScreen(m[1].toUpperCase(), decodeURIComponent(m[2]), m[3]);
  m = hash.match(/^#\/violation\/([A-Za-z0-9]{1,12})\/([^/]{1,32})$/);
  if (m) return violationScreen(m[1].toUpperCase(), decodeURIComponent(m[2]));
  m = hash.match(/^#\/slip\/([^/]{1,40})$/);
  if (m) return slipScreen(decodeURIComponent(m[1]));
  if (hash.startsWith("#/history")) return historyScreen();
  return homeScreen();
}

function applyLang() {
  showLanguage();
  refreshBadge();
}

function applyNetwork() {
  document.getElementById("net").hidden = navigator.onLine;
  if (navigator.onLine) syncNow();
}

document.getElementById("lang").addEventListener("click", () => {
  setLang(lang() === "vi" ? "en" : "vi");
  applyLang();
  route();
});
// A revoked token (any call answered 401): back to the login screen, with the reason.
window.addEventListener("iparking:logged-out", () => {
  localStorage.removeItem(ME);
  sessionStorage.setItem("iparking.warden.why", t("logged_out_revoked"));
  location.hash = "#/login";
  route();
});
window.addEventListener("hashchange", route);
window.addEventListener("online", applyNetwork);
window.addEventListener("offline", applyNetwork);
applyLang();
applyNetwork();
route();
setInterval(syncNow, SYNC_MS);
if ("serviceWorker" in navigator) navigator.serviceWorker.register("/warden/sw.js", { scope: "/warden/" }).catch(() => {});
