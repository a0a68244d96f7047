"""A real Home Assistant core for tests: its cached venv, its process, its REST API.

Home Assistant 2025.4 needs Python 3.13, which peercam's own venv is not, so
it lives in a venv of its own, cached OUTSIDE the work tree and keyed by
version (``/var/cache/peercam-test/homeassistant-2025.4.4-py3.13``), so a
machine pays the ~2 minute ``pip install`` once.  The venv is built in a
temporary folder beside it and renamed into place when complete, under a
file lock, so two pytest-xdist workers (or ``scripts/test.sh`` and a test)
never both build it and nobody ever sees half a venv.

``python tests/ha_core.py build`` builds it (``scripts/test.sh`` does, before
pytest, so the install does not count against a test's timeout);
``python tests/ha_core.py where`` prints its folder or why there is none.

``HomeAssistant(workdir, port)`` writes a minimal ``configuration.yaml``,
starts ``hass``, onboards an owner and adds the MQTT integration, all over
the REST API (no UI), as the shared notes on Home Assistant describes.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

HA_VERSION = "2025.4.4"
#: Requirements Home Assistant would otherwise pip-install when it sets the MQTT
#: integration up (its manifest pins paho-mqtt); installed with the venv so a
#: test never waits on (or needs) an install while Home Assistant runs.
HA_EXTRAS = ("paho-mqtt==2.1.0",)
BUILD_TIMEOUT = 1800.0  # seconds; pip on a busy 2-core machine


class HomeAssistantUnavailable(RuntimeError):
    """No Python 3.13 on this machine: the message says so (tests skip with it)."""


def cache_root() -> Path:
    env = os.environ.get("PEERCAM_TEST_CACHE")
    if env:
        return Path(env)
    system = Path("/var/cache/peercam-test")
    if os.geteuid() == 0 or os.access(system, os.W_OK):
        return system
    return Path.home() / ".cache" / "peercam-test"


def find_python313() -> str:
    """A Python 3.13 interpreter, or raise HomeAssistantUnavailable saying where we looked."""
    candidates = [os.environ.get("PEERCAM_PYTHON313", "")]
    candidates += [
        shutil.which("python3.13") or "",
        "/usr/bin/python3.13",
        "/usr/local/bin/python3.13",
    ]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.13*/bin/python3.13"), reverse=True)
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys, venv, ssl, sqlite3; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 13)":
            return candidate
    raise HomeAssistantUnavailable(
        f"Home Assistant {HA_VERSION} needs Python 3.13 (with venv, ssl, sqlite3) and none was "
        "found (looked at $PEERCAM_PYTHON313, python3.13 on PATH, /usr/bin, /usr/local/bin, "
        f"{pyenv_root}/versions/3.13*)"
    )


def venv_dir() -> Path:
    return cache_root() / f"homeassistant-{HA_VERSION}-py3.13"


def hass_binary(venv: Path | None = None) -> Path:
    return (venv or venv_dir()) / "bin" / "hass"


def _complete(venv: Path) -> bool:
    return (venv / ".complete").is_file() and hass_binary(venv).exists()


def ensure_venv(log: Any = None) -> Path:
    """The cached Home Assistant venv, built first if missing (locked, atomic)."""
    venv = venv_dir()
    if _complete(venv):
        return venv
    python = find_python313()
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f".{venv.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits here, then finds it built
        if _complete(venv):
            return venv
        say = log or (lambda text: print(text, file=sys.stderr, flush=True))
        say(f"building Home Assistant {HA_VERSION} venv in {venv} (once per machine, ~2 min)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{venv.name}.", dir=venv.parent))
        try:
            # A venv records its own path in bin/ scripts: build it at its final
            # path's twin is not possible, so build in tmp, then rename, and
            # run everything through ``bin/python -m`` (never the shebangs).
            subprocess.run([python, "-m", "venv", str(tmp)], check=True, timeout=300)
            pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run(
                [*pip, f"homeassistant=={HA_VERSION}", *HA_EXTRAS],
                check=True,
                timeout=BUILD_TIMEOUT,
            )
            # Home Assistant pip-installs what its start-up integrations need (the
            # frontend, ...) at its first start: do that here, inside the build.
            warm = HomeAssistant(tmp / "warm-up", _free_port(), venv=tmp)
            try:
                warm.start(timeout=BUILD_TIMEOUT)
            finally:
                warm.stop()
            shutil.rmtree(tmp / "warm-up", ignore_errors=True)
            tmp.chmod(0o755)  # mkdtemp made it 0700
            (tmp / ".complete").write_text(f"homeassistant=={HA_VERSION}\n{python}\n")
            if venv.exists():  # a broken leftover without .complete
                shutil.rmtree(venv)
            os.rename(tmp, venv)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return venv


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the process -------------------------------------------------------------------------

CONFIGURATION = """\
homeassistant:
  name: peercam test home
  latitude: 0
  longitude: 0
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: DE
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""


class HomeAssistant:
    """One ``hass`` process in ``workdir``, onboarded, with a Bearer token for its API."""

    def __init__(self, workdir: Path, port: int, *, venv: Path | None = None) -> None:
        self.venv = venv or ensure_venv()
        self.workdir = Path(workdir)
        self.config_dir = self.workdir / "config"
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = self.workdir / "hass.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = None
        self.tokens: dict[str, Any] = {}
        self.starts = 0

    # --- life ---

    def start(self, timeout: float = 180.0) -> None:
        """Start hass and wait (bounded) until its HTTP server answers."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        python = self.venv / "bin" / "python"
        with self.log_path.open("ab") as log:
            log.write(f"--- tests/ha_core.py: start #{self.starts + 1}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(python), "-m", "homeassistant", "-c", str(self.config_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"Home Assistant exited with {self.proc.returncode}:\n{self.log_text()[-8000:]}"
                )
            with contextlib.suppress(OSError, urllib.error.URLError):
                # /api/onboarding answers once the http component runs, with or without a token.
                status, _ = self._raw("GET", "/api/onboarding", auth=False)
                if status in (200, 401):
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"Home Assistant did not answer within {timeout:.0f} s:\n"
                    f"{self.log_text()[-8000:]}"
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 60.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.proc = None
        return proc.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # --- HTTP ---

    def _raw(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        form: dict[str, str] | None = None,
        auth: bool = True,
        timeout: float = 30.0,
    ) -> tuple[int, bytes]:
        headers = {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.base + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def api(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, data = self._raw(method, path, body=body, **kw)
        if status >= 400:
            raise AssertionError(f"{method} {path}: HTTP {status}: {data[:500]!r}")
        return json.loads(data) if data else None

    def get_bytes(self, path: str) -> tuple[int, bytes]:
        return self._raw("GET", path)

    # --- set-up over REST ---

    def onboard(self) -> None:
        """Create the owner and get an access token (a fresh config folder only)."""
        client_id = self.base + "/"
        status, data = self._raw(
            "POST",
            "/api/onboarding/users",
            body={
                "client_id": client_id,
                "name": "Test Owner",
                "username": "owner",
                "password": "owner-password-1",
                "language": "en",
            },
            auth=False,
        )
        if status != 200:
            raise AssertionError(f"onboarding failed: HTTP {status} {data[:500]!r}")
        code = json.loads(data)["auth_code"]
        self.token = self._token({"grant_type": "authorization_code", "code": code}, client_id)

    def finish_onboarding(self) -> None:
        """The remaining onboarding steps (location, analytics, integrations): a browser
        opening the frontend then sees the dashboards, not the onboarding wizard."""
        self.api("POST", "/api/onboarding/core_config", {})
        self.api("POST", "/api/onboarding/analytics", {})
        self.api(
            "POST",
            "/api/onboarding/integration",
            {"client_id": self.base + "/", "redirect_uri": self.base + "/?auth_callback=1"},
        )

    def login(self) -> None:
        """A token for the existing owner (after a restart) through the login flow."""
        client_id = self.base + "/"
        flow = self.api(
            "POST",
            "/auth/login_flow",
            {"client_id": client_id, "handler": ["homeassistant", None], "redirect_uri": client_id},
            auth=False,
        )
        result = self.api(
            "POST",
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": client_id, "username": "owner", "password": "owner-password-1"},
            auth=False,
        )
        self.token = self._token(
            {"grant_type": "authorization_code", "code": result["result"]}, client_id
        )

    def _token(self, form: dict[str, str], client_id: str) -> str:
        status, data = self._raw(
            "POST", "/auth/token", form={**form, "client_id": client_id}, auth=False
        )
        if status != 200:
            raise AssertionError(f"token request failed: HTTP {status} {data[:500]!r}")
        self.tokens = dict(json.loads(data))  # with refresh_token (a browser needs it)
        return str(self.tokens["access_token"])

    def add_mqtt(self, port: int, username: str, password: str) -> dict[str, Any]:
        """Add the MQTT integration with HA's provisioned broker user; the config entry."""
        flow = self.api("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        if flow.get("step_id") != "broker":
            raise AssertionError(f"unexpected MQTT flow step: {flow}")
        result = self.api(
            "POST",
            f"/api/config/config_entries/flow/{flow['flow_id']}",
            {"broker": "127.0.0.1", "port": port, "username": username, "password": password},
        )
        if result.get("type") != "create_entry":
            raise AssertionError(f"the MQTT integration was not created: {result}")
        return dict(result)

    # --- reading ---

    def states(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/states"))

    def state(self, entity_id: str) -> dict[str, Any] | None:
        status, data = self._raw("GET", f"/api/states/{entity_id}")
        if status == 404:
            return None
        if status >= 400:
            raise AssertionError(f"GET state {entity_id}: HTTP {status} {data[:300]!r}")
        return dict(json.loads(data))

    def template(self, template: str) -> str:
        status, data = self._raw("POST", "/api/template", body={"template": template})
        if status >= 400:
            raise AssertionError(f"template failed: HTTP {status} {data[:300]!r}")
        return data.decode()

    def press(self, entity_id: str) -> None:
        self.api("POST", "/api/services/button/press", {"entity_id": entity_id})


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "where"
    try:
        if command == "build":
            print(ensure_venv())
        elif command == "where":
            venv = venv_dir()
            print(venv if _complete(venv) else f"(not built yet: {venv})")
        else:
            print("usage: python tests/ha_core.py build|where", file=sys.stderr)
            return 2
    except HomeAssistantUnavailable as exc:
        print(f"skipping the Home Assistant venv: {exc}", file=sys.stderr)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
