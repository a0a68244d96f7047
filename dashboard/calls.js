// Calls: ringing (dialog, tone, expiry), answering with the microphone, declining,
// replies and the door (sendAction), call logs and their snapshots.

import { openMicrophone } from "./media-util.js";
import { cleanCall, ensureDevice } from "./messages.js";
import { renderAll } from "./render.js";
import { CALL_RE, PROTOCOL_VERSION } from "./settings.js";
import { CALL_ENDED_TEXT, app } from "./state.js";
import { sessionFor } from "./tiles.js";
import { $, deviceName, formatTime, inTopic, toast } from "./ui.js";
import { go } from "./views.js";

const MAX_CALLS_SHOWN = 20;

export function onEvent(device, msg) {
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

export function onRing(device, msg) {
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

export function endRing(call) {
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

export function closeRingDialog() {
  const dialog = $("ring-dialog");
  const ring = app.dialogCall ? app.ringing.get(app.dialogCall) : null;
  const device = ring?.device;
  app.dialogCall = null;
  if (device) app.sessions.get(device)?.detach($("ring-video"));
  else for (const s of app.sessions.values()) s.detach($("ring-video"));
  if (dialog.open) dialog.close();
}

export function renderRingMedia() {
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

export async function answerCall(call) {
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
  app.micWanted = true;
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

export function declineCall(call) {
  const ring = app.ringing.get(call);
  if (!ring) return;
  sendAction(ring.device, { type: "decline", call });
  endRing(call);
}

/** decline / reply / open: through the device link when open, else the main link. */
export function sendAction(device, message) {
  app.lastAction.set(device, performance.now());
  const link = app.links.get(device)?.link;
  const via = link && link.connected ? link : app.main;
  if (!via) return;
  via.publish(inTopic(device), { v: PROTOCOL_VERSION, ...message }).catch((err) => {
    const why = err && (err.code === 135 || err.code === 5) ? "not authorised by the broker" : err?.message || String(err);
    toast(`${deviceName(device)}: could not send ${message.type}: ${why}.`, "error", 10000);
  });
}

export function onCalls(device, msg) {
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

export function onSnapshot(device, call, payload) {
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
