// Messages from the broker on the main link: retained statuses (a device appears,
// changes, is removed), and what is addressed to this viewer. Data from the broker is
// checked before use; calls and snapshots go on to calls.js.

import { endRing, onCalls, onEvent, onSnapshot } from "./calls.js";
import { onClips, onPlaybackMessage, onThumb } from "./history.js";
import { push } from "./notify.js";
import { createCard, renderAll } from "./render.js";
import { ID_RE, PROTOCOL_VERSION } from "./settings.js";
import { app } from "./state.js";
import { deviceName, toast } from "./ui.js";

const ACTION_ERROR_WINDOW_MS = 10000; // an error without session this soon after an action is about it

function parseJson(payload) {
  try {
    const msg = JSON.parse(new TextDecoder().decode(payload));
    return msg && typeof msg === "object" && !Array.isArray(msg) ? msg : null;
  } catch {
    return null;
  }
}

export function onMainMessage(topic, payload) {
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
  if (kind === "thumb" && parts.length === 3) {
    onThumb(device, parts[2], payload);
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
  else if (kind === "clips" && parts.length === 2) onClips(device, msg);
  else if (kind === "out" && parts.length === 3 && parts[2] === app.signin.viewer) onOut(device, msg);
}

export function ensureDevice(id) {
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

export function cleanCall(c) {
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
  if (onPlaybackMessage(device, msg)) return;
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
