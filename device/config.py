"""The daemon's configuration: one TOML file, validated once at load.

Every component receives only its own section.  Errors name the file, the
key, what is wrong and what is allowed, because the person reading them is
on a headless Pi looking at ``journalctl``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import tomllib
import zlib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)

MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


class ConfigError(Exception):
    """The configuration cannot be used; the message says why and where."""


class _Section(BaseModel):
    # Unknown keys are almost always typos ("bitrat = ..."): refuse them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceConfig(_Section):
    id: Annotated[str, Field(pattern=ID_PATTERN)] = "peercam"
    name: Annotated[str, Field(min_length=1, max_length=128)] = "peercam"


class MqttConfig(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    username: str = ""
    password_file: str = ""
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_/-]{1,64}$")] = "peercam"
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    #: Path to a CA bundle for mqtts/wss brokers with a private CA ("" = system store).
    ca_file: str = ""
    #: Seconds between republishing the retained status even when nothing changed
    #: (a broker that lost its retained messages gets it back); 0 = only on changes.
    status_refresh: Annotated[float, Field(ge=0, le=86400)] = 300.0

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in MQTT_SCHEMES:
            raise ValueError(
                f"scheme {parts.scheme!r} is not supported; use one of "
                + ", ".join(f"{s}://" for s in MQTT_SCHEMES)
            )
        if not parts.hostname:
            raise ValueError("no host name in the URL (expected e.g. mqtt://broker.local:1883)")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port in the URL: {exc}") from None
        return url

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, prefix: str) -> str:
        if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
            raise ValueError("must not start or end with '/' nor contain '//'")
        return prefix

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or MQTT_SCHEMES[parts.scheme]

    @property
    def ws_path(self) -> str:
        return urlsplit(self.url).path or "/mqtt"

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "wss")

    @property
    def websockets(self) -> bool:
        return self.scheme in ("ws", "wss")


class CameraConfig(_Section):
    source: Literal["test-pattern", "picamera2"] = "test-pattern"
    width: Annotated[int, Field(ge=160, le=3840, multiple_of=2)] = 1280
    height: Annotated[int, Field(ge=120, le=2160, multiple_of=2)] = 720
    fps: Annotated[int, Field(ge=1, le=120)] = 30
    bitrate: Annotated[int, Field(ge=100_000, le=25_000_000)] = 2_000_000
    keyframe_interval: Annotated[int, Field(ge=1, le=600)] = 60
    #: Seconds the camera keeps running after the last viewer left.
    idle_stop: Annotated[float, Field(ge=0, le=3600)] = 5.0
    #: Test pattern only: "noise" adds sensor-like grain so the full bitrate is used.
    #: "doorway" is the bars without the bouncing box: a still scene where only a
    #: scripted visitor (``[motion] visitor_every`` or SIGUSR2) moves, for motion tests.
    pattern: Literal["bars", "noise", "doorway"] = "bars"
    #: picamera2 only: which camera (``rpicam-hello --list-cameras`` order), and
    #: the picture's orientation (the Pi's ISP flips; it cannot turn by 90°).
    index: Annotated[int, Field(ge=0, le=7)] = 0
    hflip: bool = False
    vflip: bool = False
    rotation: int = 0
    #: Lowest bitrate the encoder may go down to when a viewer's bandwidth
    #: estimate (REMB) is low; ``bitrate`` is the highest (picamera2 only).
    min_bitrate: Annotated[int, Field(ge=50_000, le=25_000_000)] = 300_000
    #: A second, smaller H.264 stream for viewers whose link cannot take the
    #: main one (picamera2: a second encoder on the ``lores`` stream).  None =
    #: the default: on, except with a software encoder (Pi 5), where it is off.
    substream: bool | None = None
    substream_width: Annotated[int, Field(ge=160, le=1920, multiple_of=2)] = 640
    substream_height: Annotated[int, Field(ge=120, le=1080, multiple_of=2)] = 360
    substream_bitrate: Annotated[int, Field(ge=50_000, le=5_000_000)] = 400_000
    #: Frames between the substream's own IDRs (0 = the same as keyframe_interval).
    substream_keyframe_interval: Annotated[int, Field(ge=0, le=600)] = 0
    #: Seconds an ``auto`` viewer stays on the substream before trying the main
    #: stream again (doubling after each failed try, up to 12 times this).
    substream_probe: Annotated[float, Field(ge=1, le=600)] = 10.0

    @field_validator("rotation")
    @classmethod
    def _check_rotation(cls, rotation: int) -> int:
        if rotation not in (0, 180):
            raise ValueError(
                "allowed: 0 or 180 (the Pi's ISP can flip but not transpose: mount the "
                "camera the other way, or use hflip/vflip)"
            )
        return rotation

    @model_validator(mode="after")
    def _check_min_bitrate(self) -> CameraConfig:
        if "min_bitrate" in self.model_fields_set and self.min_bitrate > self.bitrate:
            raise ValueError(
                f"min_bitrate ({self.min_bitrate}) is above bitrate ({self.bitrate}); "
                "bitrate is the highest the encoder uses"
            )
        return self

    @model_validator(mode="after")
    def _check_substream(self) -> CameraConfig:
        if self.substream is not False and not self.substream_fits:
            if self.substream is None and not (
                {"substream_width", "substream_height"} & self.model_fields_set
            ):
                return self  # the default 640x360 on a smaller picture: no substream
            raise ValueError(
                f"substream {self.substream_width}x{self.substream_height} is larger than the "
                f"picture ({self.width}x{self.height}); the substream must be smaller "
                "(picamera2's lores stream cannot exceed main)"
            )
        return self

    @property
    def substream_fits(self) -> bool:
        return self.substream_width <= self.width and self.substream_height <= self.height

    def substream_wanted(self, software_encoder: bool) -> tuple[bool, str | None]:
        """Whether to run the substream, and a warning to log/show when it is off by default."""
        if self.substream is False or not self.substream_fits:
            return False, None
        if self.substream is None and software_encoder:
            return False, (
                "substream off: this Pi encodes in software (Pi 5) and a second encode costs "
                "CPU; slow viewers get the main stream. Set [camera] substream = true to run it"
            )
        return True, None

    @property
    def substream_iperiod(self) -> int:
        """The substream's IDR interval in frames."""
        return self.substream_keyframe_interval or self.keyframe_interval

    @property
    def lowest_bitrate(self) -> int:
        """The floor for REMB-driven bitrate (never above ``bitrate``)."""
        return min(self.min_bitrate, self.bitrate)


class AudioConfig(_Section):
    source: str = "none"

    @field_validator("source")
    @classmethod
    def _check_source(cls, source: str) -> str:
        if source in ("none", "test-tone") or (source.startswith("alsa:") and len(source) > 5):
            return source
        raise ValueError("allowed: 'none', 'test-tone' or 'alsa:<device>' (e.g. 'alsa:plughw:1,0')")


ICE_URL_RE = re.compile(r"^(stun|stuns|turn|turns):[^\s]+$")


class WebRtcConfig(_Section):
    max_viewers: Annotated[int, Field(ge=1, le=64)] = 4
    #: Sessions one viewer id may hold at once; the oldest is replaced beyond it.
    max_sessions_per_viewer: Annotated[int, Field(ge=1, le=16)] = 4
    ice_servers: list[str] = []
    turn_secret_file: str = ""
    #: Lifetime of minted TURN credentials, seconds.
    ice_ttl: Annotated[int, Field(ge=60, le=7 * 86400)] = 86400
    #: Networks (CIDR) whose addresses ICE may offer as host candidates.
    #: Empty: every non-loopback address of the machine (aiortc's default).
    host_networks: list[str] = []
    #: Seconds a session may take from answer to connected before it is failed.
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    #: Sessions negotiating (offer received, not yet connected) at once, all viewers
    #: together; a further offer gets ``busy`` until one connects, fails or times out.
    max_handshakes: Annotated[int, Field(ge=1, le=64)] = 8

    @field_validator("ice_servers")
    @classmethod
    def _check_ice(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not ICE_URL_RE.fullmatch(url):
                raise ValueError(
                    f"{url!r} is not a STUN/TURN URL; expected e.g. 'stun:host:3478', "
                    "'turn:host:3478?transport=udp' or 'turns:host:5349'"
                )
        return urls

    @model_validator(mode="after")
    def _turn_needs_a_secret(self) -> WebRtcConfig:
        turn = [u for u in self.ice_servers if u.startswith(("turn:", "turns:"))]
        if turn and not self.turn_secret_file:
            raise ValueError(
                f"TURN URLs ({', '.join(turn)}) need turn_secret_file (coturn's "
                "static-auth-secret): without credentials no browser can use them"
            )
        return self

    @field_validator("host_networks")
    @classmethod
    def _check_networks(cls, nets: list[str]) -> list[str]:
        for net in nets:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(
                    f"{net!r} is not a network; expected CIDR such as '192.168.1.0/24'"
                ) from None
        return nets


#: The default wiring (BCM numbers). hardware/README.md and docs refer to these.
DEFAULT_CALL_BUTTON_PIN = 17
DEFAULT_LED_PIN = 27


class GpioConfig(_Section):
    #: Turn GPIO off entirely (a Pi used as a camera only). 0 for a pin also disables it.
    enabled: bool = True
    #: BCM pin of the momentary call button (pull-up, active low, to ground).
    call_button: Annotated[int, Field(ge=0, le=27)] = DEFAULT_CALL_BUTTON_PIN
    #: BCM pin of the status LED (through a resistor to ground); 0 = no LED.
    led: Annotated[int, Field(ge=0, le=27)] = DEFAULT_LED_PIN
    #: Drive the LED with PWM (it breathes while ringing instead of blinking).
    led_pwm: bool = False
    #: BCM pin of the door-strike relay; 0 = no door strike.
    door_pin: Annotated[int, Field(ge=0, le=27)] = 0
    #: Seconds the relay is held when a viewer opens the door.
    door_pulse: Annotated[float, Field(gt=0, le=30)] = 1.0
    #: Viewer ids allowed to open the door (only while in a call with the device).
    door_openers: list[Annotated[str, Field(pattern=ID_PATTERN)]] = []
    #: Seconds the button must stay down before it is reported stuck.
    stuck_after: Annotated[float, Field(ge=1, le=3600)] = 10.0

    @model_validator(mode="after")
    def _distinct_pins(self) -> GpioConfig:
        used = [(k, getattr(self, k)) for k in ("call_button", "led", "door_pin")]
        pins = [pin for _, pin in used if pin]
        if len(pins) != len(set(pins)):
            taken = ", ".join(f"{k}={pin}" for k, pin in used if pin)
            raise ValueError(f"two functions share one BCM pin ({taken})")
        return self


class CallConfig(_Section):
    #: Seconds a call rings before it is missed.
    ring_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    #: What the button does while a call is answered: nothing, or end the call.
    press_during_call: Literal["ignore", "hangup"] = "ignore"
    #: Presses closer together than this (seconds) count as one (bounce, impatient visitors).
    min_press_interval: Annotated[float, Field(ge=0, le=60)] = 2.0
    #: Calls kept in the call log (with their snapshots).
    history: Annotated[int, Field(ge=1, le=100)] = 10
    #: Folder that keeps the call log across restarts ("" = memory only).
    state_dir: str = ""


class ReplyConfig(_Section):
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    text: Annotated[str, Field(min_length=1, max_length=200)]
    #: WAV file played on the speaker ("" = a chime, until you record one).
    file: str = ""


DEFAULT_REPLIES = [
    ReplyConfig(id="at-door", text="Please leave it at the door"),
    ReplyConfig(id="coming", text="Be right there"),
]


class TalkbackConfig(_Section):
    #: Where viewers' voices play: "none", "alsa:<device>" (e.g. "alsa:plughw:1,0"),
    #: or "wav:<path>" (records to a file; for tests and for checking a set-up).
    sink: str = "none"
    #: Quick replies a viewer can play without talking.
    replies: list[ReplyConfig] = DEFAULT_REPLIES

    @field_validator("sink")
    @classmethod
    def _check_sink(cls, sink: str) -> str:
        kind, _, target = sink.partition(":")
        if sink == "none" or (kind in ("alsa", "wav") and target):
            return sink
        raise ValueError(
            "allowed: 'none', 'alsa:<device>' (e.g. 'alsa:plughw:1,0') or 'wav:<path>'"
        )

    @field_validator("replies")
    @classmethod
    def _unique_replies(cls, replies: list[ReplyConfig]) -> list[ReplyConfig]:
        ids = [r.id for r in replies]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"reply ids must be unique (repeated: {', '.join(dupes)})")
        return replies


class MotionZone(_Section):
    """A rectangle of the picture, in fractions of its width and height (0..1)."""

    x: Annotated[float, Field(ge=0, lt=1)] = 0.0
    y: Annotated[float, Field(ge=0, lt=1)] = 0.0
    w: Annotated[float, Field(gt=0, le=1)] = 1.0
    h: Annotated[float, Field(gt=0, le=1)] = 1.0

    @model_validator(mode="after")
    def _inside(self) -> MotionZone:
        if self.x + self.w > 1.0001 or self.y + self.h > 1.0001:
            raise ValueError("the zone reaches outside the picture (x + w and y + h must be <= 1)")
        return self


class MotionConfig(_Section):
    """Motion detection on a small luma picture (the Pi's lores stream).

    On purpose off by default: it keeps the camera (and the encoder) running
    while nobody watches, which costs power and warms the Pi.
    """

    enabled: bool = False
    #: Luma change (0..255) for a pixel of the small picture to count as moved.
    threshold: Annotated[int, Field(ge=1, le=255)] = 25
    #: Percent of the watched pixels that must move for motion (lower = more sensitive).
    sensitivity: Annotated[float, Field(gt=0, le=100)] = 1.0
    #: Seconds from one motion event's start to the next at the earliest.
    min_interval: Annotated[float, Field(ge=0, le=86400)] = 30.0
    #: Seconds without movement that end a motion event.
    quiet: Annotated[float, Field(gt=0, le=600)] = 5.0
    #: Small pictures analysed per second.
    fps: Annotated[int, Field(ge=1, le=30)] = 5
    #: Width of the analysed picture in pixels (height follows the aspect ratio).
    width: Annotated[int, Field(ge=32, le=640, multiple_of=2)] = 160
    #: Watched rectangles; empty = the whole picture.
    zones: list[MotionZone] = []
    #: Test pattern and fake camera only: a scripted visitor walks through every
    #: N seconds (0 = only on SIGUSR2 with --fake-hardware).
    visitor_every: Annotated[float, Field(ge=0, le=86400)] = 0.0


class RecordingConfig(_Section):
    """Event clips with pre-roll: encoded frames remuxed into MP4, never re-encoded."""

    enabled: bool = False
    #: Folder of the clips (created if missing); an SD card wears, a USB disk is better.
    dir: str = "/var/lib/peercam/clips"
    #: Seconds before the event kept in memory; > 0 keeps the camera running while
    #: nobody watches (power, heat), as motion detection does.
    preroll: Annotated[float, Field(ge=0, le=30)] = 5.0
    #: Seconds recorded after the event (extended by further events).
    postroll: Annotated[float, Field(ge=1, le=300)] = 10.0
    #: Longest clip in seconds, pre-roll included.
    max_clip: Annotated[float, Field(ge=5, le=900)] = 60.0
    #: Cap on all clips together in MiB; the oldest are deleted first.
    max_total_mb: Annotated[float, Field(gt=0, le=10_000_000)] = 1024.0
    #: Clips older than this many days are deleted (0 = no age limit).
    max_age_days: Annotated[float, Field(ge=0, le=36500)] = 30.0
    #: Free space (MiB) the disk must keep; below it recording pauses with a fault.
    min_free_mb: Annotated[float, Field(ge=0, le=1_000_000)] = 16.0
    #: Entries in the retained ``clips`` history.
    history: Annotated[int, Field(ge=1, le=200)] = 50
    #: Clips played back at once, all viewers together (each holds its clip in memory).
    max_playbacks: Annotated[int, Field(ge=0, le=16)] = 2
    #: Viewers who may delete clips (others get ``unauthorized``).
    deleters: list[Annotated[str, Field(pattern=ID_PATTERN)]] = []

    @model_validator(mode="after")
    def _fits(self) -> RecordingConfig:
        if self.preroll + self.postroll > self.max_clip:
            raise ValueError(
                f"preroll + postroll ({self.preroll + self.postroll:g} s) is longer than "
                f"max_clip ({self.max_clip:g} s)"
            )
        return self


NOTIFY_EVENTS = ("ring", "missed", "motion")


class NotifyConfig(_Section):
    """Notifications that reach people with no dashboard open (docs/notifications.md)."""

    #: Apprise URLs (ntfy://, tgram://, pover://, gotify://, mailto://, json://, ...).
    urls: list[Annotated[str, Field(min_length=3, max_length=2048)]] = []
    #: A file with more Apprise URLs, one a line (for URLs that carry tokens or
    #: passwords; keep it 0600). Lines starting with '#' are comments.
    urls_file: str = ""
    #: What to notify: "ring" (the button), "missed" (nobody answered), "motion"
    #: (each motion start, once per visit: needs [motion] enabled).
    events: list[Literal["ring", "missed", "motion"]] = ["ring", "missed"]
    #: The dashboard's address as people open it (https://door.example/); a
    #: notification links to that device's page. "" = no link.
    dashboard_url: str = ""
    #: Seconds a ring's notification waits for the snapshot before it goes without one.
    snapshot_wait: Annotated[float, Field(ge=0, le=10)] = 2.0
    #: Seconds one send may take (connect + answer) before it counts as failed.
    timeout: Annotated[float, Field(gt=0, le=60)] = 8.0
    #: Web Push to dashboards that asked for it ("notify me on this device").
    web_push: bool = True
    #: Contact for push services (a VAPID claim): "mailto:you@example.org" or an https URL.
    push_contact: str = "mailto:peercam@localhost"
    #: The VAPID private key (PEM). "" = ``vapid.pem`` in [call] state_dir, made at first start.
    vapid_key_file: str = ""
    #: Push subscriptions one viewer may hold (browsers/phones); the oldest is replaced beyond it.
    max_push_per_viewer: Annotated[int, Field(ge=1, le=16)] = 4
    #: Viewers granted this device, one a line (``peercam provision export`` writes
    #: it into the bundle). When set, subscriptions of viewers no longer listed are
    #: dropped (revoked or removed viewers). "" = no check.
    viewers_file: str = ""

    @field_validator("dashboard_url")
    @classmethod
    def _check_dashboard_url(cls, url: str) -> str:
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("expected an http:// or https:// address, e.g. https://door.example/")
        return url

    @field_validator("push_contact")
    @classmethod
    def _check_contact(cls, contact: str) -> str:
        if not contact.startswith(("mailto:", "https://")):
            raise ValueError(
                "push services want 'mailto:you@example.org' or an https:// URL (VAPID 'sub')"
            )
        return contact


class RelayConfig(_Section):
    """Publishing once to an SFU (Janus VideoRoom) when viewers outgrow peer-to-peer."""

    #: "off": peer-to-peer only.  "janus": publish to a Janus VideoRoom.
    mode: Literal["off", "janus"] = "off"
    #: Janus's WebSocket API as the device reaches it, e.g. "ws://broker.local:8188".
    url: str = ""
    #: Janus's WebSocket API as viewers reach it (browsers on https need wss://); "" = url.
    viewer_url: str = ""
    #: The VideoRoom; 0 = one derived from the device id (stable, shown in status).
    room: Annotated[int, Field(ge=0, le=2**53)] = 0
    #: Create the room (H.264 only) when Janus does not have it.
    create_room: bool = True
    #: The room's bitrate cap (bit/s) for Janus's REMB; 0 = [camera] bitrate.
    bitrate: Annotated[int, Field(ge=0, le=25_000_000)] = 0
    #: Files holding Janus's api_secret, the room's secret (to create it) and pin (to join).
    api_secret_file: str = ""
    room_secret_file: str = ""
    room_pin_file: str = ""
    #: Viewers served peer-to-peer before the rest are sent to the SFU.
    p2p_viewers: Annotated[int, Field(ge=0, le=64)] = 2
    #: "overflow": beyond p2p_viewers.  "always": every watching viewer goes through the SFU
    #: (a viewer answering a call is always served peer-to-peer: talkback needs the device).
    policy: Literal["overflow", "always"] = "overflow"
    #: "on-demand": publish only while relayed viewers exist.  "always": keep publishing.
    publish: Literal["on-demand", "always"] = "on-demand"
    #: Seconds publishing goes on after the last relayed viewer left (on-demand).
    linger: Annotated[float, Field(ge=0, le=3600)] = 15.0
    #: Seconds a relayed viewer's claim lasts; viewers renew it with hello every third of it.
    lease: Annotated[float, Field(ge=15, le=3600)] = 90.0
    #: Longest wait between republishing attempts while Janus is down.
    max_backoff: Annotated[float, Field(ge=1, le=600)] = 30.0

    @field_validator("url", "viewer_url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not url:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(
                "expected Janus's WebSocket API, e.g. 'ws://broker.local:8188' or "
                "'wss://broker.example.com/janus'"
            )
        return url

    @model_validator(mode="after")
    def _janus_needs_url(self) -> RelayConfig:
        if self.mode == "janus" and not self.url:
            raise ValueError(
                "mode = \"janus\" needs url (Janus's WebSocket API, e.g. 'ws://broker.local:8188')"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def room_for(self, device_id: str) -> int:
        """The configured room, or a stable one derived from the device id."""
        if self.room:
            return self.room
        return 100_000 + zlib.crc32(device_id.encode()) % 900_000_000


class DiagnosticsConfig(_Section):
    #: Seconds between "resources: rss_kib=... fds=... tasks=..." log lines (0 = never).
    resources_every: Annotated[float, Field(ge=0, le=86400)] = 3600.0


class HomeAssistantConfig(_Section):
    """Home Assistant MQTT discovery (docs/home-assistant.md)."""

    #: Publish discovery configs so the device appears in Home Assistant by itself.
    #: Off: configs this device published before are removed (empty retained messages).
    enabled: bool = False
    #: Home Assistant's discovery prefix (its MQTT integration's setting).
    discovery_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "homeassistant"
    #: Home Assistant's MQTT user name: its commands (the "open door" button) arrive on
    #: ``{prefix}/{device}/in/{user}``, and ``[gpio] door_openers`` may list it.
    user: Annotated[str, Field(pattern=ID_PATTERN)] = "homeassistant"
    #: The dashboard's address, shown in Home Assistant as the device's link ("" = none).
    dashboard_url: str = ""

    @field_validator("dashboard_url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("expected an http:// or https:// address, e.g. https://cam.example")
        return url


class Config(_Section):
    device: DeviceConfig = DeviceConfig()
    mqtt: MqttConfig = MqttConfig()
    camera: CameraConfig = CameraConfig()
    audio: AudioConfig = AudioConfig()
    webrtc: WebRtcConfig = WebRtcConfig()
    gpio: GpioConfig = GpioConfig()
    call: CallConfig = CallConfig()
    talkback: TalkbackConfig = TalkbackConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    motion: MotionConfig = MotionConfig()
    recording: RecordingConfig = RecordingConfig()
    notify: NotifyConfig = NotifyConfig()
    homeassistant: HomeAssistantConfig = HomeAssistantConfig()
    relay: RelayConfig = RelayConfig()
    #: The file this came from (for messages); not a TOML key.
    source_path: Annotated[str, Field(exclude=True)] = ""

    @model_validator(mode="after")
    def _username_defaults_to_id(self) -> Config:
        if not self.mqtt.username:
            object.__setattr__(
                self, "mqtt", self.mqtt.model_copy(update={"username": self.device.id})
            )
        return self

    def read_mqtt_password(self) -> str | None:
        return _read_secret(self.mqtt.password_file, "mqtt.password_file", self.source_path)

    def read_notify_urls(self) -> list[str]:
        """[notify] urls plus the lines of urls_file (ConfigError when it cannot be read)."""
        urls = list(self.notify.urls)
        text = _read_secret(self.notify.urls_file, "notify.urls_file", self.source_path)
        for line in (text or "").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                urls.append(line)
        return urls

    def read_relay_secret(self, key: str) -> str | None:
        """``[relay] <key>`` (api_secret_file, room_secret_file, room_pin_file) read now."""
        return _read_secret(getattr(self.relay, key), f"relay.{key}", self.source_path)

    def read_turn_secret(self) -> str | None:
        return _read_secret(
            self.webrtc.turn_secret_file, "webrtc.turn_secret_file", self.source_path
        )


def _read_secret(path: str, key: str, config_path: str) -> str | None:
    if not path:
        return None
    where = f"{config_path}: " if config_path else ""
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}[{key}] cannot read {path!r}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{where}[{key}] the file {path!r} is empty")
    return value


def _section_keys() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    for name, field in Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, _Section):
            sections[name] = list(model.model_fields)
    return sections


def _known_key_hint(loc: list[str]) -> str:
    """Name the key the user most likely meant, for an unknown key at ``loc``."""
    fallback = " (check the spelling; peercam.example.toml lists every key)"
    sections = _section_keys()
    if len(loc) == 2 and loc[0] in sections:
        close = difflib.get_close_matches(loc[1], sections[loc[0]], n=1, cutoff=0.6)
        return f" (did you mean {close[0]}?)" if close else fallback
    if len(loc) != 1:
        return fallback
    key = loc[0]
    homes = [section for section, keys in sections.items() if key in keys]
    if homes:
        return f" at the top level (it belongs in [{homes[0]}])"
    head, _, tail = key.partition("_")
    if tail and tail in sections.get(head, []):
        return f" (did you mean {tail} in [{head}]?)"
    close = difflib.get_close_matches(key, list(sections), n=1, cutoff=0.6)
    if close:
        return f" (did you mean the section [{close[0]}]?)"
    return fallback


def _format_errors(path: str, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if len(loc) >= 2:
            where = f"[{loc[0]}] {'.'.join(loc[1:])}"
        elif loc:
            where = f"[{loc[0]}]" if err["type"] != "extra_forbidden" else loc[0]
        else:
            where = "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _known_key_hint(loc)
        elif err["type"] == "string_pattern_mismatch" and loc[-1:] == ["id"]:
            msg = (
                "must be 1-64 lower-case letters, digits, '-' or '_', "
                "starting with a letter or digit"
            )
        else:
            msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        shown = "" if isinstance(given, dict) or err["type"] == "missing" else f" (got {given!r})"
        lines.append(f"  {where}: {msg}{shown}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], *, source_path: str = "<config>") -> Config:
    try:
        return Config.model_validate({**data, "source_path": source_path})
    except ValidationError as exc:
        raise ConfigError(_format_errors(source_path, exc)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file, or raise ConfigError saying precisely why not."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create one from peercam.example.toml)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "source_path" in data:
        raise ConfigError(f"{path}: source_path: unknown key")
    return config_from_dict(data, source_path=str(path))
