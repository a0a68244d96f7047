"""Enrolment of devices and viewers (``peercam provision``): ids, MQTT credentials and
ACL lines, TURN secret, config bundles. Imported as ``peercam.provisioning``.
"""
