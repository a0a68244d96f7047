// The page's shared state: one `app` object every dashboard module reads and
// changes, and the few constants more than one of them needs.
//
// A module of its own (not app.js) so that it has no imports of ours: whichever
// module loads first finds `app` ready, whatever the import cycles between the others.

import { Ringer } from "./media-util.js";

export const NO_DEVICE_HINT_MS = 4000; // no status this long after sign-in: explain why
export const CALL_ENDED_TEXT = {
  answered: "answered",
  missed: "missed",
  declined: "declined",
  cancelled: "cancelled",
};

export const app = {
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
  micWanted: true, // the large view's microphone switch during a call
  observer: null,
  noDeviceTimer: null,
  signedInAt: 0,
  answered: new Set(), // calls answered in this tab
  ended: new Set(), // calls that stopped ringing here (a redelivered "call" must not ring again)
  ringer: new Ringer(),
  signingIn: false,
};
