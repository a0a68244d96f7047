// What tests (and curious users) can read: `window.peercam`, read-only views of the
// page's state, and `reconnect(device)`. docs/dashboard.md lists the fields.

import { historyForTests } from "./history.js";
import { app } from "./state.js";
import { primarySession } from "./tiles.js";

const EMPTY_STATS = Object.freeze({ framesDecoded: 0, width: 0, height: 0, fps: 0, bitrateKbps: 0, rttMs: null, latencyMs: null, path: null });

/** `window.peercam`: read-only views of the page's state, and `reconnect(device)`. */
export function exposeForTests() {
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
    /** Event history: {clips: {device: [clip]}, playback: {...} | null} (v1.1). */
    get history() {
      return historyForTests();
    },
    reconnect(device) {
      (device ? app.sessions.get(device) : primarySession())?.reconnect();
    },
  };
}
