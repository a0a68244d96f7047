"""The call button, the status LED and the door-strike relay, through gpiozero.

gpiozero calls back on its own threads; every callback is handed to the
asyncio loop with ``call_soon_threadsafe`` and nothing else happens there.
On a machine without GPIO (a laptop, a container) ``open_panel`` logs once
and returns None: the daemon runs as a camera without a button.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable
from typing import Any

from .calls import CallState
from .config import GpioConfig

log = logging.getLogger("peercam.gpio")

BOUNCE_TIME = 0.05  # seconds; real contacts bounce for a few ms
PRESS_LENGTH = 0.1  # seconds a simulated press holds the pin down


def mock_pin_factory(pwm: bool = False) -> Any:
    """gpiozero's MockFactory (for ``--fake-hardware``, the demo and tests)."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    return MockFactory(pin_class=MockPWMPin) if pwm else MockFactory()


class GpioPanel:
    """The devices on the Pi's header that peercam uses."""

    def __init__(
        self,
        config: GpioConfig,
        loop: asyncio.AbstractEventLoop,
        *,
        on_press: Callable[[], None],
        on_stuck: Callable[[bool], None],
        pin_factory: Any = None,
    ) -> None:
        from gpiozero import LED, PWMLED, Button, OutputDevice

        self.config = config
        self._loop = loop
        self._on_press = on_press
        self._on_stuck = on_stuck
        self.pin_factory = pin_factory
        self._door_off: asyncio.TimerHandle | None = None
        self.button = Button(
            config.call_button,
            pull_up=True,
            bounce_time=BOUNCE_TIME,
            hold_time=config.stuck_after,
            pin_factory=pin_factory,
        )
        self.led: Any = None
        self.door: Any = None
        try:
            if config.led:
                led_class = PWMLED if config.led_pwm else LED
                self.led = led_class(config.led, pin_factory=pin_factory)
            if config.door_pin:
                self.door = OutputDevice(
                    config.door_pin, active_high=True, initial_value=False, pin_factory=pin_factory
                )
        except BaseException:
            self.close()
            raise
        # gpiozero's threads -> the loop.  Nothing else runs on those threads.
        self.button.when_pressed = lambda: loop.call_soon_threadsafe(self._on_press)
        self.button.when_held = lambda: loop.call_soon_threadsafe(self._held)
        self.button.when_released = lambda: loop.call_soon_threadsafe(self._released)
        self._stuck = False

    def _released(self) -> None:
        if self._stuck:
            self._stuck = False
            self._on_stuck(False)

    def _held(self) -> None:
        self._stuck = True
        self._on_stuck(True)

    # --- outputs (loop thread) ----------------------------------------------------

    def indicate(self, state: CallState) -> None:
        """The LED: off when idle, blinking (or breathing) while ringing, on during a call."""
        if self.led is None:
            return
        if state is CallState.RINGING:
            if self.config.led_pwm:
                self.led.pulse(fade_in_time=0.5, fade_out_time=0.5)
            else:
                self.led.blink(on_time=0.5, off_time=0.5)
        elif state is CallState.ANSWERED:
            self.led.on()
        else:
            self.led.off()

    def pulse_door(self, seconds: float) -> bool:
        """Energise the door relay for ``seconds``; False when there is no door strike."""
        if self.door is None:
            return False
        self.door.on()
        if self._door_off is not None:
            self._door_off.cancel()
        self._door_off = self._loop.call_later(seconds, self._close_door)
        return True

    def _close_door(self) -> None:
        self._door_off = None
        if self.door is not None:
            self.door.off()

    def simulate_press(self) -> bool:
        """Press the button through the mock pin (``--fake-hardware`` only)."""
        pin = self.button.pin
        if not hasattr(pin, "drive_low"):
            return False
        pin.drive_low()
        self._loop.call_later(PRESS_LENGTH, pin.drive_high)
        return True

    def close(self) -> None:
        if self._door_off is not None:
            self._door_off.cancel()
            self._door_off = None
        for device in (self.door, self.led, getattr(self, "button", None)):
            if device is None:
                continue
            try:
                if device is self.door:
                    device.off()
                device.close()
            except Exception as exc:  # closing must never stop a shutdown
                log.debug("closing %r: %s", device, exc)


def open_panel(
    config: GpioConfig,
    loop: asyncio.AbstractEventLoop,
    *,
    on_press: Callable[[], None],
    on_stuck: Callable[[bool], None],
    pin_factory: Any = None,
) -> tuple[GpioPanel | None, str | None]:
    """The panel, or (None, why) when GPIO is off or unavailable here."""
    if not config.enabled or not config.call_button:
        return None, None
    try:
        import gpiozero  # noqa: F401
    except ImportError:
        return None, "gpiozero is not installed (pip install gpiozero); no call button"
    from gpiozero.exc import BadPinFactory, GPIOZeroError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpiozero warns once per factory it tries
            panel = GpioPanel(
                config, loop, on_press=on_press, on_stuck=on_stuck, pin_factory=pin_factory
            )
    except BadPinFactory:
        return None, "no GPIO on this machine (not a Raspberry Pi?): call button disabled"
    except (GPIOZeroError, OSError, RuntimeError) as exc:
        return None, f"GPIO unavailable ({type(exc).__name__}: {exc}): call button disabled"
    log.info(
        "GPIO: call button on BCM %d, LED %s, door strike %s",
        config.call_button,
        f"on BCM {config.led}" if config.led else "none",
        f"on BCM {config.door_pin}" if config.door_pin else "none",
    )
    return panel, None
