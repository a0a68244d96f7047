// Controls: the page's buttons, form and keyboard shortcuts, and what they do in the
// large view (sound, snapshot, stats, microphone, push-to-talk, the demo's ring).

import { answerCall, closeRingDialog, declineCall, sendAction } from "./calls.js";
import { savePng, toggleFullscreen } from "./media-util.js";
import { renderAll, renderDeviceView } from "./render.js";
import { checkBrokerField, formSignin, signIn, signOut } from "./signin.js";
import { app } from "./state.js";
import { updateTileWants } from "./tiles.js";
import { $, toast } from "./ui.js";
import { go } from "./views.js";

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
  app.micWanted = on;
  currentSession()?.setMicEnabled(on);
  renderDeviceView();
}

function pushToTalk(on) {
  const s = currentSession();
  if (!s || !s.mic) return;
  s.setMicEnabled(on || app.micWanted);
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

export function setupControls() {
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
  $("dv-quality").addEventListener("change", (ev) => {
    currentSession()?.setQuality(ev.target.value);
    renderDeviceView();
  });
  $("dv-reconnect").addEventListener("click", () => currentSession()?.reconnect());
  $("dv-answer").addEventListener("click", () => {
    const ring = [...app.ringing.values()].find((r) => r.device === app.route.device);
    if (ring) answerCall(ring.call);
  });
  $("dv-decline").addEventListener("click", () => {
    const ring = [...app.ringing.values()].find((r) => r.device === app.route.device);
    if (ring) declineCall(ring.call);
  });
  $("dv-mic").addEventListener("click", () => setMic(!app.micWanted));
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
    app.micWanted = true;
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
