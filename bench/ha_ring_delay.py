"""Press → Home Assistant event delay: how soon an automation can react to a ring.

    python -m bench.ha_ring_delay [--presses 10]

Real parts on 127.0.0.1: Mosquitto, the daemon (``peercam run
--fake-hardware``, ``[homeassistant] enabled``), and a real Home Assistant
core from the cached test venv (``tests/ha_core.py``; built on first use),
onboarded and given the MQTT integration over its REST API.

Each press is a SIGUSR1 (the fake button, as tests press it).  The delay is
from just before the signal to the event entity's new state, whose value IS
the time Home Assistant fired the event (its own clock; same machine), so
the REST polling that notices it adds nothing to the figure.  Also reported:
press → the ``call`` event reaching a plain MQTT subscriber (the part before
Home Assistant), measured the same way.  Calls time out after 1 s
(``ring_timeout``) so every press rings.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.harness import write_result
from tests.daemon_proc import DaemonProcess, default_config, merge_config
from tests.ha_core import HA_VERSION, HomeAssistant
from tests.mosquitto import MosquittoBroker, free_port


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
        "p90_ms": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 1),
    }


async def run(presses: int, workdir: Path) -> dict[str, Any]:
    broker = MosquittoBroker(workdir / "mosquitto").start()
    daemon = DaemonProcess(
        merge_config(
            default_config(broker.url, device="frontdoor"),
            {
                "call": {"ring_timeout": 1.0, "min_press_interval": 0.1},
                "homeassistant": {"enabled": True},
            },
        ),
        workdir / "daemon",
        extra_args=["--fake-hardware"],
    )
    ha = HomeAssistant(workdir / "ha", free_port())
    try:
        daemon.start()
        await asyncio.to_thread(ha.start)
        await asyncio.to_thread(ha.onboard)
        flow = await asyncio.to_thread(
            ha.api, "POST", "/api/config/config_entries/flow", {"handler": "mqtt"}
        )
        await asyncio.to_thread(
            ha.api,
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"broker": "127.0.0.1", "port": broker.port},
        )
        await daemon.wait_online()
        deadline = time.monotonic() + 60
        while (await asyncio.to_thread(ha.state, "event.frontdoor_doorbell") or {}).get(
            "state", "unavailable"
        ) == "unavailable":
            if time.monotonic() > deadline:
                raise SystemExit("the doorbell entity never appeared in Home Assistant")
            await asyncio.sleep(0.2)

        to_ha: list[float] = []
        to_mqtt: list[float] = []
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("peercam/frontdoor/events", qos=1)
            messages = client.messages
            for press in range(presses + 1):  # press 0 warms up (first snapshot, first template)
                before = (await asyncio.to_thread(ha.state, "event.frontdoor_doorbell"))["state"]
                pressed = time.time()
                daemon.signal(signal.SIGUSR1)
                async with asyncio.timeout(10):
                    async for message in messages:
                        if json.loads(bytes(message.payload)).get("type") == "call":  # type: ignore[arg-type]
                            mqtt_at = time.time()
                            break
                while True:
                    state = await asyncio.to_thread(ha.state, "event.frontdoor_doorbell")
                    if state["state"] not in (before, "unknown", "unavailable"):
                        break
                    if time.time() - pressed > 10:
                        raise SystemExit("Home Assistant did not see the ring within 10 s")
                    await asyncio.sleep(0.02)
                fired = dt.datetime.fromisoformat(state["state"]).timestamp()
                if press > 0:
                    to_ha.append((fired - pressed) * 1000)
                    to_mqtt.append((mqtt_at - pressed) * 1000)
                await asyncio.sleep(1.6)  # the call times out (ring_timeout 1 s): idle again
        return {
            "presses": presses,
            "home_assistant": HA_VERSION,
            "press_to_ha_event": _ms(to_ha),
            "press_to_mqtt_call_event": _ms(to_mqtt),
            "raw_press_to_ha_ms": [round(v, 1) for v in to_ha],
        }
    finally:
        if daemon.running:
            await daemon.terminate()
        await asyncio.to_thread(ha.stop)
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="peercam-ha-bench-") as tmp:
        result = asyncio.run(run(args.presses, Path(tmp)))
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path = write_result("ha_ring_delay", result)
    ha, mq = result["press_to_ha_event"], result["press_to_mqtt_call_event"]
    print(
        f"press -> Home Assistant event: median {ha['median_ms']} ms "
        f"(min {ha['min_ms']}, p90 {ha['p90_ms']}, max {ha['max_ms']}; {args.presses} presses)"
    )
    print(f"press -> MQTT call event:      median {mq['median_ms']} ms (min {mq['min_ms']})")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
