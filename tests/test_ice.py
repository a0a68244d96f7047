"""TURN credentials and ICE server lists, as PROTOCOL.md specifies them."""

from __future__ import annotations

import base64
import hashlib
import hmac

import aioice.ice

from peercam.ice import IceServers, restrict_host_addresses, split_ice_url
from peercam.turn import mint


def test_turn_credentials_follow_the_rest_api_scheme() -> None:
    creds = mint("s3cret", "alice", 600, now=1_700_000_000)
    assert creds.username == "1700000600:alice"
    expected = base64.b64encode(
        hmac.new(b"s3cret", b"1700000600:alice", hashlib.sha1).digest()
    ).decode()
    assert creds.credential == expected
    assert creds.expires_at == 1_700_000_600


def test_viewers_get_every_url_and_their_own_credentials() -> None:
    urls = [
        "stun:turn.example.net:3478",
        "turn:turn.example.net:3478?transport=udp",
        "turns:turn.example.net:5349",
    ]
    ice = IceServers(urls, turn_secret="k", ttl=300, device_id="frontdoor")
    servers = ice.for_viewer("alice")
    assert servers[0] == {"urls": ["stun:turn.example.net:3478"]}
    assert servers[1]["urls"] == urls[1:]
    assert str(servers[1]["username"]).endswith(":alice")
    device = ice.for_device()
    # aiortc uses only the first STUN and the first TURN URL: give it exactly those.
    assert [s.urls for s in device] == [urls[0], urls[1]]
    assert device[1].username.endswith(":frontdoor")


def test_no_servers_means_an_explicit_empty_list() -> None:
    ice = IceServers([], turn_secret=None, ttl=300, device_id="d")
    assert ice.for_viewer("v") == [] and ice.for_device() == []


def test_split_ice_url() -> None:
    assert split_ice_url("turn:host:3478?transport=tcp") == ("turn", "host", 3478, "tcp")
    assert split_ice_url("stun:host") == ("stun", "host", None, None)


def test_host_address_filter_keeps_only_listed_networks() -> None:
    try:
        assert restrict_host_addresses(["127.0.0.1/32"]) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
        assert restrict_host_addresses(["240.0.0.1/32"]) == []  # reserved: on no interface
    finally:
        restrict_host_addresses([])
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
