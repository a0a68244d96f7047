"""Fake ``libcamera.controls``: the control ids the fake reads by name."""

SensorTimestamp = "SensorTimestamp"
FrameDurationLimits = "FrameDurationLimits"
