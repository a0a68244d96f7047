"""A booted Debian for tests: a cached mmdebstrap rootfs, booted with systemd-nspawn.

``ensure_rootfs()`` builds ``/var/cache/peercam-test/rootfs-<key>`` once per
machine (key: suite, package list and the host's apt sources), atomically
and under a lock, so parallel runs share one build; ``ensure_wheelhouse()``
does the same for the wheels of ``scripts/pi-wheels.sh``.  ``python -m
tests.nspawn prepare`` builds both (scripts/test.sh runs it before pytest, so
a fresh machine's ~90 s mmdebstrap does not count against a test timeout).

``Container`` boots a copy with systemd as PID 1 (flags and pitfalls:
the shared notes on systemd-nspawn): a private network (loopback only),
unified cgroup hierarchy and ``--system-call-filter=bpf`` so that
``DevicePolicy=`` is really enforced; commands run inside with ``nsenter``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
#: What install-pi.sh needs already there (the container cannot reach apt), plus the
#: broker and TURN server of the site, which run inside the container too.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "python3-pip",
    "ca-certificates",
    "alsa-utils",
    "procps",  # kill, for mosquitto.service's ExecReload (Raspberry Pi OS always has it)
    "mosquitto",
    "coturn",
)
FORMAT = 1  # bump when the steps after mmdebstrap change
CACHE = Path(os.environ.get("PEERCAM_TEST_CACHE", "/var/cache/peercam-test"))
COMPLETE = ".peercam-complete"
#: Bookworm's Python and glibc: the wheels the container's venv can use.
TARGET_PYTHON = "3.11"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def missing_parts() -> str | None:
    """Why this machine cannot boot a container (None when it can)."""
    if os.geteuid() != 0:
        return "booting a container with systemd-nspawn needs root"
    for tool, package in (
        ("systemd-nspawn", "systemd-container"),
        ("mmdebstrap", "mmdebstrap"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install {package})"
    if cgroup2_mount() is None:
        return "no cgroup2 file system mounted (BPF device control needs it)"
    return None


def cgroup2_mount() -> Path | None:
    """Where the cgroup2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid hosts)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" - ", 1)
            if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
                return Path(fields[0].split()[4])
    return None


def host_sources() -> list[Path]:
    """The host's apt source files for Debian (third-party repositories left out)."""
    candidates = [Path("/etc/apt/sources.list")]
    folder = Path("/etc/apt/sources.list.d")
    if folder.is_dir():
        candidates += sorted(folder.glob("*.list")) + sorted(folder.glob("*.sources"))
    found = []
    for path in candidates:
        with contextlib.suppress(OSError):
            text = path.read_text()
            lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
            body = "\n".join(lines)
            if SUITE in body and "/debian" in body:
                found.append(path)
    return found


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def rootfs_key() -> str:
    sources = [p.read_text() for p in host_sources()]
    return _key(FORMAT, SUITE, PACKAGES, sources, platform.machine())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(text: str) -> None:
    print(f"tests.nspawn: {text}", file=sys.stderr, flush=True)


def ensure_rootfs() -> Path:
    """The cached rootfs (built now if this machine has none); never modify it: copy it."""
    key = rootfs_key()
    target = CACHE / f"rootfs-{key}"
    with _locked(CACHE / f"rootfs-{key}.lock"):
        if (target / COMPLETE).is_file():
            return target
        sources = host_sources()
        if not sources:
            raise RuntimeError(f"no Debian {SUITE} apt sources on this machine to build from")
        partial = CACHE / f".rootfs-{key}.partial"
        for stale in (partial, target):
            if stale.exists():
                shutil.rmtree(stale)
        started = time.monotonic()
        _say(f"building the {SUITE} rootfs {target} (once per machine)")
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            # the host may use a snapshot mirror whose Release files have expired
            '--aptopt=Acquire::Check-Valid-Until "false"',
            SUITE,
            str(partial),
            *map(str, sources),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed ({done.returncode}):\n{done.stderr[-4000:]}")
        (partial / "etc" / "hostname").write_text("peercam-test\n")
        (partial / COMPLETE).write_text(f"{' '.join(cmd)}\n")
        os.rename(partial, target)
        _say(f"rootfs built in {time.monotonic() - started:.0f} s")
        return target


def wheelhouse_key() -> str:
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = data["build-system"]["requires"] + data["project"]["dependencies"]
    script = (ROOT / "scripts" / "pi-wheels.sh").read_text()
    return _key(reqs, script, TARGET_PYTHON, platform.machine())


def ensure_wheelhouse() -> Path:
    """Wheels for the container's Python, made with scripts/pi-wheels.sh (cached)."""
    key = wheelhouse_key()
    target = CACHE / f"wheels-{key}"
    with _locked(CACHE / f"wheels-{key}.lock"):
        if (target / COMPLETE).is_file():
            return target
        partial = CACHE / f".wheels-{key}.partial"
        for stale in (partial, target):
            if stale.exists():
                shutil.rmtree(stale)
        cmd = [
            "bash",
            str(ROOT / "scripts" / "pi-wheels.sh"),
            "--platform",
            f"manylinux_2_36_{platform.machine()}",
            "--python-version",
            TARGET_PYTHON,
            str(partial),
        ]
        env = {**os.environ, "PYTHON": sys.executable}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"pi-wheels.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
        (partial / COMPLETE).write_text(" ".join(cmd) + "\n")
        os.rename(partial, target)
        return target


@contextlib.contextmanager
def private_root(source: Path, work: Path) -> Iterator[Path]:
    """A writable root over the cached rootfs, removed afterwards.

    An overlay (the cache stays the read-only lower layer; a run writes a few hundred MB
    into ``work/upper``), or a full copy where overlayfs cannot be mounted.
    """
    merged = work / "root"
    upper, scratch = work / "upper", work / "overlay-work"
    for folder in (merged, upper, scratch):
        folder.mkdir(parents=True)
    options = f"lowerdir={source},upperdir={upper},workdir={scratch}"
    mounted = (
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
            capture_output=True,
            timeout=60,
        ).returncode
        == 0
    )
    if not mounted:
        _say("overlayfs unavailable: copying the rootfs")
        subprocess.run(
            ["cp", "-a", "--reflink=auto", f"{source}/.", str(merged)], check=True, timeout=600
        )
    try:
        yield merged
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(merged)], check=False, timeout=60)
        for folder in (merged, upper, scratch):
            shutil.rmtree(folder, ignore_errors=True)


class Container:
    """One booted systemd-nspawn container on a rootfs folder."""

    def __init__(self, root: Path, console_log: Path, binds: Sequence[str] = ()) -> None:
        """``binds``: read-only bind mounts, ``HOST:CONTAINER`` (``--bind-ro=``)."""
        self.root = root
        self.binds = list(binds)
        self.console_log = console_log
        self.proc: subprocess.Popen[bytes] | None = None
        self.cgroup: Path | None = None
        self.pid1: int | None = None
        self.boots = 0

    def boot(self, timeout: float = 90) -> str:
        """Start it and wait for the boot to finish; returns ``is-system-running``'s word."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        self.boots += 1
        # --keep-unit puts the container's cgroups (payload/...) below nspawn's own cgroup:
        # give every boot a fresh one, removed after it, or a later boot would inherit the
        # cgroups -- and the BPF device programs attached to them -- of an earlier container.
        mount = cgroup2_mount()
        assert mount is not None
        self.cgroup = mount / f"peercam-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.cgroup.mkdir()
        with self.console_log.open("ab") as log:
            log.write(f"\n===== boot {self.boots} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [
                    "sh",
                    "-c",
                    'echo $$ > "$0/cgroup.procs" && shift && exec "$@"',
                    str(self.cgroup),
                    "--",
                    "systemd-nspawn",
                    "--boot",
                    f"--directory={self.root}",
                    "--machine=peercam-test",
                    "--register=no",
                    "--keep-unit",
                    "--console=read-only",
                    "--private-network",
                    "--system-call-filter=bpf",
                    *(f"--bind-ro={bind}" for bind in self.binds),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        self.pid1 = None
        while self.pid1 is None:
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no systemd in the container within {timeout:g} s")
            self.pid1 = self._find_pid1()
            time.sleep(0.1)
        while True:
            state = self.run(
                "systemctl", "is-system-running", "--wait", check=False, timeout=timeout
            ).stdout.strip()
            if state in ("running", "degraded"):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"boot did not finish: {state!r}\n{self.log()}")
            time.sleep(0.2)

    def _find_pid1(self) -> int | None:
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                if comm == "systemd":
                    return int(pid)
        return None

    def log(self) -> str:
        return self.console_log.read_text(errors="replace")[-20_000:]

    def run(
        self,
        *cmd: str,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside (every namespace of PID 1, a clean environment, as root)."""
        assert self.pid1 is not None, "not booted"
        base = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
        environment = [f"{k}={v}" for k, v in {**base, **(env or {})}.items()]
        full = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", *environment, *cmd]
        done = subprocess.run(
            full, capture_output=True, text=True, timeout=timeout, input=input, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"in the container: {' '.join(cmd)} exited {done.returncode}\n"
                f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-6000:]}"
            )
        return done

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return self.run("bash", "-euo", "pipefail", "-c", script, **kwargs)  # type: ignore[arg-type]

    def host_cgroup(self, unit: str) -> Path:
        """The host path of ``unit``'s cgroup inside the container."""
        assert self.pid1 is not None
        lines = Path(f"/proc/{self.pid1}/cgroup").read_text().splitlines()
        unified = next(line for line in lines if line.startswith("0::"))
        mount = cgroup2_mount()
        assert mount is not None
        init_scope = Path(str(mount) + unified.split("::", 1)[1])
        return init_scope.parent / "system.slice" / unit

    def shutdown(self, *, reboot: bool = False, timeout: float = 60) -> int:
        """``systemctl reboot``/``poweroff`` inside; returns nspawn's exit code."""
        assert self.proc is not None
        verb = "reboot" if reboot else "poweroff"
        self.run("systemctl", verb, "--no-block", timeout=30)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{verb} did not finish within {timeout:g} s") from None
        self._remove_cgroup()
        return rc

    def kill(self) -> None:
        """Stop it however it is (teardown): SIGTERM halts cleanly, SIGKILL after 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._remove_cgroup()

    def _remove_cgroup(self) -> None:
        """rmdir the boot's cgroup tree, deepest first (its processes are gone by now)."""
        if self.cgroup is None or not self.cgroup.exists():
            return
        deadline = time.monotonic() + 10
        while self.cgroup.exists():
            for folder, _, _ in sorted(os.walk(self.cgroup), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            if time.monotonic() > deadline:
                _say(f"could not remove {self.cgroup} (processes left?)")
                return
            time.sleep(0.1)


def prepare(argv: Sequence[str]) -> int:
    why = missing_parts()
    if why is not None:
        _say(f"not preparing the booted-systemd test: {why}")
        return 0
    started = time.monotonic()
    rootfs = ensure_rootfs()
    wheels = ensure_wheelhouse()
    _say(f"ready in {time.monotonic() - started:.1f} s: {rootfs}, {wheels}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["prepare"]:
        print("usage: python -m tests.nspawn prepare", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(prepare(sys.argv[2:]))
