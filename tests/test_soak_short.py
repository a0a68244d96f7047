"""The soak benchmark's workload, short: after every few waves the daemon is back at baseline.

``bench/soak.py`` runs for minutes and prints figures; this runs a handful
of waves (viewers joining at once, one more than fit, leaving by bye, last
will or a silent close, some sending garbage first) and checks counts, never
timings: no session, peer connection, task, thread or file descriptor is
left beyond the idle baseline.
"""

from __future__ import annotations

import pytest

from bench.soak import Workload
from tests.daemon_proc import DaemonFactory
from tests.daemon_resources import REPORTING, idle_baseline, settled
from tests.mosquitto import MosquittoBroker

pytestmark = pytest.mark.timeout(120)


async def test_waves_of_viewers_leave_the_daemon_at_its_baseline(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory
) -> None:
    daemon = await daemon_factory(
        mosquitto, device="soak", config={"webrtc": {"max_viewers": 2}, **REPORTING}
    )
    work = Workload(daemon, max_viewers=2)
    await work.wave()  # warm-up: lazy imports, the first camera start
    baseline = await idle_baseline(daemon)
    for _ in range(2):
        for _ in range(2):
            await work.wave(watch_seconds=(0.2, 1.0))
        after = await settled(daemon, baseline)
        assert after.inboxes <= work.serial + 1, after  # bounded by the viewers seen
    assert work.outcomes["watched"] >= 3, work.outcomes
    assert set(work.outcomes) <= {
        "watched",
        "refused busy",
        "garbage refused",
        "left by bye",
        "left by will",
        "left by quiet",
    }, work.outcomes
    daemon.assert_no_traceback()
