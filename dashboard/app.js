// peercam dashboard: sign in to an MQTT broker, list devices from their retained
// status, watch them live over WebRTC, answer their calls (PROTOCOL.md v1).
//
// Plain ES modules, no build step. mqtt.js is loaded before this file as a classic
// script (vendor/mqtt.min.js) and provides the global `mqtt`. Tests read
// `window.peercam`, `body[data-view]` and `body[data-state]`.
//
// This file is the entry point: it wires the page's modules together and starts.
// The shared state (`app`) lives in state.js; docs/dashboard.md has the module map.

import { setupControls } from "./controls.js";
import { setupHistory } from "./history.js";
import { watchPageLifecycle } from "./lifecycle.js";
import { push } from "./notify.js";
import { loadPageConfig, resolveSettings, signinProblems } from "./settings.js";
import { fillForm, showSigninMessage, signIn } from "./signin.js";
import { app } from "./state.js";
import { exposeForTests } from "./testhooks.js";
import { setupObserver } from "./tiles.js";
import { $ } from "./ui.js";
import { showView } from "./views.js";

watchPageLifecycle();
exposeForTests();

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
  setupHistory();
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
