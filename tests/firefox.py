"""Debian's Firefox ESR, headless, driven through Marionette (PyPI ``marionette-driver``).

Playwright cannot drive a stock Firefox (it needs its own patched build,
which cannot be downloaded here), so tests talk Marionette, Mozilla's own
remote protocol, without geckodriver.  The profile keeps Firefox local and
quiet: no updates, no telemetry, no plugin (OpenH264) downloads, no
captive-portal or connectivity checks, so it never reaches past 127.0.0.1.
The Marionette client is synchronous; async tests call it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"

PREFS = {
    "app.update.enabled": False,
    "app.update.auto": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "media.gmp-manager.url": "http://127.0.0.1:9/",  # no OpenH264 download (offline anyway)
    "media.gmp-gmpopenh264.autoupdate": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "browser.newtabpage.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "remote.prefs.recommended": True,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pref(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def firefox(workdir: Path, timeout: float = 60.0) -> Iterator[Any]:
    """A headless Firefox ESR and a Marionette session to it; closed afterwards."""
    from marionette_driver.marionette import Marionette

    if not Path(FIREFOX).exists():
        raise FileNotFoundError("firefox-esr is not installed (apt-get install firefox-esr)")
    profile = workdir / "profile"
    profile.mkdir(parents=True, exist_ok=True)
    port = free_port()
    prefs = {**PREFS, "marionette.port": port}
    (profile / "user.js").write_text(
        "".join(f"user_pref({_pref(k)}, {_pref(v)});\n" for k, v in prefs.items()),
        encoding="utf-8",
    )
    log = (workdir / "firefox.log").open("wb")
    proc = subprocess.Popen(
        [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", str(profile)],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env={"MOZ_HEADLESS": "1", "HOME": str(workdir), "PATH": "/usr/bin:/bin"},
        start_new_session=True,
    )
    client = None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "Firefox ESR did not open Marionette: "
                        + (workdir / "firefox.log").read_text(errors="replace")[-2000:]
                    ) from None
                time.sleep(0.2)
        client = Marionette(host="127.0.0.1", port=port)
        client.start_session()
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.delete_session()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def wait_script(client: Any, script: str, timeout: float, what: str) -> Any:
    """Poll ``script`` (a function body that ``return``s) until truthy; bounded."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        try:
            value = client.execute_script(script)
        except Exception as exc:  # navigating
            value = f"error: {exc}"
            ok = False
        else:
            ok = bool(value)
        if ok:
            return value
        if time.monotonic() > deadline:
            state = client.execute_script(
                "return {view: document.body.dataset.view,"
                " text: document.body.innerText.slice(0, 600)}"
            )
            raise AssertionError(
                f"Firefox: {what} not within {timeout} s (last {value!r}); {state}"
            )
        time.sleep(0.2)
