"""A fake ``picamera2`` for ``peercam --fake-hardware`` and CI (see ``peercam.fakehw``).

Importable as ``picamera2`` only when ``peercam.fakehw.install()`` put its
directory first on ``sys.path``.  ``__fake__`` is the one name the real
package does not have.
"""

import libcamera  # noqa: F401 - the real package imports it first, too

from .picamera2 import Picamera2
from .platform import Platform, get_platform

__fake__ = True

__all__ = ["Picamera2", "Platform", "get_platform"]
