"""The Pi service files: the systemd unit (systemd-analyze verify) and the install scripts.

``systemd-analyze verify`` checks every directive of the unit; it also insists
that ExecStart's program exists, so the test verifies a copy whose only change
is that path (pointing at a stub).  A deliberately broken copy must fail, so
the check can fail.  The install scripts are checked with ``bash -n``,
ShellCheck and their ``--dry-run`` (nothing on this machine changes).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "peercam.service"
SCRIPTS = [
    ROOT / "scripts" / "install-pi.sh",
    ROOT / "scripts" / "uninstall-pi.sh",
    ROOT / "scripts" / "pi-wheels.sh",
]
EXEC = "/opt/peercam/venv/bin/peercam"


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: sudo apt-get install {package}", pytrace=False)
    return path


def verify(unit_text: str, tmp_path: Path, name: str = "peercam.service") -> str:
    """Run systemd-analyze verify on ``unit_text`` (ExecStart stubbed); returns its output."""
    analyze = need("systemd-analyze", "systemd")
    stub = tmp_path / "bin" / "peercam"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    assert unit_text.count(EXEC) == 1, "ExecStart changed: update this test"
    path = tmp_path / name
    path.write_text(unit_text.replace(EXEC, str(stub)))
    done = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    return f"rc={done.returncode}\n{done.stdout}{done.stderr}".strip()


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert verify(UNIT.read_text(), tmp_path) == "rc=0"


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    broken = broken.replace("ProtectHome=yes", "ProtectHome=maybe")
    output = verify(broken, tmp_path, "broken.service")
    assert "WatchdogSecs" in output and "protect home" in output.lower()


def unit_settings() -> dict[str, list[str]]:
    """{"[Section]Key": [values...]} (repeatable keys keep every value)."""
    settings: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}{key}", []).append(value)
    return settings


def test_unit_is_a_watched_sandboxed_notify_service() -> None:
    s = unit_settings()
    one = {key: values[-1] for key, values in s.items()}
    assert one["[Service]Type"] == "notify"
    assert one["[Service]NotifyAccess"] == "main"
    assert int(one["[Service]WatchdogSec"]) > 0
    assert one["[Service]Restart"] == "on-failure"
    assert one["[Service]RestartPreventExitStatus"] == "2"  # a wrong config
    assert one["[Service]User"] == "peercam"
    assert set(one["[Service]SupplementaryGroups"].split()) == {"video", "audio", "gpio"}
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
    }.items():
        assert one[f"[Service]{key}"] == value, key
    devices = {v.split()[0] for v in s["[Service]DeviceAllow"]}
    for needed in ("char-video4linux", "char-media", "char-dma_heap", "char-alsa", "char-gpiochip"):
        assert needed in devices
    assert "[Service]PrivateDevices" not in s  # it would hide the camera and GPIO
    assert one["[Service]ExecStart"].startswith(f"{EXEC} run --config /etc/peercam/")


def install_dry_run(
    bundle: Path, timeout: float = 60, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``install-pi.sh --dry-run --bundle BUNDLE``: prints its plan, changes nothing."""
    return subprocess.run(
        ["bash", str(SCRIPTS[0]), "--dry-run", "--bundle", str(bundle), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_install_scripts_pass_bash_n_and_shellcheck(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    shellcheck = need("shellcheck", "shellcheck")
    done = subprocess.run(
        [shellcheck, "--severity=style", str(script)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_dry_run_plans_every_step_and_changes_nothing(tmp_path: Path) -> None:
    bundle = tmp_path / "frontdoor"
    bundle.mkdir()
    for name in ("peercam.toml", "mqtt-password", "turn-secret", "ca.crt"):
        (bundle / name).write_text("x\n")
    before = {p: p.exists() for p in (Path("/opt/peercam"), Path("/etc/peercam"))}
    done = install_dry_run(bundle, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    plan = done.stdout
    assert "python3 -m venv --system-site-packages /opt/peercam/venv" in plan or (
        Path("/opt/peercam/venv/bin/python").exists()
    )
    assert (
        f"/opt/peercam/venv/bin/pip install --quiet --disable-pip-version-check --upgrade {ROOT}"
        in plan
    )
    for secret in ("mqtt-password", "turn-secret"):
        assert f"install -m 0640 -o root -g peercam {bundle}/{secret} /etc/peercam/{secret}" in plan
    assert "/etc/systemd/system/peercam.service" in plan
    assert "systemctl enable peercam.service" in plan
    assert "systemctl restart --no-block peercam.service" in plan
    if "useradd" in plan:
        assert "--shell /usr/sbin/nologin" in plan and plan.count("usermod -aG") == 3
    assert {p: p.exists() for p in before} == before


def test_install_refuses_an_incomplete_bundle(tmp_path: Path) -> None:
    (tmp_path / "peercam.toml").write_text("x\n")
    done = install_dry_run(tmp_path)
    assert done.returncode == 1
    assert "mqtt-password not found" in done.stderr
    assert "+ " not in done.stdout  # nothing planned


def test_install_refuses_a_bundle_that_reads_its_secrets_elsewhere(tmp_path: Path) -> None:
    """A bundle made with ``init --install-dir /srv/x`` would not find its password in /etc."""
    (tmp_path / "peercam.toml").write_text(
        '[mqtt]\npassword_file = "/srv/cam/mqtt-password"\n'
        '[webrtc]\nturn_secret_file = "/etc/peercam/turn-secret"\n'
    )
    (tmp_path / "mqtt-password").write_text("x\n")
    done = install_dry_run(tmp_path)
    assert done.returncode == 1
    assert "reads files outside /etc/peercam (/srv/cam/mqtt-password )" in done.stderr
    assert "+ " not in done.stdout  # nothing planned


def test_uninstall_dry_run(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(SCRIPTS[1]), "--dry-run", "--purge"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "peercam removed" in done.stderr


def test_install_from_a_wheelhouse_never_asks_an_index(tmp_path: Path) -> None:
    """``--wheels DIR``: pip gets ``--no-index --find-links DIR``; a folder without wheels is
    refused before anything is planned.  (The real offline install: test_pi_nspawn.py.)"""
    bundle = tmp_path / "frontdoor"
    bundle.mkdir()
    for name in ("peercam.toml", "mqtt-password"):
        (bundle / name).write_text("x\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    refused = install_dry_run(bundle, 60, "--wheels", str(wheels))
    assert refused.returncode == 1
    assert "holds no .whl files" in refused.stderr and "pi-wheels.sh --pi" in refused.stderr
    assert "+ " not in refused.stdout
    (wheels / "av-18.1.0-cp311-abi3-manylinux_2_28_aarch64.whl").write_bytes(b"")
    done = install_dry_run(bundle, 120, "--wheels", str(wheels))
    assert done.returncode == 0, done.stderr
    assert (
        "/opt/peercam/venv/bin/pip install --quiet --disable-pip-version-check "
        f"--no-index --find-links {wheels} --upgrade {ROOT}" in done.stdout
    )


def test_every_package_is_in_the_wheel() -> None:
    """install-pi.sh installs a built wheel, not the editable tree tests use: a package
    missing from pyproject's list imports here and crashes on the Pi (the booted test found
    ``peercam.relay`` missing that way)."""
    import tomllib

    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(settings["packages"])
    on_disk = set()
    for package, folder in settings["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([package, *relative.parts]))
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"


def test_every_dashboard_file_is_package_data() -> None:
    """The wheel carries only the dashboard files package-data's patterns match: a new kind
    of file (the web manifest was one) would be missing on the Pi and in `peercam dashboard`."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["peercam.dashboard"]
    served = [
        path.name
        for path in (ROOT / "dashboard").iterdir()
        if path.is_file() and path.suffix not in {".py", ".pyc"}
    ]
    missing = [n for n in served if not any(fnmatch.fnmatch(n, p) for p in patterns)]
    assert missing == [], "add patterns for these to [tool.setuptools.package-data]"
