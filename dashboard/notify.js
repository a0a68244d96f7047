// Wires push.js into the page: the one PushPanel, and answering a call that a
// notification's Answer button asked for (the page may not have heard that call ring).

import { answerCall, onRing, sendAction } from "./calls.js";
import { PushPanel } from "./push.js";
import { renderAll } from "./render.js";
import { app } from "./state.js";
import { deviceName, toast } from "./ui.js";

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

export const push = new PushPanel({
  send: (device, message) => sendAction(device, message),
  toast,
  deviceName,
  status: (device) => app.devices.get(device)?.status || null,
  answer: answerFromNotification,
  changed: () => renderAll(),
});
