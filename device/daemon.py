"""The daemon: wires config, sources, hubs, signaling and the MQTT link together."""

from __future__ import annotations

import asyncio
import logging

from . import __version__
from .config import Config
from .hub import MediaHub
from .ice import IceServers, restrict_host_addresses
from .mqtt_link import LastWill, MqttLink
from .protocol import ByeReason, Topics, encode
from .sdnotify import Notifier, install_test_loop_blocker
from .signaling import DeviceDescription, Signaling
from .sources.factory import make_audio_source, make_video_source
from .tasks import wait_tasks

log = logging.getLogger("peercam.daemon")


class Daemon:
    """One device: ``await Daemon(config).run(stop)`` serves until ``stop`` is set."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.topics = Topics(config.mqtt.topic_prefix, config.device.id)
        self.signaling: Signaling | None = None
        self.link: MqttLink | None = None
        self.video: MediaHub | None = None
        self.audio: MediaHub | None = None
        self.ready = asyncio.Event()
        self.notifier = Notifier()  # systemd Type=notify; does nothing outside systemd

    def _status_extra(self) -> dict[str, object]:
        assert self.video is not None
        faults = [f"camera: {self.video.fault}"] if self.video.fault else []
        if self.audio is not None and self.audio.fault:
            faults.append(f"microphone: {self.audio.fault}")
        return {"camera": str(self.video.state), "faults": faults}

    def _build(self) -> None:
        cfg = self.config
        if cfg.webrtc.host_networks:
            kept = restrict_host_addresses(cfg.webrtc.host_networks)
            log.info("ICE host candidates limited to %s: %s", cfg.webrtc.host_networks, kept)
        on_change = self._on_media_state
        video_source, video_info = make_video_source(cfg.camera, name=cfg.device.name)
        self.video = MediaHub(
            video_source,
            kind="video",
            queue_frames=max(8, cfg.camera.fps // 2),
            idle_stop=cfg.camera.idle_stop,
            stall_timeout=max(5.0, 3 * cfg.camera.keyframe_interval / cfg.camera.fps),
            on_state_change=on_change,
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
            )
        turn_secret = cfg.read_turn_secret()
        ice = IceServers(
            cfg.webrtc.ice_servers,
            turn_secret=turn_secret,
            ttl=cfg.webrtc.ice_ttl,
            device_id=cfg.device.id,
        )
        if len(ice.turn_urls) > 1 or len(ice.stun_urls) > 1:
            log.info(
                "the device itself uses only the first STUN and the first TURN URL (an aiortc "
                "limit); viewers get all of %s",
                cfg.webrtc.ice_servers,
            )
        self.signaling = Signaling(
            topics=self.topics,
            webrtc=cfg.webrtc,
            description=DeviceDescription(
                name=cfg.device.name,
                video=video_info,
                audio_codec=audio_codec,
                talkback=False,
                version=__version__,
            ),
            video=self.video,
            audio=self.audio,
            ice=ice,
            publish=self._publish,
            status_extra=self._status_extra,
        )
        offline = encode(self.signaling.status("offline"))
        self.link = MqttLink(
            cfg.mqtt,
            client_id=f"peercam-{cfg.device.id}",
            password=cfg.read_mqtt_password(),
            will=LastWill(self.topics.status, offline),
            subscriptions=[self.topics.inbox_filter],
            on_message=self.signaling.on_message,
            on_connect=self._on_connect,
            on_disconnect=self._on_link_lost,
        )

    def _on_media_state(self) -> None:
        if self.signaling is not None:
            self.signaling.status_changed()

    async def _publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        assert self.link is not None
        return await self.link.publish(topic, payload, retain=retain)

    def _on_link_lost(self) -> None:
        assert self.signaling is not None
        self.signaling.link_lost()
        self.notifier.status(f"lost the broker {self.config.mqtt.url}: reconnecting")

    async def _on_connect(self) -> None:
        assert self.signaling is not None
        await self.signaling.publish_status()
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
        install_test_loop_blocker(asyncio.get_running_loop())
        self.notifier.status(f"connecting to {self.config.mqtt.url}")
        watchdog_task = asyncio.create_task(self.notifier.pet_watchdog(), name="peercam-watchdog")
        link_task = asyncio.create_task(self.link.run(), name="peercam-mqtt")
        stop_task = asyncio.create_task(stop.wait(), name="peercam-stop")
        try:
            done, _ = await asyncio.wait(
                {link_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if link_task in done:
                link_task.result()  # the link never ends by itself: surface why it did
        finally:
            log.info("shutting down")
            self.notifier.stopping()
            await self.signaling.close(ByeReason.SHUTDOWN)
            if self.link.connected.is_set():
                await self.link.publish(
                    self.topics.status, encode(self.signaling.status("offline")), retain=True
                )
            for task in (link_task, stop_task, watchdog_task):
                task.cancel()
            await wait_tasks((link_task, stop_task, watchdog_task), 5.0, log)
            await self.video.close()
            if self.audio is not None:
                await self.audio.close()
            self.notifier.close()
            log.info("stopped")
