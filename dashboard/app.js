// peercam dashboard: sign in to an MQTT broker, list devices from their retained
// status, watch them live over WebRTC, answer their calls (PROTOCOL.md v1).
//
// Plain ES modules, no build step. mqtt.js is loaded before this file as a classic
// script (vendor/mqtt.min.js) and provides the global `mqtt`. Tests read
// `window.peercam`, `body[data-view]` and `body[data-state]`.

import { Link, describeUnreachable } from "./link.js";
import { Ringer, openMicrophone, savePng, stillOf, toggleFullscreen } from "./media-util.js";
import { PushPanel } from "./push.js";
import { DeviceSession } from "./session.js";
import {
  CALL_RE,
  ID_RE,
  PROTOCOL_VERSION,
  checkBrokerUrl,
  clearStoredSignin,
  loadPageConfig,
  resolveSettings,
  signinProblems,
  storeSignin,
} from "./settings.js";
import { statsLines } from "./stats.js";

const SIGNIN_TIMEOUT_MS = 12000;
const V5_TIMEOUT_MS = 6000; // no CONNACK to MQTT 5 this long: try MQTT 3.1.1
const LINK_LINGER_MS = 15000; // a device link with no session is closed after this
const NO_DEVICE_HINT_MS = 4000; // no status this long after sign-in: explain why
const STILL_EVERY_MS = 10000; // tiles keep a recent still for when they are not live
const ACTION_ERROR_WINDOW_MS = 10000; // an error without session this soon after an action is about it
const MAX_CALLS_SHOWN = 20;
const MAX_MISSED_SHOWN = 12;
const CALL_ENDED_TEXT = {
  answered: "answered",
  missed: "missed",
  declined: "declined",
  cancelled: "cancelled",
};

const $ = (id) => document.getElementById(id);

const app = {
  settings: null,
  signin: null,
  prefix: "peercam",
  main: null, // the main Link
  links: new Map(), // device -> {link, idle}
  devices: new Map(), // device -> {id, status, calls, card, visible, still, stillAt}
  sessions: new Map(), // device -> DeviceSession
  iceCache: new Map(),
  ringing: new Map(), // call -> {device, call, at, expiresAt, timer}
  dialogCall: null,
  snapshots: new Map(), // "device/call" -> {url, state: "pending" | "done" | "none"}
  route: { view: "devices", device: null },
  lastAction: new Map(), // device -> time of our last reply / open / decline
  liveTiles: true,
  observer: null,
  noDeviceTimer: null,
  signedInAt: 0,
  answered: new Set(), // calls answered in this tab
  ended: new Set(), // calls that stopped ringing here (a redelivered "call" must not ring again)
  ringer: new Ringer(),
  signingIn: false,
};

// --- small UI helpers -------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** Replace an element's children only when `key` changed (keeps focus and decoded images). */
function setChildren(node, key, build) {
  if (node.dataset.key === key) return;
  node.dataset.key = key;
  node.replaceChildren(...build());
}

function toast(text, kind = "info", ms = 6000) {
  const box = $("toasts");
  const item = el("p", { class: `toast toast-${kind}`, text });
  box.append(item);
  while (box.childElementCount > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), ms);
}

function deviceName(id) {
  const s = app.devices.get(id)?.status;
  return s && typeof s.name === "string" && s.name ? s.name : id;
}

function inTopic(device) {
  return `${app.prefix}/${device}/in/${app.signin.viewer}`;
}

function formatTime(unix) {
  if (!Number.isFinite(unix)) return "";
  const d = new Date(unix * 1000);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

// --- views and routing --------------------------------------------------------------------

function showView(view) {
  document.body.dataset.view = view;
  $("signin-view").hidden = view !== "signin";
  $("devices-view").hidden = view !== "devices";
  $("device-view").hidden = view !== "device";
  const signedIn = view !== "signin" && view !== "loading";
  $("signout").hidden = !signedIn;
  $("who").hidden = !signedIn;
  $("demo-ring").hidden = !(signedIn && app.settings?.demo);
  updateBodyState();
}

function parseHash() {
  const m = /^#\/device\/([^/?#]+)$/.exec(location.hash);
  if (m) {
    const id = decodeURIComponent(m[1]);
    if (ID_RE.test(id)) return { view: "device", device: id };
  }
  return { view: "devices", device: null };
}

function applyRoute() {
  if (!app.main) return; // not signed in: the sign-in form stays
  const previous = app.route;
  app.route = parseHash();
  if (previous.view === "device" && previous.device && previous.device !== app.route.device) {
    const s = app.sessions.get(previous.device);
    if (s) {
      s.detach($("dv-video"));
      s.want("view", false);
    }
  }
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  showView(app.route.view);
  if (app.route.view === "device") {
    const s = sessionFor(app.route.device);
    s.attach($("dv-video"));
    s.want("view", true);
    renderDeviceView();
    $("device-heading").focus?.();
  }
  updateTileWants();
  renderAll();
}

function go(hash) {
  if (location.hash === hash) applyRoute();
  else location.hash = hash;
}

// --- sessions -------------------------------------------------------------------------

const host = {
  inTopic,
  deviceStatus: (device) => app.devices.get(device)?.status || null,
  brokerConnected: () => Boolean(app.main && app.main.connected),
  pageVisible: () => document.visibilityState !== "hidden",
  iceCache: app.iceCache,
  linkOf: (device) => app.links.get(device)?.link || null,
  deviceLink,
  linkIdle,
  changed: sessionChanged,
};

function sessionFor(device) {
  let s = app.sessions.get(device);
  if (!s) {
    s = new DeviceSession(device, host);
    app.sessions.set(device, s);
  }
  return s;
}

/** The device's own link, whose last will is `bye "*"` on our in topic of that device. */
async function deviceLink(device) {
  let entry = app.links.get(device);
  if (entry && (entry.link.state === "ended" || entry.link.state === "refused")) {
    app.links.delete(device);
    entry = null;
  }
  if (!entry) {
    const will = { topic: inTopic(device), payload: JSON.stringify({ v: PROTOCOL_VERSION, type: "bye", session: "*" }) };
    const link = new Link(app.signin, {
      tag: device.slice(0, 16),
      username: app.settings.username,
      mqttVersion: app.mqttVersion,
      will,
    });
    entry = { link, idle: null };
    app.links.set(device, entry);
  }
  clearTimeout(entry.idle);
  entry.idle = null;
  return entry.link.ready(10000);
}

function linkIdle(device) {
  const entry = app.links.get(device);
  if (!entry) return;
  clearTimeout(entry.idle);
  entry.idle = setTimeout(() => {
    const s = app.sessions.get(device);
    if (s && s.running) return;
    entry.link.end(); // DISCONNECT: no will
    if (app.links.get(device) === entry) app.links.delete(device);
  }, LINK_LINGER_MS);
}

let renderQueued = false;
function sessionChanged(session) {
  const d = app.devices.get(session.device);
  if (d && session.state === "live" && (!d.stillAt || performance.now() - d.stillAt > STILL_EVERY_MS)) {
    const video = d.card?.querySelector("video");
    const still = video && stillOf(video);
    if (still) {
      d.still = still;
      d.stillAt = performance.now();
    }
  }
  if (!renderQueued) {
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderAll();
    });
  }
  // Tests poll this without waiting for a frame to be painted.
  updateBodyState();
}

function primarySession() {
  if (app.route.view === "device" && app.route.device) return app.sessions.get(app.route.device) || null;
  for (const id of sortedDevices()) {
    const s = app.sessions.get(id);
    if (s && s.reasons.size) return s;
  }
  return null;
}

function updateBodyState() {
  const view = document.body.dataset.view;
  let state;
  if (view === "signin" || view === "loading") state = "signin";
  else {
    const s = primarySession();
    state = s ? s.state : "idle";
  }
  document.body.dataset.state = state;
}

// --- sign in / out ----------------------------------------------------------------------

function showSigninMessage(text, { certUrl = null, kind = "error" } = {}) {
  const box = $("signin-message");
  box.hidden = !text;
  box.dataset.kind = kind;
  $("signin-text").textContent = text || "";
  $("signin-cert").hidden = !certUrl;
  if (certUrl) {
    $("signin-cert-link").href = certUrl;
    $("signin-cert-link").textContent = `Open ${certUrl} to check the certificate`;
  }
}

function formSignin() {
  return {
    broker_url: $("f-broker").value.trim(),
    viewer: $("f-viewer").value.trim(),
    password: $("f-password").value,
    topic_prefix: $("f-prefix").value.trim() || "peercam",
    remember: $("f-remember").checked,
  };
}

function fillForm(signin) {
  $("f-broker").value = signin.broker_url || "";
  $("f-viewer").value = signin.viewer || "";
  $("f-password").value = signin.password || "";
  $("f-prefix").value = signin.topic_prefix || "peercam";
  $("f-remember").checked = Boolean(signin.remember);
  checkBrokerField();
}

function checkBrokerField() {
  const url = $("f-broker").value.trim();
  const out = $("f-broker-check");
  const result = url ? checkBrokerUrl(url) : {};
  out.textContent = result.error || result.warning || "";
  $("f-broker").setAttribute("aria-invalid", result.error ? "true" : "false");
}

async function signIn(signin) {
  if (app.signingIn) return;
  const problems = signinProblems(signin);
  showView("signin");
  if (problems.length) {
    showSigninMessage(problems.join(" "));
    return;
  }
  app.signingIn = true;
  $("signin-submit").disabled = true;
  showSigninMessage("Connecting to the broker…", { kind: "info" });
  if (navigator.userActivation?.hasBeenActive) app.ringer.unlock(); // a click signed in
  try {
    const version = app.settings.mqttVersion;
    // A broker that only speaks MQTT 3.1.1 may refuse MQTT 5 (or not answer it at all).
    let result = await connectMain(signin, version, version === 5 ? V5_TIMEOUT_MS : SIGNIN_TIMEOUT_MS);
    if (result.retryV4) result = await connectMain(signin, 4, SIGNIN_TIMEOUT_MS);
    if (!result.link) {
      showSigninMessage(result.text, { certUrl: result.certUrl });
      return;
    }
    app.mqttVersion = result.version;
    app.signin = signin;
    app.prefix = signin.topic_prefix;
    app.main = result.link;
    // Kept for this tab (a reload signs in again; the password left the URL), or for this
    // browser when "remember me" is ticked.
    storeSignin(signin);
    scrubUrl();
    showSigninMessage("");
    $("who").textContent = signin.viewer;
    $("d-broker").textContent = signin.broker_url;
    $("d-viewer").textContent = signin.viewer;
    await subscribeMain();
    mainStateChanged(app.main);
    if (app.settings.device && !location.hash) location.hash = `#/device/${app.settings.device}`;
    applyRoute();
  } finally {
    app.signingIn = false;
    $("signin-submit").disabled = false;
  }
}

/** Connect the main link; resolves {link, version} or {text, certUrl} or {retryV4}. */
function connectMain(signin, version, timeoutMs) {
  return new Promise((resolve) => {
    let settled = false;
    const finish = (value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(value);
    };
    const link = new Link(signin, {
      tag: "main",
      username: app.settings.username,
      mqttVersion: version,
      onMessage: onMainMessage,
      onState: (l) => {
        if (!settled) {
          if (l.state === "connected") finish({ link: l, version });
          else if (l.state === "refused") {
            l.end();
            const unsupported = l.refusal.code === 1 || l.refusal.code === 132;
            finish(unsupported && version === 5 ? { retryV4: true } : { text: l.refusal.text });
          } else if (l.state === "offline" && !l.everConnected) {
            l.end();
            finish(describeUnreachable(signin.broker_url));
          }
          return;
        }
        if (app.main === l) mainStateChanged(l);
      },
    });
    const timer = setTimeout(() => {
      link.end();
      // The WebSocket is open but MQTT 5 gets no answer: try MQTT 3.1.1 once.
      finish(version === 5 ? { retryV4: true } : describeUnreachable(signin.broker_url));
    }, timeoutMs);
  });
}

function scrubUrl() {
  // A password in the address bar would end up in the history: drop it once used.
  const q = new URLSearchParams(location.search);
  if (!q.has("password")) return;
  q.delete("password");
  const query = q.toString();
  history.replaceState(null, "", `${location.pathname}${query ? `?${query}` : ""}${location.hash}`);
}

async function subscribeMain() {
  const p = app.prefix;
  const filters = [`${p}/+/status`, `${p}/+/events`, `${p}/+/calls`, `${p}/+/out/${app.signin.viewer}`];
  try {
    const granted = await app.main.subscribe(filters);
    const refused = granted.filter((g) => g && g.qos >= 128).map((g) => g.topic);
    if (refused.length) toast(`The broker refused to let this viewer read ${refused.join(", ")} (not authorised).`, "error", 15000);
  } catch (err) {
    toast(`Could not subscribe: ${err.message}`, "error", 15000);
  }
  app.signedInAt = performance.now();
  clearTimeout(app.noDeviceTimer);
  app.noDeviceTimer = setTimeout(renderAll, NO_DEVICE_HINT_MS + 50);
}

function mainStateChanged(link) {
  const status = $("broker-status");
  if (link.state === "connected") {
    status.textContent = "";
    status.dataset.kind = "ok";
  } else if (link.state === "refused") {
    // The broker refused a reconnect (password changed, viewer removed): back to the form.
    signOut(`The broker signed you out: ${link.refusal.text}`, { keepStored: true });
    return;
  } else if (link.state !== "ended") {
    status.textContent = "Connection to the broker lost; reconnecting… (live video keeps playing)";
    status.dataset.kind = "warn";
  }
  for (const s of app.sessions.values()) s.evaluate();
}

function signOut(message = "Signed out.", { keepStored = false } = {}) {
  leaveAll();
  for (const s of app.sessions.values()) s.dispose();
  app.observer?.disconnect();
  app.sessions.clear();
  app.links.clear();
  app.main = null;
  for (const r of app.ringing.values()) clearTimeout(r.timer);
  app.ringing.clear();
  app.answered.clear();
  closeRingDialog();
  app.ringer.stop();
  for (const snap of app.snapshots.values()) if (snap.url) URL.revokeObjectURL(snap.url);
  app.snapshots.clear();
  app.devices.clear();
  app.iceCache.clear();
  $("device-grid").replaceChildren();
  if (!keepStored) {
    clearStoredSignin();
    $("f-password").value = "";
  }
  $("broker-status").textContent = "";
  history.replaceState(null, "", location.pathname + location.search);
  app.route = { view: "devices", device: null };
  showView("signin");
  showSigninMessage(message, { kind: keepStored ? "error" : "info" });
}

/** Bye for every session and a clean DISCONNECT for every link, synchronously (page closing). */
function leaveAll() {
  for (const [device, entry] of app.links) {
    const s = app.sessions.get(device);
    const bye = s ? s.byeMessage() : null;
    if (s) {
      s.run += 1; // ignore whatever the closing peer connection still reports
      if (s.pc) s.pc.close();
      s.pc = null;
      s.id = null;
    }
    entry.link.endNow(bye ? [[inTopic(device), bye]] : []);
  }
  if (app.main) app.main.endNow();
}

// --- messages from the broker -------------------------------------------------------------

function parseJson(payload) {
  try {
    const msg = JSON.parse(new TextDecoder().decode(payload));
    return msg && typeof msg === "object" && !Array.isArray(msg) ? msg : null;
  } catch {
    return null;
  }
}

function onMainMessage(topic, payload) {
  const p = `${app.prefix}/`;
  if (!topic.startsWith(p)) return;
  const parts = topic.slice(p.length).split("/");
  const device = parts[0];
  if (!ID_RE.test(device)) return;
  const kind = parts[1];
  if (kind === "snapshot" && parts.length === 3) {
    onSnapshot(device, parts[2], payload);
    return;
  }
  if (kind === "status" && parts.length === 2) {
    if (payload.length === 0) removeDevice(device); // retained status cleared: device removed
    else onStatus(device, parseJson(payload));
    return;
  }
  const msg = parseJson(payload);
  if (!msg || msg.v !== PROTOCOL_VERSION || typeof msg.type !== "string") {
    console.warn(`peercam: ignored a message on ${topic} that is not protocol v1`);
    return;
  }
  if (kind === "events" && parts.length === 2) onEvent(device, msg);
  else if (kind === "calls" && parts.length === 2) onCalls(device, msg);
  else if (kind === "out" && parts.length === 3 && parts[2] === app.signin.viewer) onOut(device, msg);
}

function ensureDevice(id) {
  let d = app.devices.get(id);
  if (!d) {
    d = { id, status: null, calls: [], card: null, visible: false, still: null, stillAt: 0 };
    app.devices.set(id, d);
  }
  return d;
}

/** Strings only: retained data from the broker is not trusted to have the right types. */
function strings(list) {
  return Array.isArray(list) ? list.filter((x) => typeof x === "string") : [];
}

/** A unix time (s) that makes a valid Date, else null (1e300 would throw in toISOString). */
function unixTime(value) {
  return Number.isFinite(value) && Math.abs(value) < 8.64e12 ? value : null;
}

function cleanStatus(status) {
  const clean = { ...status, faults: strings(status.faults), warnings: strings(status.warnings) };
  if (typeof clean.name !== "string") delete clean.name;
  if (clean.call !== null && typeof clean.call !== "string") clean.call = null;
  return clean;
}

function cleanCall(c) {
  const clean = { call: c.call, at: unixTime(c.at), snapshot: c.snapshot === true };
  clean.reason = typeof c.reason === "string" || c.reason === null ? c.reason : ""; // null: ringing
  if (typeof c.by === "string") clean.by = c.by;
  return clean;
}

function onStatus(device, raw) {
  if (!raw || raw.type !== "status") return;
  const status = cleanStatus(raw);
  const d = ensureDevice(device);
  const previous = d.status;
  d.status = status;
  if (!d.card) createCard(d);
  const s = app.sessions.get(device);
  if (s) s.statusChanged(previous, status);
  renderAll();
  push.statusChanged(device);
}

function removeDevice(device) {
  const d = app.devices.get(device);
  if (!d) return;
  for (const [call, ring] of [...app.ringing]) if (ring.device === device) endRing(call);
  const s = app.sessions.get(device);
  if (s) {
    s.reasons.clear();
    s.stop({ bye: false, state: "idle" });
  }
  if (d.card) {
    app.observer?.unobserve(d.card);
    d.card.remove();
  }
  app.devices.delete(device);
  renderAll();
}

function onOut(device, msg) {
  if (push.onOut(device, msg)) return;
  const s = app.sessions.get(device);
  if (s && s.id !== null && msg.session === s.id) {
    s.onMessage(msg);
    return;
  }
  if (msg.type === "error" && !msg.session) {
    // About a reply, an open or a decline of ours (or another tab's of this viewer).
    const recent = performance.now() - (app.lastAction.get(device) || -Infinity) < ACTION_ERROR_WINDOW_MS;
    if (!recent) return;
    const code = typeof msg.code === "string" ? msg.code : "error";
    const text = typeof msg.message === "string" ? msg.message : "";
    if (code === "unauthorized") toast(`${deviceName(device)}: this viewer is not allowed to do that${text ? ` (${text})` : ""}.`, "error", 10000);
    else toast(`${deviceName(device)} refused: ${text || code} (${code}).`, "error", 10000);
  }
}

// --- calls ----------------------------------------------------------------------------

function onEvent(device, msg) {
  switch (msg.type) {
    case "call":
      onRing(device, msg);
      break;
    case "call-ended":
      onCallEnded(device, msg);
      break;
    case "opened": {
      const by = typeof msg.by === "string" && msg.by ? ` by ${msg.by === app.signin.viewer ? "you" : msg.by}` : "";
      toast(`${deviceName(device)}: the door was opened${by}.`, "ok");
      break;
    }
    default:
      break;
  }
}

function onRing(device, msg) {
  if (typeof msg.call !== "string" || !CALL_RE.test(msg.call)) return;
  const expiresIn = Number.isFinite(msg.expires_in) && msg.expires_in > 0 ? msg.expires_in : 30;
  const at = Number.isFinite(msg.at) ? msg.at : Date.now() / 1000;
  // A doorbell event that arrives after the call expired is useless: ignore it.
  const left = at + expiresIn - Date.now() / 1000;
  if (left <= 0) {
    console.warn(`peercam: ignored call ${msg.call} of ${device}: it expired ${Math.round(-left)} s ago`);
    return;
  }
  if (app.ringing.has(msg.call) || app.ended.has(msg.call)) return;
  const ring = { device, call: msg.call, at, expiresAt: at + expiresIn, timer: null };
  ring.timer = setTimeout(() => endRing(msg.call), Math.min(left, expiresIn) * 1000);
  app.ringing.set(msg.call, ring);
  ensureDevice(device);
  requestSnapshot(device, msg.call);
  sessionFor(device).want("ring", true);
  app.ringer.start();
  showRingDialog(msg.call);
  renderAll();
}

function onCallEnded(device, msg) {
  if (typeof msg.call !== "string") return;
  const pending = answering.get(msg.call);
  if (pending) pending.over = true; // answerCall is waiting for the microphone
  rememberEnded(msg.call); // a late "call" after its end must not ring
  const reason = typeof msg.reason === "string" ? msg.reason : "ended";
  const by = typeof msg.by === "string" && msg.by ? msg.by : null;
  const wasRinging = app.ringing.has(msg.call);
  endRing(msg.call);
  const s = app.sessions.get(device);
  const mine = Boolean(s) && (s.call === msg.call || app.answered.has(msg.call));
  const name = deviceName(device);
  if (reason === "answered") {
    if (mine && by && by !== app.signin.viewer) {
      toast(`${name}: ${by} answered first.`, "warn");
      s.hangUp(); // keep watching, without the microphone
    } else if (!mine && wasRinging) {
      toast(`${name}: answered by ${by === app.signin.viewer ? "you in another window" : by || "someone else"}.`);
    }
  } else if (reason === "missed") {
    toast(`${name}: missed call.`, "warn", 10000);
  } else if (reason === "declined") {
    if (wasRinging || mine) toast(`${name}: call declined${by ? ` by ${by === app.signin.viewer ? "you" : by}` : ""}.`);
  } else if (wasRinging || mine) {
    toast(`${name}: call ${CALL_ENDED_TEXT[reason] || "ended"}.`);
  }
  if (mine && reason !== "answered") s.hangUp();
  if (reason !== "answered") app.answered.delete(msg.call);
}

/** Calls that must not ring again (a late or repeated `call` event); the last 100. */
function rememberEnded(call) {
  app.ended.add(call);
  while (app.ended.size > 100) app.ended.delete(app.ended.values().next().value);
}

function endRing(call) {
  const ring = app.ringing.get(call);
  if (!ring) return;
  clearTimeout(ring.timer);
  app.ringing.delete(call);
  rememberEnded(call);
  const stillRinging = [...app.ringing.values()].some((r) => r.device === ring.device);
  if (!stillRinging) app.sessions.get(ring.device)?.want("ring", false);
  if (app.dialogCall === call) {
    const next = [...app.ringing.keys()].pop();
    if (next) showRingDialog(next);
    else closeRingDialog();
  }
  if (app.ringing.size === 0) app.ringer.stop();
  renderAll();
}

function showRingDialog(call) {
  const ring = app.ringing.get(call);
  if (!ring) return;
  const dialog = $("ring-dialog");
  const previous = app.dialogCall ? app.ringing.get(app.dialogCall) : null;
  if (previous && previous.device !== ring.device) app.sessions.get(previous.device)?.detach($("ring-video"));
  app.dialogCall = call;
  const s = sessionFor(ring.device);
  s.attach($("ring-video"));
  $("ring-title").textContent = `${deviceName(ring.device)} is ringing`;
  $("ring-text").textContent = `Pressed at ${formatTime(ring.at)}.`;
  $("ring-sound").hidden = app.ringer.audible;
  renderRingMedia();
  if (!dialog.open) dialog.showModal();
  $("ring-answer").focus();
}

function closeRingDialog() {
  const dialog = $("ring-dialog");
  const ring = app.dialogCall ? app.ringing.get(app.dialogCall) : null;
  const device = ring?.device;
  app.dialogCall = null;
  if (device) app.sessions.get(device)?.detach($("ring-video"));
  else for (const s of app.sessions.values()) s.detach($("ring-video"));
  if (dialog.open) dialog.close();
}

function renderRingMedia() {
  const ring = app.dialogCall ? app.ringing.get(app.dialogCall) : null;
  if (!ring) return;
  const s = app.sessions.get(ring.device);
  const live = s && s.state === "live";
  const snap = app.snapshots.get(`${ring.device}/${ring.call}`);
  $("ring-video").hidden = !live && Boolean(snap?.url);
  $("ring-snapshot").hidden = live || !snap?.url;
  if (snap?.url && $("ring-snapshot").src !== snap.url) $("ring-snapshot").src = snap.url;
}

/** Calls being answered while the browser asks for the microphone: call -> {over}. */
const answering = new Map();

async function answerCall(call) {
  const ring = app.ringing.get(call);
  if (!ring) return;
  const device = ring.device;
  // Sound plays only after a gesture (iOS): unmute the large view inside the click.
  const video = $("dv-video");
  video.muted = false;
  video.play().catch(() => {});
  app.ringer.stop();
  endRing(call);
  const session = sessionFor(device);
  app.answered.add(call); // so that call-ended "answered" is recognised as ours
  micWanted = true;
  go(`#/device/${device}`);
  const pending = { over: false };
  answering.set(call, pending);
  let mic;
  try {
    mic = await openMicrophone();
  } finally {
    answering.delete(call);
  }
  const { track, problem } = mic;
  if (pending.over) {
    // It ended (missed, declined, answered elsewhere) while the browser asked for the
    // microphone. The device says "answered" for our own answer only once we are
    // connected, so any call-ended now means there is nothing left to answer.
    if (track) track.stop();
    app.answered.delete(call);
    renderAll();
    return;
  }
  if (problem) toast(`Answering without talkback: ${problem}.`, "warn", 10000);
  session.answer(call, track);
  renderAll();
}

function declineCall(call) {
  const ring = app.ringing.get(call);
  if (!ring) return;
  sendAction(ring.device, { type: "decline", call });
  endRing(call);
}

/** decline / reply / open: through the device link when open, else the main link. */
function sendAction(device, message) {
  app.lastAction.set(device, performance.now());
  const link = app.links.get(device)?.link;
  const via = link && link.connected ? link : app.main;
  if (!via) return;
  via.publish(inTopic(device), { v: PROTOCOL_VERSION, ...message }).catch((err) => {
    const why = err && (err.code === 135 || err.code === 5) ? "not authorised by the broker" : err?.message || String(err);
    toast(`${deviceName(device)}: could not send ${message.type}: ${why}.`, "error", 10000);
  });
}

function onCalls(device, msg) {
  if (msg.type !== "calls" || !Array.isArray(msg.calls)) return;
  const d = ensureDevice(device);
  d.calls = msg.calls
    .filter((c) => c && typeof c === "object" && typeof c.call === "string" && CALL_RE.test(c.call))
    .slice(0, MAX_CALLS_SHOWN)
    .map(cleanCall);
  for (const c of d.calls) if (c.snapshot === true) requestSnapshot(device, c.call);
  pruneSnapshots();
  renderAll();
}

function requestSnapshot(device, call) {
  const key = `${device}/${call}`;
  if (app.snapshots.has(key) || !app.main) return;
  app.snapshots.set(key, { url: null, state: "pending" });
  app.main.subscribe(`${app.prefix}/${device}/snapshot/${call}`).catch(() => {});
}

function onSnapshot(device, call, payload) {
  const key = `${device}/${call}`;
  const snap = app.snapshots.get(key) || { url: null, state: "pending" };
  if (snap.url) URL.revokeObjectURL(snap.url);
  if (payload.length > 0) {
    snap.url = URL.createObjectURL(new Blob([payload], { type: "image/jpeg" }));
    snap.state = "done";
    app.main.unsubscribe(`${app.prefix}/${device}/snapshot/${call}`);
  } else {
    snap.url = null;
    snap.state = "none";
  }
  app.snapshots.set(key, snap);
  renderAll();
}

function pruneSnapshots() {
  const keep = new Set();
  for (const d of app.devices.values()) for (const c of d.calls) keep.add(`${d.id}/${c.call}`);
  for (const r of app.ringing.values()) keep.add(`${r.device}/${r.call}`);
  for (const [key, snap] of app.snapshots) {
    if (keep.has(key)) continue;
    if (snap.url) URL.revokeObjectURL(snap.url);
    if (snap.state === "pending" && app.main) app.main.unsubscribe(`${app.prefix}/${key.replace("/", "/snapshot/")}`);
    app.snapshots.delete(key);
  }
}

// --- rendering ------------------------------------------------------------------------

function sortedDevices() {
  return [...app.devices.values()]
    .filter((d) => d.status)
    .sort((a, b) => deviceName(a.id).localeCompare(deviceName(b.id)) || a.id.localeCompare(b.id))
    .map((d) => d.id);
}

function createCard(d) {
  const card = $("card-template").content.firstElementChild.cloneNode(true);
  card.dataset.device = d.id;
  card.querySelector(".card-link").href = `#/device/${d.id}`;
  d.card = card;
  sessionFor(d.id).attach(card.querySelector("video"));
  app.observer?.observe(card);
  return card;
}

function statusWords(status) {
  if (!status) return { badge: "unknown", text: "waiting" };
  return status.state === "online" ? { badge: "online", text: "online" } : { badge: "offline", text: "offline" };
}

function viewersText(status) {
  if (!status || status.state !== "online") return "";
  if (Number.isInteger(status.viewers) && Number.isInteger(status.max_viewers)) {
    return `${status.viewers}/${status.max_viewers} watching`;
  }
  return "";
}

function overlayText(session, status) {
  if (!status) return "Waiting for the device…";
  if (status.state !== "online") return "Offline";
  if (!session || session.state === "idle") return app.liveTiles ? "" : "Live tiles are off";
  if (session.state === "live") return "";
  return session.message || "Connecting…";
}

function renderDevices() {
  const grid = $("device-grid");
  const ids = sortedDevices();
  const cards = ids.map((id) => app.devices.get(id).card);
  // Keep DOM order = sorted order without recreating nodes (videos keep playing).
  cards.forEach((card, i) => {
    if (grid.children[i] !== card) grid.insertBefore(card, grid.children[i] || null);
  });
  for (const child of [...grid.children]) if (!cards.includes(child)) child.remove();
  for (const id of ids) {
    try {
      renderCard(app.devices.get(id));
    } catch (err) {
      // One device's odd data must not stop every other card from updating.
      console.warn(`peercam: could not show device ${id}: ${err}`);
    }
  }
  const empty = $("devices-empty");
  if (ids.length === 0 && app.main) {
    empty.hidden = false;
    const waited = performance.now() - app.signedInAt >= NO_DEVICE_HINT_MS;
    empty.textContent = waited
      ? `No device is visible to viewer "${app.signin.viewer}" under "${app.prefix}/". Either no device has been online yet, or this viewer was granted none (the broker's access list decides which devices you see).`
      : "Looking for devices…";
  } else {
    empty.hidden = true;
  }
  renderMissedCalls();
}

function renderCard(d) {
  const card = d.card;
  const status = d.status;
  const s = app.sessions.get(d.id);
  const words = statusWords(status);
  const ringing = [...app.ringing.values()].some((r) => r.device === d.id);
  card.dataset.online = String(status?.state === "online");
  card.dataset.state = s ? s.state : "idle";
  card.dataset.ringing = String(ringing);
  card.querySelector(".card-name").textContent = deviceName(d.id);
  const badge = card.querySelector(".badge");
  badge.className = `badge badge-${words.badge}`;
  badge.textContent = words.text;
  const meta = [viewersText(status)];
  const missed = d.calls.filter((c) => c.reason === "missed").length;
  if (missed) meta.push(`${missed} missed call${missed > 1 ? "s" : ""}`);
  if (status?.state === "online" && typeof status.call === "string" && !ringing) meta.push("call in progress");
  if (Array.isArray(status?.faults) && status.faults.length) meta.push(status.faults.join("; "));
  card.querySelector(".card-meta").textContent = meta.filter(Boolean).join(" · ");
  card.querySelector(".ring-flag").hidden = !ringing;
  const live = s && s.state === "live";
  const still = card.querySelector(".thumb-still");
  const showStill = !live && Boolean(d.still);
  still.hidden = !showStill;
  if (showStill && still.getAttribute("src") !== d.still) still.src = d.still;
  card.querySelector(".thumb-overlay").textContent = overlayText(s, status);
  card.querySelector(".card-link").setAttribute(
    "aria-label",
    `${deviceName(d.id)}: ${words.text}${viewersText(status) ? `, ${viewersText(status)}` : ""}${ringing ? ", ringing" : ""}. Open the large view.`,
  );
}

function callItem(device, c, { withDevice }) {
  const snap = app.snapshots.get(`${device}/${c.call}`);
  const reason = typeof c.reason === "string" ? c.reason : "";
  const pic = snap?.url
    ? el("img", { class: "call-pic", src: snap.url, alt: `Picture of the call at ${formatTime(c.at)}` })
    : el("span", { class: "call-pic call-pic-none", text: c.snapshot ? "…" : "no picture" });
  let label = CALL_ENDED_TEXT[reason] || reason || (c.reason === null ? "ringing" : "call");
  if (c.by && reason !== "missed") label += ` by ${c.by}`;
  const info = el(
    "span",
    { class: "call-info" },
    withDevice ? el("a", { href: `#/device/${device}`, class: "call-device", text: deviceName(device) }) : null,
    el("time", { datetime: Number.isFinite(c.at) ? new Date(c.at * 1000).toISOString() : "", text: formatTime(c.at) }),
    el("span", { class: `call-reason reason-${reason}`, text: label }),
  );
  return el("li", { class: "call-item", "data-call": c.call, "data-reason": reason }, pic, info);
}

function renderMissedCalls() {
  const missed = [];
  for (const d of app.devices.values()) for (const c of d.calls) if (c.reason === "missed") missed.push([d.id, c]);
  missed.sort((a, b) => (b[1].at || 0) - (a[1].at || 0));
  const shown = missed.slice(0, MAX_MISSED_SHOWN);
  const key = JSON.stringify(shown.map(([id, c]) => [id, c, deviceName(id), app.snapshots.get(`${id}/${c.call}`)?.url]));
  setChildren($("recent-calls-list"), key, () => shown.map(([id, c]) => callItem(id, c, { withDevice: true })));
  $("recent-calls").hidden = missed.length === 0;
}

function renderDeviceView() {
  const id = app.route.device;
  if (!id) return;
  const d = app.devices.get(id);
  const status = d?.status || null;
  push.render(id, status);
  const s = app.sessions.get(id);
  const words = statusWords(status);
  $("device-heading").textContent = deviceName(id);
  const badge = $("dv-badge");
  badge.className = `badge badge-${words.badge}`;
  badge.textContent = words.text;
  $("dv-viewers").textContent = viewersText(status);
  const stage = $("dv-stage");
  stage.dataset.state = s ? s.state : "idle";
  $("dv-overlay").textContent = s && s.state === "live" ? "" : overlayText(s, status) || "Connecting…";
  const stats = $("dv-stats");
  stats.hidden = $("dv-stats-toggle").getAttribute("aria-pressed") !== "true" || !s || !s.running;
  if (s && s.running) stats.textContent = statsLines(s.stats).join("\n");
  const hasAudio = Boolean(status?.audio) || Boolean(s?.call);
  $("dv-sound").hidden = !hasAudio;
  const inCall = Boolean(s && s.call !== null);
  $("dv-call-banner").hidden = !inCall;
  if (inCall) $("dv-call-banner").textContent = s.mic ? (s.mic.enabled ? "In call · microphone on" : "In call · microphone off") : "In call · no microphone";
  $("dv-call-controls").hidden = !inCall;
  $("dv-mic").hidden = !s?.mic;
  $("dv-ptt").hidden = !s?.mic;
  $("dv-ptt-help").hidden = !s?.mic;
  if (s?.mic) {
    $("dv-mic").setAttribute("aria-pressed", String(micWanted));
    $("dv-mic").textContent = micWanted ? "Microphone on" : "Microphone off";
  }
  const ring = [...app.ringing.values()].find((r) => r.device === id);
  $("dv-ring-controls").hidden = !ring || inCall;
  // Door and quick replies (fields of status the device may add).
  const replies = Array.isArray(status?.replies) ? status.replies.filter((r) => r && typeof r.id === "string" && typeof r.text === "string") : [];
  const door = status?.door === true;
  $("dv-actions").hidden = !(door || replies.length) || status?.state !== "online";
  $("dv-open").hidden = !door;
  setChildren($("dv-replies"), JSON.stringify([id, replies]), () =>
    replies.map((r) => {
      const b = el("button", { type: "button", class: "secondary", "data-reply": r.id, text: `Reply: “${r.text}”` });
      b.addEventListener("click", () => {
        sendAction(id, { type: "reply", reply: r.id });
        toast(`${deviceName(id)}: playing “${r.text}”.`);
      });
      return b;
    }),
  );
  const message = $("dv-message");
  let text = s && (s.state === "error" || s.state === "ended") && s.message ? s.message : "";
  if (!status && performance.now() - app.signedInAt >= NO_DEVICE_HINT_MS) {
    text = `No status from "${id}": it has never been online under "${app.prefix}/", or viewer "${app.signin.viewer}" is not allowed to see it (the broker's access list decides).`;
  }
  message.hidden = !text;
  message.textContent = text;
  const calls = d?.calls || [];
  $("dv-calls-empty").hidden = calls.length > 0;
  const callsKey = JSON.stringify([id, calls, calls.map((c) => app.snapshots.get(`${id}/${c.call}`)?.url)]);
  setChildren($("dv-calls"), callsKey, () => calls.map((c) => callItem(id, c, { withDevice: false })));
  $("d-device").textContent = id;
  $("d-session").textContent = s?.id || "–";
  $("d-state").textContent = s ? `${s.state}${s.firstFrameMs !== null ? ` (first frame after ${s.firstFrameMs} ms)` : ""}` : "–";
  $("d-version").textContent = typeof status?.version === "string" ? status.version : "–";
}

function renderAll() {
  if (!app.main) return;
  renderDevices();
  if (app.route.view === "device") renderDeviceView();
  renderRingMedia();
  const ringingNames = [...new Set([...app.ringing.values()].map((r) => deviceName(r.device)))];
  document.title = ringingNames.length ? `🔔 ${ringingNames.join(", ")} ringing · peercam` : "peercam";
  $("sound-hint").hidden = !(app.ringing.size && !app.ringer.audible);
  updateBodyState();
}

// --- tiles on screen --------------------------------------------------------------------

function updateTileWants() {
  for (const d of app.devices.values()) {
    const show = app.liveTiles && app.route.view === "devices" && d.visible;
    if (d.card) sessionFor(d.id).want("tile", show);
  }
}

function setupObserver() {
  if (!("IntersectionObserver" in window)) return;
  app.observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        const d = app.devices.get(entry.target.dataset.device);
        if (d) d.visible = entry.isIntersecting;
      }
      updateTileWants();
    },
    { threshold: 0.1 },
  );
}

// --- controls ---------------------------------------------------------------------------

let micWanted = true;

function currentSession() {
  return app.route.view === "device" && app.route.device ? app.sessions.get(app.route.device) || null : null;
}

function toggleSound() {
  const video = $("dv-video");
  video.muted = !video.muted;
  if (!video.muted) video.play().catch(() => {});
  $("dv-sound").setAttribute("aria-pressed", String(!video.muted));
  $("dv-sound").textContent = video.muted ? "Sound on" : "Sound off";
}

async function snapshot() {
  const id = app.route.device;
  try {
    const name = await savePng($("dv-video"), `peercam-${id}`);
    toast(`Saved ${name}.`, "ok");
  } catch (err) {
    toast(`No snapshot: ${err.message}.`, "error");
  }
}

function toggleStats() {
  const b = $("dv-stats-toggle");
  b.setAttribute("aria-pressed", String(b.getAttribute("aria-pressed") !== "true"));
  renderDeviceView();
}

function setMic(on) {
  micWanted = on;
  currentSession()?.setMicEnabled(on);
  renderDeviceView();
}

function pushToTalk(on) {
  const s = currentSession();
  if (!s || !s.mic) return;
  s.setMicEnabled(on || micWanted);
  $("dv-ptt").setAttribute("aria-pressed", String(on));
  renderDeviceView();
}

async function ringDemo() {
  try {
    const response = await fetch(app.settings.ringUrl, { method: "POST" });
    if (!response.ok) toast(`The demo could not ring: HTTP ${response.status}.`, "error");
  } catch (err) {
    toast(`The demo could not ring: ${err.message}.`, "error");
  }
}

function setupControls() {
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn(formSignin());
  });
  $("f-broker").addEventListener("input", checkBrokerField);
  $("signout").addEventListener("click", () => signOut());
  $("demo-ring").addEventListener("click", ringDemo);
  $("live-tiles").addEventListener("change", (ev) => {
    app.liveTiles = ev.target.checked;
    try {
      localStorage.setItem("peercam.liveTiles", app.liveTiles ? "1" : "0");
    } catch {
      // not kept
    }
    updateTileWants();
    renderAll();
  });
  $("dv-sound").addEventListener("click", toggleSound);
  $("dv-fullscreen").addEventListener("click", () => toggleFullscreen($("dv-stage"), $("dv-video")));
  $("dv-snapshot").addEventListener("click", snapshot);
  $("dv-stats-toggle").addEventListener("click", toggleStats);
  $("dv-reconnect").addEventListener("click", () => currentSession()?.reconnect());
  $("dv-answer").addEventListener("click", () => {
    const ring = [...app.ringing.values()].find((r) => r.device === app.route.device);
    if (ring) answerCall(ring.call);
  });
  $("dv-decline").addEventListener("click", () => {
    const ring = [...app.ringing.values()].find((r) => r.device === app.route.device);
    if (ring) declineCall(ring.call);
  });
  $("dv-mic").addEventListener("click", () => setMic(!micWanted));
  const ptt = $("dv-ptt");
  ptt.addEventListener("pointerdown", (ev) => {
    try {
      ptt.setPointerCapture(ev.pointerId); // keep talking while the finger slides off
    } catch {
      // synthetic events have no pointer to capture
    }
    pushToTalk(true);
  });
  for (const type of ["pointerup", "pointercancel", "blur"]) ptt.addEventListener(type, () => pushToTalk(false));
  ptt.addEventListener("keydown", (ev) => {
    if ((ev.key === " " || ev.key === "Enter") && !ev.repeat) {
      ev.preventDefault();
      pushToTalk(true);
    }
  });
  ptt.addEventListener("keyup", (ev) => {
    if (ev.key === " " || ev.key === "Enter") pushToTalk(false);
  });
  $("dv-hangup").addEventListener("click", () => {
    currentSession()?.hangUp();
    micWanted = true;
    toast("Call ended.");
  });
  $("dv-open").addEventListener("click", () => {
    const id = app.route.device;
    if (id) sendAction(id, { type: "open" });
  });
  $("ring-answer").addEventListener("click", () => app.dialogCall && answerCall(app.dialogCall));
  $("ring-decline").addEventListener("click", () => app.dialogCall && declineCall(app.dialogCall));
  $("ring-dismiss").addEventListener("click", dismissRing);
  $("ring-dialog").addEventListener("cancel", (ev) => {
    ev.preventDefault(); // Esc silences, the call keeps ringing on the device's card
    dismissRing();
  });
  $("sound-enable").addEventListener("click", () => {
    app.ringer.unlock();
    setTimeout(renderAll, 100);
  });
  // Any gesture unlocks sound for later rings (browsers' autoplay rule).
  for (const type of ["pointerdown", "keydown"]) {
    document.addEventListener(
      type,
      () => {
        app.ringer.unlock();
        if (!$("ring-sound").hidden) setTimeout(() => ($("ring-sound").hidden = app.ringer.audible), 100);
      },
      { capture: true },
    );
  }
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", (ev) => {
    if ((ev.key === "t" || ev.key === "T") && app.route.view === "device") pushToTalk(false);
  });
}

function dismissRing() {
  app.ringer.stop();
  closeRingDialog();
  renderAll();
}

function onKey(ev) {
  if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const tag = ev.target?.tagName;
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || $("ring-dialog").open) return;
  if (app.route.view !== "device" || document.body.dataset.view !== "device") return;
  switch (ev.key) {
    case "f":
    case "F":
      toggleFullscreen($("dv-stage"), $("dv-video"));
      break;
    case "m":
    case "M":
      if (!$("dv-sound").hidden) toggleSound();
      break;
    case "s":
    case "S":
      snapshot();
      break;
    case "i":
    case "I":
      toggleStats();
      break;
    case "t":
    case "T":
      if (!ev.repeat) pushToTalk(true);
      break;
    case "Escape":
      if (!document.fullscreenElement) go("#/");
      break;
    default:
      return;
  }
  ev.preventDefault();
}

// --- page lifecycle -------------------------------------------------------------------------

window.addEventListener("hashchange", applyRoute);
window.addEventListener("pagehide", leaveAll);
window.addEventListener("pageshow", (ev) => {
  // Back from the back/forward cache: sessions and connections are gone; start over.
  if (ev.persisted) location.reload();
});
document.addEventListener("visibilitychange", () => {
  for (const s of app.sessions.values()) s.evaluate();
});

// --- what tests (and curious users) can read ---------------------------------------------------

const EMPTY_STATS = Object.freeze({ framesDecoded: 0, width: 0, height: 0, fps: 0, bitrateKbps: 0, rttMs: null, latencyMs: null, path: null });

window.peercam = {
  get view() {
    return document.body.dataset.view;
  },
  get state() {
    return document.body.dataset.state;
  },
  /** Stats of the session in the large view, or of the first tile. */
  get stats() {
    return primarySession()?.stats || EMPTY_STATS;
  },
  get session() {
    return primarySession()?.id || null;
  },
  /** The status of the device in the large view (or named by `device`), else null. */
  get device() {
    const id = app.route.view === "device" ? app.route.device : app.settings?.device;
    return (id && app.devices.get(id)?.status) || null;
  },
  get broker() {
    return app.main ? app.main.state : "signed-out";
  },
  get viewer() {
    return app.signin?.viewer || null;
  },
  get mqttVersion() {
    return app.main ? app.mqttVersion : null;
  },
  get config() {
    return app.settings;
  },
  /** {device: {state, session, stats, firstFrameMs, call, talkback, message, mic}} */
  get sessions() {
    const out = {};
    for (const [id, s] of app.sessions) {
      out[id] = { state: s.state, session: s.id, stats: { ...s.stats }, firstFrameMs: s.firstFrameMs, timeline: { ...s.timeline }, call: s.call, talkback: s.talkback, message: s.message, mic: Boolean(s.mic), reasons: [...s.reasons] };
    }
    return out;
  },
  get devices() {
    const out = {};
    for (const [id, d] of app.devices) out[id] = d.status;
    return out;
  },
  get calls() {
    const out = {};
    for (const [id, d] of app.devices) out[id] = d.calls;
    return out;
  },
  get ringing() {
    return [...app.ringing.values()].map((r) => ({ device: r.device, call: r.call }));
  },
  get links() {
    return [...app.links.entries()].map(([device, e]) => ({ device, state: e.link.state }));
  },
  reconnect(device) {
    (device ? app.sessions.get(device) : primarySession())?.reconnect();
  },
};

// --- Web Push (push.js) -------------------------------------------------------------------

/** A notification's Answer: ring here if this page has not heard the call, then answer. */
function answerFromNotification(device, call) {
  if (!app.signin) return false;
  if (!app.ringing.has(call)) {
    const status = app.devices.get(device)?.status;
    if (!status || status.state !== "online" || status.call !== call) return false;
    onRing(device, { call, at: Date.now() / 1000, expires_in: 30 }); // the device keeps the real deadline
  }
  answerCall(call);
  return true;
}

const push = new PushPanel({
  send: (device, message) => sendAction(device, message),
  toast,
  deviceName,
  status: (device) => app.devices.get(device)?.status || null,
  answer: answerFromNotification,
  changed: () => renderAll(),
});

// --- start ------------------------------------------------------------------------------

async function main() {
  if (!window.mqtt || typeof window.mqtt.connect !== "function") {
    showView("signin");
    showSigninMessage("vendor/mqtt.min.js did not load; the page cannot reach a broker.");
    return;
  }
  try {
    app.liveTiles = localStorage.getItem("peercam.liveTiles") !== "0";
  } catch {
    app.liveTiles = true;
  }
  $("live-tiles").checked = app.liveTiles;
  push.start();
  setupObserver();
  setupControls();
  const fileConfig = await loadPageConfig();
  app.settings = resolveSettings(fileConfig);
  fillForm(app.settings.signin);
  if (app.settings.auto && signinProblems(app.settings.signin).length === 0) {
    await signIn(app.settings.signin);
  } else {
    showView("signin");
    (app.settings.signin.broker_url ? (app.settings.signin.viewer ? $("f-password") : $("f-viewer")) : $("f-broker")).focus();
  }
}

main();
