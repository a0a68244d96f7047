// Page lifecycle: the hash route, leaving cleanly when the page goes, back/forward cache,
// sessions that follow the tab's visibility.

import { leaveAll } from "./signin.js";
import { app } from "./state.js";
import { applyRoute } from "./views.js";

/** Routing on hash changes, goodbyes when the page goes, sessions that follow the tab's visibility. */
export function watchPageLifecycle() {
  window.addEventListener("hashchange", applyRoute);
  window.addEventListener("pagehide", leaveAll);
  window.addEventListener("pageshow", (ev) => {
    // Back from the back/forward cache: sessions and connections are gone; start over.
    if (ev.persisted) location.reload();
  });
  document.addEventListener("visibilitychange", () => {
    for (const s of app.sessions.values()) s.evaluate();
  });
}
