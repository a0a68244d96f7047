"""``peercam check`` says what works and what does not (real broker, real subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.daemon_proc import default_config, merge_config, to_toml
from tests.mosquitto import MosquittoBroker


def run_check(
    tmp_path: Path, config: dict[str, Any], extra_toml: str = ""
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "peercam.toml"
    path.write_text(to_toml(config) + extra_toml)
    return subprocess.run(
        [sys.executable, "-m", "peercam", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_reports_gpio_speaker_and_replies(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    config = merge_config(
        default_config(mosquitto.url), {"talkback": {"sink": f"wav:{tmp_path}/out.wav"}}
    )
    done = run_check(tmp_path, config)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "[warn] GPIO: no GPIO on this machine" in out  # this machine is no Pi
    assert f"[ok] speaker: records to {tmp_path}/out.wav" in out
    assert "[warn] quick reply 'coming' has no recording: plays a chime" in out
    assert "all checks passed" in out


def test_check_fails_on_an_unreadable_reply_file(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    replies = [{"id": "coming", "text": "Be right there", "file": str(tmp_path / "missing.wav")}]
    config = merge_config(
        default_config(mosquitto.url),
        {"talkback": {"sink": f"wav:{tmp_path}/out.wav"}, "gpio": {"enabled": False}},
    )
    reply = replies[0]
    table = f'\n[[talkback.replies]]\nid = "{reply["id"]}"\ntext = "{reply["text"]}"\n'
    done = run_check(tmp_path, config, table + f'file = "{reply["file"]}"\n')
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[ok] GPIO: disabled in the config" in done.stdout
    assert f"[FAIL] quick reply 'coming': cannot read {tmp_path}/missing.wav" in done.stdout
    assert "1 check(s) failed" in done.stdout


def test_verbose_counts_before_and_after_the_command(monkeypatch: Any) -> None:
    """`peercam -vv run` and `peercam run -vv` both reach the log set-up as -vv.

    argparse copies a subcommand's defaults over the main parser's values, so a -v
    declared on both with the same name lost the one given before the command.
    """
    from peercam import cli

    seen: list[int] = []
    monkeypatch.setattr(cli, "setup_logging", seen.append)
    monkeypatch.setattr(cli, "cmd_run", lambda args: 0)
    monkeypatch.setattr(cli, "cmd_dashboard", lambda args: 0)
    for argv, want in (
        (["-vv", "run"], 2),
        (["run", "-vv"], 2),
        (["-v", "run", "-v"], 2),
        (["run"], 0),
        (["-v", "dashboard"], 1),
    ):
        assert cli.main(argv) == 0, argv
        assert seen.pop() == want, argv
