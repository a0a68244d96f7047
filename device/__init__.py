"""peercam: a Raspberry Pi camera/intercom daemon.

Hardware H.264 passthrough to WebRTC viewers, signaled over MQTT.
"""

__version__ = "0.2.0"
PROTOCOL_VERSION = 1
