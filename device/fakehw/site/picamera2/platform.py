"""Fake ``picamera2.platform``: VC4 (Pi 4 and older) or PISP (Pi 5), from the control file."""

from enum import Enum

from . import _sim


class Platform(Enum):
    VC4 = 0
    PISP = 1


# Decided once at import, as the real module probes /dev/video* once.
_platform = Platform.PISP if _sim.control(fresh=True).platform == "pisp" else Platform.VC4


def get_platform():
    return _platform
