// Sessions and tiles on screen: one DeviceSession per device (created on first want),
// the per-device MQTT links they use, the page state they report (`body[data-state]`),
// and which tiles want live video (visible, live tiles on, devices view shown).

import { Link } from "./link.js";
import { stillOf } from "./media-util.js";
import { renderAll, sortedDevices } from "./render.js";
import { DeviceSession } from "./session.js";
import { PROTOCOL_VERSION } from "./settings.js";
import { app } from "./state.js";
import { inTopic } from "./ui.js";

const LINK_LINGER_MS = 15000; // a device link with no session is closed after this
const STILL_EVERY_MS = 10000; // tiles keep a recent still for when they are not live

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

export function sessionFor(device) {
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

export function primarySession() {
  if (app.route.view === "device" && app.route.device) return app.sessions.get(app.route.device) || null;
  for (const id of sortedDevices()) {
    const s = app.sessions.get(id);
    if (s && s.reasons.size) return s;
  }
  return null;
}

export function updateBodyState() {
  const view = document.body.dataset.view;
  let state;
  if (view === "signin" || view === "loading") state = "signin";
  else {
    const s = primarySession();
    state = s ? s.state : "idle";
  }
  document.body.dataset.state = state;
}

// --- tiles on screen --------------------------------------------------------------------

export function updateTileWants() {
  for (const d of app.devices.values()) {
    const show = app.liveTiles && app.route.view === "devices" && d.visible;
    if (d.card) sessionFor(d.id).want("tile", show);
  }
}

export function setupObserver() {
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
