"""Fake hardware for ``--fake-hardware`` runs, CI and the demo.

``site/`` holds stand-ins for the Raspberry Pi's ``picamera2`` and
``libcamera`` Python packages: same import paths, classes, constructor
signatures and defaults as picamera2 0.3.38 (checked against its source by
``tests/test_fake_picamera2.py``), the same background threads calling
``Output.outputframe`` with five positional arguments, the same exceptions.
They encode a rendered test picture with libx264 into real H.264.

``install()`` puts ``site/`` first on ``sys.path`` so that ``import
picamera2`` finds the fake; nothing else ever does.  What the fake camera
does (cameras present, stalls, unplugging, Pi 5) is steered from outside the
process through a control file: see ``control``.
"""

from __future__ import annotations

import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent / "site"


def install() -> Path:
    """Make ``import picamera2`` / ``import libcamera`` load the fakes (idempotent).

    Must run before anything imports the real packages; a real picamera2
    already imported is left alone (and reported by the caller's logs).
    """
    path = str(SITE)
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    return SITE


def installed() -> bool:
    return str(SITE) in sys.path
