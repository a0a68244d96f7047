"""peercam: a Raspberry Pi camera/intercom daemon.

Hardware H.264 passthrough to WebRTC viewers, signaled over MQTT.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
