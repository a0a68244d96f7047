"""The Pi install for real: install-pi.sh and the hardened unit under a booted systemd.

One container for the whole module (tests run in order and build on each
other, as a user's Pi does): a copy of the cached Debian Bookworm rootfs
(``tests.nspawn``) boots with systemd-nspawn on a private network (loopback
only).  Inside it, like on a Pi that is also the broker: the real
``install-broker.sh`` from ``peercam provision export`` (Mosquitto, coturn),
then the real ``scripts/install-pi.sh --bundle … --wheels …`` (no package
index is reachable), then a reboot.  Every check runs inside the container: a
Python viewer (``tests/pi_probe.py``) with the installed venv, ``systemctl``,
``/proc``.

The unit is exercised as installed; one test drop-in empties
``SystemCallErrorNumber=`` so that a syscall the filter blocks kills the daemon
with SIGSYS instead of failing quietly with EPERM, and runs it with
``--fake-hardware`` (fake picamera2, mock call button) for a call.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peercam.provisioning.cli import main as provision_main
from tests import nspawn

ROOT = Path(__file__).resolve().parent.parent
VIEWER_PASSWORD = "alice-in-the-container"
PROBE_PY = "/opt/peercam/venv/bin/python"
DROPIN = "/etc/systemd/system/peercam.service.d/test-sigsys.conf"
#: Left out of the "nothing left behind" comparison: runtime and log state, and
#: root's home (the copied source tree, pip's cache).
NOT_COMPARED = (
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/var/log",
    "/var/cache",
    "/var/lib/systemd",
    "/root",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def provision(registry: Path, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = provision_main(["--registry", str(registry), *args])
    assert rc == 0, out.getvalue()
    return out.getvalue()


def make_site(registry: Path) -> Path:
    """A registry like a user's: broker and TURN on the Pi itself; returns the device bundle."""
    provision(
        registry,
        "init",
        "--broker",
        "mqtt://127.0.0.1:1883",
        "--plain",
        "--listen-address",
        "127.0.0.1",
        "--turn-host",
        "127.0.0.1",
        "--mosquitto-dir",
        "/etc/mosquitto/peercam",
    )
    provision(
        registry,
        "device",
        "add",
        "frontdoor",
        "--name",
        "Front door",
        "--camera",
        "test-pattern",
        "--host-network",
        "127.0.0.1/32",
    )
    provision(
        registry, "viewer", "add", "alice", "--device", "frontdoor", "--password", VIEWER_PASSWORD
    )
    provision(registry, "export")
    # coturn refuses to start when the only addresses it finds are loopback ones ("Cannot
    # configure any meaningful IP listener address"); a Pi has its LAN address.
    with (registry / "coturn" / "turnserver.conf").open("a") as conf:
        conf.write("listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\n")
    bundle = registry / "devices" / "frontdoor"
    config = (bundle / "peercam.toml").read_text()
    # A small picture (two shared cores in CI), a microphone and a speaker to check.
    for old, new in (
        (
            '[camera]\nsource = "test-pattern"\n',
            '[camera]\nsource = "test-pattern"\nwidth = 320\nheight = 240\nfps = 15\n'
            "bitrate = 400000\n",
        ),
        ('[audio]\nsource = "none"\n', '[audio]\nsource = "test-tone"\n'),
    ):
        assert old in config, f"the bundle's peercam.toml changed: update this test\n{config}"
        config = config.replace(old, new)
    config += '\n[talkback]\nsink = "wav:/var/lib/peercam/talkback.wav"\n'
    (bundle / "peercam.toml").write_text(config)
    return bundle


def copy_source(dest: Path) -> None:
    """The source tree as a user copies it to the Pi (without caches and the dev venv)."""
    shutil.copytree(
        ROOT,
        dest,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "build"
        ),
    )
    probe = dest.parent / "probe" / "tests"
    probe.mkdir(parents=True)
    (probe / "__init__.py").write_text("")
    for name in ("pi_probe.py", "viewer.py", "tone.py"):
        shutil.copy(ROOT / "tests" / name, probe / name)


class Pi:
    """The booted container with the helpers the tests share."""

    def __init__(self, container: nspawn.Container, registry: Path) -> None:
        self.c = container
        self.registry = registry
        self.baseline: set[str] = set()
        self.baseline_accounts = ""
        self.timings: dict[str, float] = {}

    def probe(self, command: str, *args: str, timeout: float = 120) -> dict:
        done = self.c.run(
            "sh",
            "-c",
            f"cd /root/probe && exec {PROBE_PY} -m tests.pi_probe {command} "
            f"--password-file /root/alice-password {' '.join(args)}",
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, (
            f"probe {command} failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
            f"{done.stderr[-6000:]}\njournal:\n{self.journal()}"
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    def show(self, *props: str) -> dict[str, str]:
        out = self.c.run("systemctl", "show", "peercam.service", "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str = "peercam.service", lines: int = 200) -> str:
        return self.c.run(
            "journalctl", "-u", unit, "-b", "--no-pager", "-n", str(lines), check=False
        ).stdout

    def wait_active(self, what: str, timeout: float = 90, **extra: str) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.show("ActiveState", "SubState", "MainPID", "NRestarts", *extra)
            if state["ActiveState"] == "active" and all(state[k] == v for k, v in extra.items()):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {state} after {timeout:g} s\n{self.journal()}")
            time.sleep(0.2)

    def files(self) -> set[str]:
        prune = " -o ".join(f"-path {p}" for p in NOT_COMPARED)
        out = self.c.sh(f"find / -xdev \\( {prune} \\) -prune -o -print", timeout=120).stdout
        return set(out.splitlines())

    def accounts(self) -> str:
        return self.c.sh("cat /etc/passwd /etc/group /etc/shadow /etc/gshadow").stdout


@pytest.fixture(scope="module")
def pi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pi]:
    why = nspawn.missing_parts()
    if why is not None:
        pytest.skip(why)
    timings: dict[str, float] = {}
    started = time.monotonic()
    rootfs = nspawn.ensure_rootfs()
    wheels = nspawn.ensure_wheelhouse()
    timings["cache"] = time.monotonic() - started
    work = tmp_path_factory.mktemp("pi")
    registry = work / "registry"
    bundle = make_site(registry)

    def report() -> None:
        timings["total"] = time.monotonic() - started
        rounded = {k: round(v, 1) for k, v in timings.items()}
        print(f"\ntest_pi_nspawn timings (s): {json.dumps(rounded)}", file=sys.stderr)

    with contextlib.ExitStack() as stack:
        stack.callback(report)
        mark = time.monotonic()
        root = stack.enter_context(nspawn.private_root(rootfs, work))
        timings["root"] = time.monotonic() - mark
        copy_source(root / "root" / "peercam")
        shutil.copytree(bundle, root / "root" / "frontdoor")  # scp -rp to the Pi
        (root / "root" / "alice-password").write_text(VIEWER_PASSWORD + "\n")
        # Debian's coturn starts at boot with its default config and, with loopback the only
        # address, fails until systemd's start limit refuses even install-broker.sh's restart.
        with (root / "etc" / "turnserver.conf").open("a") as conf:
            conf.write("listening-ip=127.0.0.1\n")
        container = nspawn.Container(
            root,
            work / "console.log",  # stays for a post-mortem
            binds=[f"{registry}:{registry}", f"{wheels}:/root/wheels"],
        )
        stack.callback(container.kill)
        mark = time.monotonic()
        container.boot()
        timings["boot"] = time.monotonic() - mark
        p = Pi(container, registry)
        p.timings = timings
        # The Pi is the broker host too: the generated script installs Mosquitto's and
        # coturn's files.
        container.run("sh", str(registry / "install-broker.sh"), timeout=120)
        p.baseline = p.files()
        p.baseline_accounts = p.accounts()
        mark = time.monotonic()
        container.run(
            "bash",
            "/root/peercam/scripts/install-pi.sh",
            "--bundle",
            "/root/frontdoor",
            "--wheels",
            "/root/wheels",
            timeout=600,
        )
        timings["install"] = time.monotonic() - mark
        p.wait_active("the service right after install-pi.sh")
        mark = time.monotonic()
        rc = container.shutdown(reboot=True)
        assert rc == 133, f"systemd-nspawn exited {rc} on reboot (133 = reboot)"
        container.boot()
        timings["reboot"] = time.monotonic() - mark
        yield p


def test_after_reboot_the_service_is_ready_online_and_streams(pi: Pi) -> None:
    assert pi.c.run("systemctl", "is-enabled", "peercam.service").stdout.strip() == "enabled"
    state = pi.wait_active("peercam after the reboot")
    # Type=notify: "active" only once READY=1 arrived; the daemon sends it once it serves.
    times = pi.show(
        "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic", "StatusText", "Type"
    )
    assert times["Type"] == "notify"
    ready_after = (
        int(times["ActiveEnterTimestampMonotonic"]) - int(times["ExecMainStartTimestampMonotonic"])
    ) / 1e6
    assert ready_after > 0
    assert times["StatusText"], "no STATUS= from the daemon"
    pi.timings["ready_after_exec"] = ready_after
    assert state["NRestarts"] == "0"
    seen = pi.probe("watch", "--frames", "30")
    assert seen["status"]["state"] == "online"
    assert seen["frames"] >= 30 and seen["sizes"] == ["320x240"]
    assert "127.0.0.1" in seen["pair"]


def test_the_sandbox_is_really_applied(pi: Pi) -> None:
    main_pid = pi.show("MainPID")["MainPID"]
    status = pi.c.run("cat", f"/proc/{main_pid}/status").stdout
    fields = dict(re.findall(r"^(\w+):\s*(.*)$", status, re.MULTILINE))
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, f"{cap} {fields[cap]}"
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"  # filter mode
    uid = pi.c.run("id", "-u", "peercam").stdout.strip()
    assert fields["Uid"].split()[0] == uid
    # In the service's own mount namespace: /etc and /opt are read-only (even for root),
    # the state directory is writable by the service user.
    for path in ("/etc/peercam/probe", "/opt/peercam/probe", "/usr/probe"):
        done = pi.c.run("nsenter", "-t", main_pid, "-m", "touch", path, check=False)
        assert done.returncode != 0 and "Read-only file system" in done.stderr, (path, done)
    writable = pi.c.run(
        "nsenter", "-t", main_pid, "-m", f"-S{uid}", f"-G{uid}", "sh", "-c",
        "echo x > /var/lib/peercam/probe && rm /var/lib/peercam/probe",
        check=False,
    )  # fmt: skip
    assert writable.returncode == 0, writable.stderr


#: (name, major, minor, the /proc/devices group DeviceAllow= names or None): device nodes the
#: allow-list test opens.  ALSA and V4L2 have fixed majors; the Pi's others are dynamic.
NODES = (
    ("null", 1, 3, None),
    ("urandom", 1, 9, None),
    ("kmsg", 1, 11, None),
    ("alsa", 116, 0, "alsa"),
    ("video4linux", 81, 0, "video4linux"),
)


def registered_groups() -> set[str]:
    text = Path("/proc/devices").read_text().split("Block devices:")[0]
    return {line.split()[1] for line in text.splitlines() if line[:4].strip().isdigit()}


def test_the_device_allow_list_is_enforced(pi: Pi, tmp_path: Path) -> None:
    """A process moved into peercam's cgroup gets its BPF device program; a sibling's does not.

    The nodes are made here (mknod); a node whose driver is not loaded opens with ENXIO once
    the device policy let it through, and with EPERM when the policy refused it.
    """
    for name, major, minor, _ in NODES:
        os.mknod(tmp_path / name, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    script = (
        "import errno, json, os, sys\n"
        "open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()))\n"
        "result = {}\n"
        "for name in sys.argv[3:]:\n"
        "    flags = os.O_RDONLY if name == 'kmsg' else os.O_RDWR\n"
        "    try:\n"
        "        os.close(os.open(os.path.join(sys.argv[2], name), flags | os.O_NONBLOCK))\n"
        "        result[name] = 'ok'\n"
        "    except OSError as exc:\n"
        "        result[name] = errno.errorcode[exc.errno]\n"
        "print(json.dumps(result))\n"
    )

    def opens(unit: str) -> dict[str, str]:
        cgroup = pi.c.host_cgroup(unit)
        assert cgroup.is_dir(), cgroup
        names = [name for name, *_ in NODES]
        done = subprocess.run(
            [sys.executable, "-c", script, str(cgroup), str(tmp_path), *names],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    sandboxed = opens("peercam.service")
    other = opens("mosquitto.service")
    groups = registered_groups()
    for name, _, _, group in NODES:
        assert other[name] != "EPERM", other  # nothing else restricts these
        if group is None:
            # DevicePolicy=closed: the standard pseudo devices, nothing else unlisted
            assert sandboxed[name] == ("EPERM" if name == "kmsg" else "ok"), sandboxed
        elif group in groups:
            assert sandboxed[name] == other[name], (name, sandboxed)  # DeviceAllow= lets it by
        else:
            # systemd resolves char-<group> from /proc/devices when the unit starts: with
            # the driver not loaded yet, the group's devices stay closed (see docs/pi-capture.md)
            assert sandboxed[name] == "EPERM", (name, sandboxed)


def test_the_syscall_filter_lets_everything_peercam_does_through(pi: Pi) -> None:
    """With a denied syscall killing (SIGSYS), stream, call, talk back and probe TURN."""
    pi.c.sh(
        f"mkdir -p {Path(DROPIN).parent}\n"
        f"cat > {DROPIN} <<'EOF'\n"
        "# test: a syscall the filter denies kills the daemon (status=31/SYS) instead of EPERM\n"
        "[Service]\n"
        "SystemCallErrorNumber=\n"
        "ExecStart=\n"
        "ExecStart=/opt/peercam/venv/bin/peercam run --fake-hardware"
        " --config /etc/peercam/peercam.toml\n"
        "EOF\n"
        # the fake picamera2 (threads, the fake encoder) instead of the test pattern
        'sed -i \'s/^source = "test-pattern"/source = "picamera2"/\' /etc/peercam/peercam.toml\n'
        "systemctl daemon-reload\n"
        "systemctl restart peercam.service\n"
    )
    shown = pi.show("SystemCallErrorNumber")["SystemCallErrorNumber"]
    assert shown in ("kill", "2147483646"), shown  # systemd 252 shows "kill" as INT_MAX - 1
    # The same filter and setting do kill a process that makes a denied call (chroot is
    # @privileged): a denial cannot go unnoticed below.
    pi.c.sh(
        "cat > /run/systemd/system/sigsys-control.service <<'EOF'\n"
        "[Service]\n"
        "Type=oneshot\n"
        "SystemCallFilter=@system-service\n"
        "SystemCallFilter=~@privileged\n"
        "SystemCallErrorNumber=\n"
        "ExecStart=/usr/bin/python3 -c 'import os; os.chroot(\"/\")'\n"
        "EOF\n"
        "systemctl daemon-reload\n"
    )
    control = pi.c.run("systemctl", "start", "sigsys-control.service", check=False)
    assert control.returncode != 0
    assert "status=31/SYS" in pi.journal("sigsys-control.service"), control
    state = pi.wait_active("peercam with the SIGSYS drop-in", NRestarts="0")
    seen = pi.probe("watch", "--frames", "30")
    assert seen["frames"] >= 30
    urls = [
        url for urls in seen["ice_servers"] for url in ([urls] if isinstance(urls, str) else urls)
    ]
    assert any(url.startswith("turn:127.0.0.1") for url in urls), seen["ice_servers"]
    called = pi.probe("call")
    assert called["snapshot"] == [320, 240]
    assert called["talkback_rms"] > 1000 and abs(called["talkback_hz"] - 440) < 5, called
    log = json.dumps(called["calls"])
    assert called["call"] in log and '"answered"' in log, called["calls"]
    snapshots = pi.c.run("ls", "/var/lib/peercam").stdout
    assert snapshots.strip(), "nothing in the state directory"
    journal = pi.journal(lines=2000)
    # TURN probing: the device's own check of every ICE server through coturn.
    assert re.search(r"ICE server turn:127\.0\.0\.1:3478\?transport=udp works", journal), journal
    assert "status=31/SYS" not in journal and "Traceback" not in journal, journal
    after = pi.show("NRestarts", "MainPID")
    assert after == {"NRestarts": "0", "MainPID": state["MainPID"]}, journal


def test_the_watchdog_restarts_a_frozen_daemon(pi: Pi) -> None:
    before = pi.wait_active("peercam before SIGSTOP")
    pi.c.run("systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", "peercam.service")
    after = pi.wait_active("peercam after the watchdog", timeout=120, NRestarts="1")
    assert after["MainPID"] != before["MainPID"]
    journal = pi.journal(lines=2000)
    assert "Watchdog timeout" in journal, journal
    assert "Current thread" in journal or "Thread 0x" in journal  # faulthandler's stack dump
    assert pi.probe("online")["status"]["state"] == "online"


def test_stop_says_bye_and_leaves_offline_retained(pi: Pi) -> None:
    seen = pi.probe("stop")
    assert seen["bye"]["reason"] == "shutdown", seen
    assert seen["retained_status"]["state"] == "offline", seen
    state = pi.show("ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert state["ActiveState"] == "inactive" and state["Result"] == "success", state
    assert state["ExecMainStatus"] == "0", state


def test_install_again_updates_in_place(pi: Pi) -> None:
    pi.c.sh(
        f"rm {DROPIN} && rmdir {Path(DROPIN).parent}\n"
        'sed -i \'s/^source = "picamera2"/source = "test-pattern"/\' /etc/peercam/peercam.toml\n'
        "systemctl daemon-reload\n"
        # a change to the code, as a `git pull` brings
        "echo '# updated in place' >> /root/peercam/device/__init__.py\n"
    )
    config_before = pi.c.run("sha256sum", "/etc/peercam/peercam.toml").stdout
    pi.c.run("bash", "/root/peercam/scripts/install-pi.sh", "--wheels", "/root/wheels", timeout=600)
    assert pi.c.run("sha256sum", "/etc/peercam/peercam.toml").stdout == config_before
    installed = pi.c.run(
        PROBE_PY, "-c", "import peercam, pathlib; print(pathlib.Path(peercam.__file__).read_text())"
    ).stdout
    assert "# updated in place" in installed
    pi.wait_active("peercam after the second install")
    assert pi.probe("online")["status"]["state"] == "online"


def test_uninstall_and_purge_leave_nothing_behind(pi: Pi) -> None:
    pi.c.run("bash", "/root/peercam/scripts/uninstall-pi.sh", timeout=120)
    assert pi.c.run("systemctl", "is-active", "peercam.service", check=False).stdout.strip() in (
        "inactive",
        "unknown",
    )
    left = pi.files() - pi.baseline
    assert all(p.startswith(("/etc/peercam", "/var/lib/peercam")) for p in left), sorted(left)
    assert "/etc/peercam/peercam.toml" in left  # config and secrets stay without --purge
    pi.c.run("bash", "/root/peercam/scripts/uninstall-pi.sh", "--purge", timeout=120)
    assert sorted(pi.files() ^ pi.baseline) == []
    assert pi.accounts() == pi.baseline_accounts
    units = pi.c.run("systemctl", "list-unit-files", "--no-legend", "peercam*", check=False)
    assert units.stdout.strip() == "", units
    assert pi.show("LoadState") == {"LoadState": "not-found"}
