"""``peercam check`` for ``[notify]``: nothing is sent unless asked; ``--notify`` sends one
test to every Apprise URL and every stored push subscription and says which arrived."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from peercam.notify.webpush import SubscriptionStore, load_or_make_vapid, parse_subscription
from tests.daemon_proc import default_config, merge_config, to_toml
from tests.http_sink import HttpSink, dead_port
from tests.mosquitto import MosquittoBroker
from tests.push_service import PushService


def check(tmp_path: Path, config: dict, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "peercam.toml"
    path.write_text(to_toml(config))
    return subprocess.run(
        [sys.executable, "-m", "peercam", "check", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_check_sends_only_when_asked_and_names_what_failed(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    sink, push = HttpSink().start(), PushService().start()
    try:
        state = tmp_path / "state"
        load_or_make_vapid(state / "vapid.pem")  # as the daemon's first start does
        phone = push.new_subscription("phone")
        SubscriptionStore(state / "push-subscriptions.json", 4).add(
            parse_subscription("alice", phone.subscription())
        )
        good, dead = sink.url("json"), f"json://127.0.0.1:{dead_port()}/notify"
        config = merge_config(
            default_config(mosquitto.url),
            {
                "call": {"state_dir": str(state)},
                "notify": {"urls": [good, dead], "timeout": 5.0},
                "gpio": {"enabled": False},
            },
        )
        quiet = check(tmp_path, config)
        assert "notify: 2 Apprise URL(s)" in quiet.stdout
        assert "--notify sends a test" in quiet.stdout
        assert "web push: key" in quiet.stdout and "1 subscription(s)" in quiet.stdout
        assert sink.requests == [] and push.pushes == [], "nothing is sent without --notify"

        loud = check(tmp_path, config, "--notify")
        out = loud.stdout
        assert loud.returncode == 1, out + loud.stderr
        assert f"[ok] notify: {good}: test notification delivered" in out
        assert f"[FAIL] notify: {dead}: " in out
        assert f"[ok] web push: alice via {push.origin}: accepted (201)" in out
        assert push.problems == []
        (test_push,) = push.pushes
        assert test_push.message["kind"] == "test"
        assert len(sink.requests) == 1
    finally:
        sink.stop()
        push.stop()
