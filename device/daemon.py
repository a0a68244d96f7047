"""The daemon: wires config, sources, hubs, signaling and the MQTT link together."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from . import __version__
from .call_log import CallLog
from .calls import CallHooks, CallManager, CallState
from .config import Config
from .gpio import GpioPanel, mock_pin_factory, open_panel
from .homeassistant import HomeAssistantBridge, discovery_device
from .homeassistant import describe as describe_homeassistant
from .hub import NO_IDR_ON_JOIN_ENV, MediaHub
from .ice import IceServers, restrict_host_addresses
from .ice_health import IceHealth
from .motion import MotionDetector
from .mqtt_link import LastWill, MqttLink
from .notify import Notifications
from .protocol import ByeReason, ErrorCode, ProtocolError, Topics, encode
from .quality import QualityPolicy
from .recording.recorder import Recorder
from .relay.director import RelayDirector
from .relay.janus import JanusPublisher, JanusTarget
from .resources import Counts, ResourceReporter, consumers_of
from .sdnotify import Notifier, install_test_loop_blocker
from .signaling import DeviceDescription, Signaling
from .snapshot import take_snapshot
from .sources.factory import make_audio_source, make_video_source
from .talkback import Speaker
from .tasks import wait_tasks

log = logging.getLogger("peercam.daemon")


class Daemon:
    """One device: ``await Daemon(config).run(stop)`` serves until ``stop`` is set."""

    def __init__(
        self, config: Config, *, fake_hardware: bool = False, pin_factory: Any = None
    ) -> None:
        self.config = config
        self.fake_hardware = fake_hardware
        if pin_factory is None and fake_hardware:
            pin_factory = mock_pin_factory(pwm=config.gpio.led_pwm)
        self.pin_factory = pin_factory
        self.panel: GpioPanel | None = None
        self.calls: CallManager | None = None
        self.speaker: Speaker | None = None
        self._button_stuck = False
        self.topics = Topics(config.mqtt.topic_prefix, config.device.id)
        self.signaling: Signaling | None = None
        self.link: MqttLink | None = None
        self.video: MediaHub | None = None
        self.video_low: MediaHub | None = None  # the substream, when the camera runs one
        self.audio: MediaHub | None = None
        self.ice_health: IceHealth | None = None
        self.recorder: Recorder | None = None
        self.motion: MotionDetector | None = None
        self._motion_fault: str | None = None
        self._event_tasks: set[asyncio.Future[bool]] = set()
        self.notifications: Notifications | None = None
        self.homeassistant: HomeAssistantBridge | None = None
        self.relay: RelayDirector | None = None
        self.ready = asyncio.Event()
        self.notifier = Notifier()  # systemd Type=notify; does nothing outside systemd

    def _status_extra(self) -> dict[str, object]:
        assert self.video is not None
        faults = [f"camera: {self.video.fault}"] if self.video.fault else []
        if self.video_low is not None and self.video_low.fault:
            faults.append(f"substream: {self.video_low.fault}")
        if self.audio is not None and self.audio.fault:
            faults.append(f"microphone: {self.audio.fault}")
        if self._button_stuck:
            faults.append(
                f"call button: held down for over {self.config.gpio.stuck_after:.0f} s "
                "(stuck or shorted?); presses are ignored until it is released"
            )
        if self.speaker is not None and self.speaker.fault:
            faults.append(f"speaker: {self.speaker.fault}")
        if self.ice_health is not None:
            faults += self.ice_health.faults()
        if self.recorder is not None and self.recorder.fault:
            faults.append(f"recording: {self.recorder.fault}")
        if self._motion_fault:
            faults.append(f"motion: {self._motion_fault}")
        if self.relay is not None:
            faults += self.relay.faults()
        extra: dict[str, object] = {
            "camera": str(self.video.state),
            "faults": faults,
            "button": self.panel is not None,
            "door": self.panel is not None and self.panel.door is not None,
            "call_state": str(self.calls.state) if self.calls is not None else "idle",
            "replies": self.speaker.replies() if self.speaker is not None else [],
        }
        source = self.video.source
        if hasattr(source, "encoder_kind"):  # picamera2: "hardware" or "software" (Pi 5)
            extra["encoder"] = source.encoder_kind
        if warnings := list(getattr(source, "warnings", ())):
            extra["warnings"] = [f"camera: {w}" for w in warnings]
        extra["substream"] = self._substream_status()
        if self.audio is not None:
            extra["microphone"] = str(self.audio.state)
        if self.recorder is not None:
            extra["recording"] = self.recorder.status()
        if self.motion is not None:
            extra["motion"] = self.motion.active
        if self.relay is not None:
            extra["relay"] = self.relay.status()
        return extra

    def _substream_status(self) -> dict[str, object] | None:
        """v1.1 ``status.substream``: state, size, where it is encoded, who gets it."""
        low = self.video_low
        if low is None:
            return None
        info = low.source.info  # type: ignore[attr-defined]
        return {
            "state": str(low.state),
            "width": info.width,
            "height": info.height,
            "bitrate": self.config.camera.substream_bitrate,
            "encoder": getattr(low.source, "encoder_kind", "software"),
            "viewers": self.signaling.substream_viewers() if self.signaling else 0,
            "fault": low.fault,
        }

    def _build(self) -> None:
        cfg = self.config
        if cfg.webrtc.host_networks:
            kept = restrict_host_addresses(cfg.webrtc.host_networks)
            log.info("ICE host candidates limited to %s: %s", cfg.webrtc.host_networks, kept)
        on_change = self._on_media_state
        video_source, video_info = make_video_source(cfg.camera, name=cfg.device.name)
        idr_on_join = os.environ.get(NO_IDR_ON_JOIN_ENV) != "1"
        if not idr_on_join:
            log.warning(
                "%s=1: new viewers wait for a periodic IDR (benchmarks only)", NO_IDR_ON_JOIN_ENV
            )

        def video_hub(source: Any, kind: str, iperiod: int, **extra: Any) -> MediaHub:
            """A hub for one H.264 stream: queue and stall timeout follow its frame rate."""
            return MediaHub(
                source,
                kind=kind,
                queue_frames=max(8, cfg.camera.fps // 2),
                idle_stop=cfg.camera.idle_stop,
                stall_timeout=max(5.0, 3 * iperiod / cfg.camera.fps),
                on_state_change=on_change,
                idr_on_join=idr_on_join,
                **extra,
            )

        self.video = video_hub(video_source, "video", cfg.camera.keyframe_interval)
        self.video_low = None
        substream_info = None
        if getattr(video_source, "substream", None) is not None:
            from .sources.substream import SubstreamSource

            hub = self.video
            low = SubstreamSource(
                video_source,  # type: ignore[arg-type]
                video_source.substream,  # type: ignore[attr-defined]
                cfg.camera.fps,
                hold_main=hub.hold,
                release_main=hub.release,
            )
            substream_info = low.info
            self.video_low = video_hub(
                low,
                "substream",
                cfg.camera.substream_iperiod,
                fault_level=logging.WARNING,  # viewers stay on (or go back to) the main stream
            )
        audio = make_audio_source(cfg.audio)
        audio_codec = None
        if audio is not None:
            audio_source, audio_codec = audio
            self.audio = MediaHub(
                audio_source,
                kind="audio",
                queue_frames=25,
                idle_stop=cfg.camera.idle_stop,
                on_state_change=on_change,
                fault_level=logging.WARNING,  # a missing microphone degrades, video goes on
            )
        self._build_events(video_info)
        self.notifications = Notifications(cfg)
        self.speaker = Speaker(cfg.talkback)
        self.speaker.start()
        self.calls = CallManager(
            cfg.call,
            CallHooks(
                publish_event=self._publish_event,
                status_changed=self._on_media_state,
                indicate=self._indicate,
                hold_media=self.video.hold,
                release_media=self.video.release,
                snapshot=self._take_snapshot,
                hang_up=self._hang_up,
            ),
            CallLog(
                self.topics, self._publish, keep=cfg.call.history, state_dir=cfg.call.state_dir
            ),
        )
        self.panel, why = open_panel(
            cfg.gpio,
            asyncio.get_running_loop(),
            on_press=self._on_press,
            on_stuck=self._on_button_stuck,
            pin_factory=self.pin_factory,
        )
        if why:
            log.warning("%s", why)
        turn_secret = cfg.read_turn_secret()
        ice = IceServers(
            cfg.webrtc.ice_servers,
            turn_secret=turn_secret,
            ttl=cfg.webrtc.ice_ttl,
            device_id=cfg.device.id,
        )
        if ice.device_urls():
            # aiortc takes one STUN and one TURN URL and waits 5 s for a dead one:
            # the device uses the best of each that answers its health checks.
            self.ice_health = IceHealth(ice, on_change=self._on_media_state)
            log.info(
                "ICE: viewers get %s; the device checks %s and uses the best that answers",
                cfg.webrtc.ice_servers,
                ice.device_urls(),
            )
        self.relay = self._build_relay(ice)
        self.signaling = Signaling(
            topics=self.topics,
            webrtc=cfg.webrtc,
            description=DeviceDescription(
                name=cfg.device.name,
                video=video_info,
                audio_codec=audio_codec,
                talkback=self.speaker.available,
                version=__version__,
                substream=substream_info,
            ),
            video=self.video,
            video_low=self.video_low,
            quality_policy=lambda: QualityPolicy(
                probe_after=cfg.camera.substream_probe,
                max_probe_after=12 * cfg.camera.substream_probe,
                settle=min(10.0, cfg.camera.substream_probe),
            ),
            audio=self.audio,
            ice=ice,
            publish=self._publish,
            status_extra=self._status_extra,
            calls=self.calls,
            speaker=self.speaker if self.speaker.available else None,
            open_door=self._open_door if self.panel and self.panel.door else None,
            status_refresh=cfg.mqtt.status_refresh,
            clips=self.recorder,
            push=self.notifications if self.notifications.push is not None else None,
            relay=self.relay,
        )
        self._build_homeassistant()
        offline = encode(self.signaling.status("offline"))
        self.link = MqttLink(
            cfg.mqtt,
            client_id=f"peercam-{cfg.device.id}",
            password=cfg.read_mqtt_password(),
            will=LastWill(self.topics.status, offline),
            subscriptions=[self.topics.inbox_filter, *self.homeassistant.subscriptions],
            ignore_retained=True,
            retained_ok=self.homeassistant.subscriptions,  # a retained birth message counts
            on_message=self._on_message,
            on_connect=self._on_connect,
            on_disconnect=self._on_link_lost,
        )

    def _build_events(self, video_info: Any) -> None:
        """Clips with pre-roll and motion detection, each only when configured."""
        cfg = self.config
        assert self.video is not None
        if cfg.recording.enabled:
            self.recorder = Recorder(
                cfg.recording,
                video=self.video,
                audio=self.audio,
                info=video_info,
                bitrate=cfg.camera.bitrate,
                topics=self.topics,
                publish=self._publish,
                on_change=self._on_media_state,
            )
        if not cfg.motion.enabled:
            return
        follow = getattr(self.video.source, "set_motion_sink", None)
        if follow is None:
            self._motion_fault = (
                f"not available with [camera] source = {cfg.camera.source!r} "
                "(needs a small luma picture from the camera)"
            )
            log.error("motion detection %s", self._motion_fault)
            return
        self.motion = MotionDetector(
            cfg.motion,
            on_start=self._motion_started,
            on_end=self._motion_ended,
            on_moving=self._motion_going_on,
        )
        follow(self.motion.feed, fps=cfg.motion.fps, width=cfg.motion.width)
        log.info(
            "motion detection on (%d pictures/s, %d px wide): the camera keeps running while "
            "nobody watches",
            cfg.motion.fps,
            cfg.motion.width,
        )
        self.video.hold()  # released by Hub.close at shutdown

    def _motion_started(self) -> None:
        at = round(time.time(), 3)
        clip = self.recorder.trigger("motion") if self.recorder is not None else None
        log.info("motion started%s", f" (clip {clip})" if clip else "")
        event: dict[str, object] = {"type": "motion", "state": "start", "at": at}
        if clip:
            event["clip"] = clip
        if self.notifications is not None:
            self.notifications.motion(at, clip)
        if self.homeassistant is not None:
            self.homeassistant.fire("motion", at=at, **({"clip": clip} if clip else {}))
        self._spawn_event(event)
        self._on_media_state()

    def _motion_going_on(self) -> None:
        if self.recorder is not None:
            self.recorder.extend()

    def _motion_ended(self, seconds: float) -> None:
        log.info("motion ended after %.1f s", seconds)
        event = {"type": "motion", "state": "end", "at": round(time.time(), 3)}
        event["duration"] = round(seconds, 1)
        self._spawn_event(event)
        self._on_media_state()

    def _spawn_event(self, event: dict[str, object]) -> None:
        task = asyncio.ensure_future(self._publish_event(event))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    def walk_visitor(self) -> None:
        """SIGUSR2 with fake hardware, ``[motion] visitor_every``: a scripted visitor."""
        walk = getattr(self.video.source, "walk_visitor", None) if self.video else None
        if walk is None:
            log.warning("this camera cannot script a visitor (test pattern only)")
            return
        log.info("a scripted visitor walks through the picture")
        walk()

    async def _visitors(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.walk_visitor()

    def _build_homeassistant(self) -> None:
        cfg = self.config
        ha = cfg.homeassistant
        door = self.panel is not None and self.panel.door is not None
        device = discovery_device(cfg, door=door)
        if ha.enabled and door and ha.user not in cfg.gpio.door_openers:
            log.info(
                "Home Assistant gets no open-door button: %r is not in [gpio] door_openers",
                ha.user,
            )
        self.homeassistant = HomeAssistantBridge(ha, device, self._publish)
        if self.calls is not None:
            self.homeassistant.remember_snapshot(self.calls.log.latest_snapshot())
        log.info("%s", describe_homeassistant(ha, device))

    def _on_message(self, topic: str, payload: bytes) -> None:
        assert self.signaling is not None and self.homeassistant is not None
        if not self.homeassistant.on_message(topic, payload):
            self.signaling.on_message(topic, payload)

    async def _take_snapshot(self) -> bytes | None:
        assert self.video is not None
        call = self.calls.call if self.calls is not None else None
        jpeg = await take_snapshot(self.video)
        if self.notifications is not None and call is not None:
            self.notifications.snapshot(call, jpeg)  # a hand-over: never waits for a service
        if jpeg is not None and self.homeassistant is not None:
            self.homeassistant.snapshot(jpeg)  # queued: the call log publishes its copy now
        return jpeg

    def _build_relay(self, ice: IceServers) -> RelayDirector | None:
        """[relay] mode = "janus": the publisher and who watches through it."""
        cfg = self.config
        relay = cfg.relay
        if not relay.enabled:
            return None
        assert self.video is not None
        target = JanusTarget(
            url=relay.url,
            viewer_url=relay.viewer_url or relay.url,
            room=relay.room_for(cfg.device.id),
            create_room=relay.create_room,
            bitrate=relay.bitrate or cfg.camera.bitrate,
            display=cfg.device.name,
            api_secret=cfg.read_relay_secret("api_secret_file"),
            room_secret=cfg.read_relay_secret("room_secret_file"),
            room_pin=cfg.read_relay_secret("room_pin_file"),
            max_backoff=relay.max_backoff,
        )
        publisher = JanusPublisher(
            target,
            video=self.video,  # issue 14: the substream hub here once it exists
            audio=self.audio,
            ice_servers=ice.device_servers,  # TURN too, for an SFU across NATs
            on_change=self._on_media_state,
        )
        log.info(
            "relay: Janus %s room %d; %s viewer(s) peer-to-peer, the rest through Janus "
            "(policy %s, publishing %s)",
            relay.url,
            target.room,
            relay.p2p_viewers,
            relay.policy,
            relay.publish,
        )
        return RelayDirector(relay, publisher, self._on_media_state)

    def _counts(self) -> Counts:
        assert self.signaling is not None
        sessions, handshakes, closing, inboxes = self.signaling.counts()
        return Counts(
            sessions,
            handshakes,
            closing,
            inboxes,
            consumers_of((self.video, self.video_low, self.audio)),
        )

    def _on_media_state(self) -> None:
        if self.signaling is not None:
            self.signaling.status_changed()

    async def _publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        assert self.link is not None
        return await self.link.publish(topic, payload, retain=retain)

    # --- calls and GPIO -------------------------------------------------------------

    def press_call_button(self) -> None:
        """Ring as if the button were pressed (SIGUSR1 with fake hardware; the demo's ring)."""
        if self.panel is not None and self.panel.simulate_press():
            return  # through the mock pin, like a finger would
        self._on_press()

    def _on_press(self) -> None:
        """A press (the pin, SIGUSR1 or the demo): the call machine, then Home Assistant."""
        if self.calls is None:
            return
        if self.calls.press() in ("ring", "again") and self.homeassistant is not None:
            # every counted press fires the doorbell event, also while the call rings
            self.homeassistant.fire("ring", call=self.calls.call, at=round(time.time(), 3))

    async def _publish_event(self, message: dict[str, object]) -> bool:
        # Notifications first: handing them over never blocks, and a ring
        # reaches phones even while the broker is unreachable.
        if self.notifications is not None:
            kind, call = message.get("type"), message.get("call")
            if kind == "call" and isinstance(call, str):
                self.notifications.ring(call, float(message.get("at") or time.time()))  # type: ignore[arg-type]
            elif kind == "call-ended" and isinstance(call, str):
                by = message.get("by")
                self.notifications.ended(
                    call, str(message.get("reason")), by if isinstance(by, str) else None
                )
        if self.recorder is not None:
            kind, call = message.get("type"), message.get("call")
            if kind == "call" and isinstance(call, str):
                clip = self.recorder.trigger("ring", call=call)
                if clip:
                    message = {**message, "clip": clip}
            elif kind == "call-ended" and isinstance(call, str):
                self.recorder.call_ended(call, str(message.get("reason")))
        return await self._publish(self.topics.events, encode(message), False)

    def _indicate(self, state: CallState) -> None:
        if self.panel is not None:
            self.panel.indicate(state)

    def _on_button_stuck(self, stuck: bool) -> None:
        self._button_stuck = stuck
        if stuck:
            log.warning(
                "call button held down for over %.0f s: stuck or shorted? (check the wiring)",
                self.config.gpio.stuck_after,
            )
        else:
            log.info("call button released")
        self._on_media_state()

    async def _hang_up(self, viewer: str, session: str) -> None:
        if self.signaling is not None:
            await self.signaling.hang_up(viewer, session)

    async def _open_door(self, viewer: str) -> None:
        gpio = self.config.gpio
        if viewer not in gpio.door_openers:
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                f"viewer {viewer!r} may not open the door (not in [gpio] door_openers)",
            )
        ha = self.config.homeassistant
        if ha.enabled and viewer == ha.user:
            # Home Assistant cannot be in a call itself: it may open only while a call
            # is answered by a viewer who may open the door (docs/home-assistant.md).
            answerer = self.calls.answering_viewer() if self.calls is not None else None
            if answerer is None or answerer not in gpio.door_openers:
                raise ProtocolError(
                    ErrorCode.UNAUTHORIZED,
                    "Home Assistant opens the door only during a call answered by a viewer "
                    "in [gpio] door_openers",
                )
        elif self.calls is None or not self.calls.is_answering(viewer):
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED, "the door opens only for the viewer in the current call"
            )
        assert self.panel is not None
        self.panel.pulse_door(gpio.door_pulse)
        log.info(
            "door opened by %s (relay on BCM %d for %.1f s)", viewer, gpio.door_pin, gpio.door_pulse
        )
        await self._publish_event({"type": "opened", "by": viewer, "at": round(time.time(), 3)})

    def _on_link_lost(self) -> None:
        assert self.signaling is not None
        self.signaling.link_lost()
        self.notifier.status(f"lost the broker {self.config.mqtt.url}: reconnecting")

    async def _on_connect(self) -> None:
        assert self.signaling is not None
        await self.signaling.publish_status()
        if self.homeassistant is not None:
            self.homeassistant.connected()  # queued for its own task
        if self.calls is not None:
            await self.calls.log.republish_all()
        if self.recorder is not None:
            await self.recorder.republish_all()
        online = f"online: device {self.config.device.id!r} on {self.config.mqtt.url}"
        if self.ready.is_set():
            self.notifier.status(online)
        else:
            self.ready.set()
            self.notifier.ready(online)
            log.info(
                "device %r online: viewers can watch on %s/+ (max %d)",
                self.config.device.id,
                self.topics.base,
                self.config.webrtc.max_viewers,
            )

    async def run(self, stop: asyncio.Event) -> None:
        self._build()
        assert self.link is not None and self.signaling is not None and self.video is not None
        self.signaling.start()
        assert self.homeassistant is not None
        self.homeassistant.start()
        if self.ice_health is not None:
            self.ice_health.start()
        if self.relay is not None:
            self.relay.start()
        install_test_loop_blocker(asyncio.get_running_loop())
        self.notifier.status(f"connecting to {self.config.mqtt.url}")
        watchdog_task = asyncio.create_task(self.notifier.pet_watchdog(), name="peercam-watchdog")
        link_task = asyncio.create_task(self.link.run(), name="peercam-mqtt")
        stop_task = asyncio.create_task(stop.wait(), name="peercam-stop")
        helpers = [stop_task]
        if self.recorder is not None:
            await self.recorder.start()
        if self.motion is not None and self.config.motion.visitor_every > 0:
            visitors = self._visitors(self.config.motion.visitor_every)
            helpers.append(asyncio.create_task(visitors, name="peercam-visitors"))
        if self.config.diagnostics.resources_every > 0:
            reporter = ResourceReporter(self.config.diagnostics.resources_every, self._counts)
            helpers.append(asyncio.create_task(reporter.run(), name="peercam-resources"))
        try:
            done, _ = await asyncio.wait(
                {link_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if link_task in done:
                link_task.result()  # the link never ends by itself: surface why it did
        finally:
            log.info("shutting down")
            self.notifier.stopping()
            if self.calls is not None:
                await self.calls.close()
            if self.ice_health is not None:
                await self.ice_health.close()
            await self.signaling.close(ByeReason.SHUTDOWN)
            if self.recorder is not None:
                await self.recorder.close()
            if self.homeassistant is not None:
                await self.homeassistant.close()
            if self.relay is not None:
                await self.relay.close()
            if self.link.connected.is_set():
                await self.link.publish(
                    self.topics.status, encode(self.signaling.status("offline")), retain=True
                )
            for task in (link_task, watchdog_task, *helpers):
                task.cancel()
            await wait_tasks((link_task, watchdog_task, *helpers), 5.0, log)
            if self.panel is not None:
                self.panel.close()
            if self.speaker is not None:
                await self.speaker.close()
            if self.video_low is not None:
                await self.video_low.close()  # first: it holds the main capture
            await self.video.close()
            if self.audio is not None:
                await self.audio.close()
            if self.notifications is not None:
                await asyncio.to_thread(self.notifications.close)
            self.notifier.close()
            log.info("stopped")
