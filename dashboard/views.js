// Views and routing: which view shows (sign-in, devices, one device), from the URL
// hash (`#/`, `#/device/{id}`).

import { renderHistory } from "./history.js";
import { renderAll, renderDeviceView } from "./render.js";
import { ID_RE } from "./settings.js";
import { app } from "./state.js";
import { sessionFor, updateBodyState, updateTileWants } from "./tiles.js";
import { $ } from "./ui.js";

export function showView(view) {
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

export function applyRoute() {
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
  renderHistory();
}

export function go(hash) {
  if (location.hash === hash) applyRoute();
  else location.hash = hash;
}
