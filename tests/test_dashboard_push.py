"""Web Push, the browser's half, in Chromium: the installable dashboard's service worker
shows the device's real push message as a notification, and clicking **Answer** on it
(a real click, through a private D-Bus notification server) opens the dashboard and
answers the call.

No push service is reachable here, so the push is delivered to the service worker
with the DevTools Protocol (``ServiceWorker.deliverPushMessage``) instead of through
FCM; the message is the very one the device encrypted for a subscription (decrypted
by ``tests/push_service.py``).  What only a real push service can show: that
``pushManager.subscribe()`` returns a subscription, and that the encrypted push
reaches the browser through it (docs/notifications.md).
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.dashboard_env import (
    FAKE_MEDIA_ARGS,
    PASSWORDS,
    broker_fixture,
    shot,
    site_fixture,
    start_device,
    wait_js,
    watch_console,
)
from tests.dbus_notify import private_notifications
from tests.mosquitto import MosquittoBroker
from tests.push_service import PushService
from tests.waiting import wait_until

__all__ = ["broker_fixture", "site_fixture"]

pytestmark = pytest.mark.browser


async def subscribe_as(broker: MosquittoBroker, viewer: str, subscription: dict) -> None:
    """push-subscribe over MQTT as ``viewer`` (a phone the test plays), waiting for the reply."""
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=viewer, password=PASSWORDS[viewer]
    ) as client:
        await client.subscribe(f"peercam/frontdoor/out/{viewer}", qos=1)
        message = {"v": 1, "type": "push-subscribe", "subscription": subscription}
        await client.publish(f"peercam/frontdoor/in/{viewer}", json.dumps(message), qos=1)
        async with asyncio.timeout(10):
            async for reply in client.messages:
                assert json.loads(bytes(reply.payload))["type"] == "push-subscribed"
                return


async def test_a_push_shows_a_notification_and_its_answer_button_answers(
    site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    push_service = PushService().start()
    daemon = await start_device(
        daemon_factory,
        broker,
        tmp_path,
        extra_args=["--fake-hardware"],
        call={"state_dir": str(tmp_path / "state"), "ring_timeout": 90.0},
        notify={"dashboard_url": site},
    )
    origin = "/".join(site.split("/")[:3])
    # A phone of bob's, subscribed: the device's real push for the ring lands here.
    await subscribe_as(broker, "bob", push_service.new_subscription("bob-phone").subscription())

    async with (
        private_notifications(tmp_path / "dbus") as (bus, notifications),
        async_playwright() as pw,
    ):
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=[*CHROMIUM_ARGS, *FAKE_MEDIA_ARGS],
            env={"DBUS_SESSION_BUS_ADDRESS": bus, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        try:
            await context.grant_permissions(["notifications", "microphone"], origin=origin)
            page = context.pages[0] if context.pages else await context.new_page()
            log = watch_console(page)
            cdp = await context.new_cdp_session(page)
            registrations: dict[str, str] = {}
            cdp.on(
                "ServiceWorker.workerRegistrationUpdated",
                lambda e: registrations.update(
                    {r["scopeURL"]: r["registrationId"] for r in e["registrations"]}
                ),
            )
            await cdp.send("ServiceWorker.enable")

            # Sign in (remembered, so a window the notification opens signs in too).
            await page.goto(site)
            await wait_js(page, "() => document.body.dataset.view === 'signin'", 15)
            await page.fill("#f-broker", broker.ws_url)
            await page.fill("#f-viewer", "alice")
            await page.fill("#f-password", PASSWORDS["alice"])
            await page.check("#f-remember")
            await page.click("#signin-submit")
            await wait_js(page, "() => document.body.dataset.view === 'devices'", 20)
            # The installable app: manifest, icons, the offline shell's worker.
            manifest = await page.evaluate(
                "() => fetch(document.querySelector('link[rel=manifest]').href)"
                ".then((r) => r.json())"
            )
            assert manifest["display"] == "standalone"
            assert {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}
            await wait_until(lambda: f"{site}" in registrations, "the shell's service worker")

            # "Notify me on this device": the worker for frontdoor registers, but offline
            # Chromium's push service never answers: the page says so in words.
            await page.goto(f"{site}#/device/frontdoor")
            await wait_js(page, "() => !document.getElementById('dv-push').hidden", 20)
            assert "Get a notification" in await page.inner_text("#dv-push-text")
            await page.click("#dv-push-toggle")
            scope = f"{site}push/frontdoor/"
            await wait_until(lambda: scope in registrations, "frontdoor's push worker", 20)
            text = await wait_js(
                page,
                "() => { const t = document.getElementById('dv-push-text').textContent;"
                " return t.includes('Could not turn on notifications') && t; }",
                40,
            )
            assert "push service did not answer" in text, text
            await page.screenshot(path=shot("dashboard-push-offline.png"))
            await page.close()  # no dashboard open: the notification must open one

            # The doorbell rings; its push (decrypted by the local push service) is
            # delivered to frontdoor's worker as the push service would.
            daemon.signal(signal.SIGUSR1)
            await wait_until(
                lambda: push_service.pushes_to("bob-phone"), "the device's push", timeout=15
            )
            message = push_service.pushes_to("bob-phone")[0].message
            call = message["call"]
            await wait_until(lambda: scope in registrations, "registration id")
            cdp2 = await context.new_cdp_session(await context.new_page())
            await cdp2.send("ServiceWorker.enable")
            await cdp2.send(
                "ServiceWorker.deliverPushMessage",
                {
                    "origin": origin,
                    "registrationId": registrations[scope],
                    "data": json.dumps(message),
                },
            )
            await wait_until(
                lambda: any(n.summary == message["title"] for n in notifications.shown),
                f"no notification over D-Bus (got {notifications.shown})",
                timeout=15,
            )
            shown = next(n for n in notifications.shown if n.summary == message["title"])
            assert "Answer" in shown.actions and "Open" in shown.actions
            # What the worker showed, read back from its registration.
            probe = context.pages[-1]
            await probe.goto(f"{site}manifest.webmanifest")
            got = await probe.evaluate(
                """async (scope) => {
                  const reg = await navigator.serviceWorker.getRegistration(scope);
                  const [n] = await reg.getNotifications();
                  return n && {title: n.title, body: n.body, image: n.image, tag: n.tag,
                               actions: n.actions.map((a) => [a.action, a.title]),
                               data: n.data};
                }""",
                scope,
            )
            assert got["title"] == "Front door: someone is at the door"
            assert got["image"].startswith("data:image/jpeg;base64,")
            assert got["actions"] == [["answer", "Answer"], ["open", "Open"]]
            assert got["data"]["call"] == call and got["tag"] == f"peercam-frontdoor-{call}"
            for p in list(context.pages):
                await p.close()  # nothing of the dashboard open

            # A real click on "Answer", as the desktop's notification server reports it.
            opened = asyncio.ensure_future(context.wait_for_event("page", timeout=20000))
            notifications.ActionInvoked(shown.id, shown.key_of("Answer"))
            dashboard = await opened
            watch_console(dashboard)
            await wait_until(
                lambda: f"call {call} answered by alice" in daemon.log_text(),
                "the notification's Answer did not answer the call",
                timeout=30,
            )
            assert "answer=" in dashboard.url or "#/device/frontdoor" in dashboard.url
            await wait_js(
                dashboard,
                f"() => window.peercam.sessions.frontdoor?.call === {json.dumps(call)}",
                15,
                "the opened dashboard is in the call",
            )
            await dashboard.screenshot(path=shot("dashboard-answered-from-notification.png"))

            # A call nobody answers: its "missed" push replaces the ringing notification.
            other = "Other-call-0001"
            cdp3 = await context.new_cdp_session(dashboard)  # the earlier tabs are closed
            await cdp3.send("ServiceWorker.enable")
            for kind, title in (("ring", message["title"]), ("missed", "Front door: missed call")):
                data = {**message, "call": other, "kind": kind, "title": title}
                if kind == "missed":
                    data.pop("image")
                await cdp3.send(
                    "ServiceWorker.deliverPushMessage",
                    {
                        "origin": origin,
                        "registrationId": registrations[scope],
                        "data": json.dumps(data),
                    },
                )
                await wait_until(
                    lambda t=title: any(n.summary == t for n in notifications.shown),
                    f"the {kind} notification",
                )
            left = await dashboard.evaluate(
                """async (scope) => {
                  const reg = await navigator.serviceWorker.getRegistration(scope);
                  return (await reg.getNotifications()).map((n) => [n.title, n.tag,
                    n.actions.map((a) => a.action)]);
                }""",
                scope,
            )
            assert left == [["Front door: missed call", f"peercam-frontdoor-{other}", ["open"]]]
            assert not log.unexpected(), log.errors
        finally:
            await context.close()
            push_service.stop()


def test_the_offline_shell_lists_every_file_of_the_page() -> None:
    """sw.js caches an explicit list: a new module left out would break the offline app."""
    import re

    dashboard = Path(__file__).resolve().parent.parent / "dashboard"
    listed = set(re.findall(r'^  "([^"]+)",$', (dashboard / "sw.js").read_text(), re.M))
    pages = {p.name for p in dashboard.glob("*.js")} - {"sw.js"}
    assert pages <= listed, f"missing from sw.js SHELL: {sorted(pages - listed)}"
    for name in listed - {"./"}:
        assert (dashboard / name).is_file(), f"sw.js SHELL lists {name}, which does not exist"
