"""Ask a STUN or TURN server for real whether it works for us, and say exactly why not.

aioice swallows every STUN/TURN failure (a missing candidate is all one
sees, after up to 5 s).  These probes speak the same protocol, over the same
transports (UDP, TCP, TLS over TCP), with the same credentials, and return a
``ProbeResult`` whose ``detail`` is one readable sentence:

- STUN: a Binding request; ok gives the mapped (server-reflexive) address.
- TURN: an Allocate with the long-term credential dance (401 + realm/nonce,
  then an authenticated request), optionally a CreatePermission for a peer
  (to see whether the server relays there), then a Refresh with lifetime 0
  so nothing stays allocated.

The STUN encoding itself is aioice's (``aioice.stun``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from aioice import stun

from .ice import split_ice_url

REQUESTED_TRANSPORT_UDP = 0x11000000
RTO = 0.25  # first retransmission on UDP, doubling (RFC 8489 suggests 0.5; we are impatient)


class ProbeFailure(StrEnum):
    """Why a probe failed, for code that must tell the cases apart."""

    CONFIG = "config"  # the URL or the credentials cannot be used at all
    DNS = "dns"
    REFUSED = "refused"  # ICMP port unreachable / TCP RST: nothing listens
    TIMEOUT = "timeout"  # no answer: down, firewalled, or the transport is blocked
    TLS = "tls"
    AUTH = "auth"  # 401 after authenticating: wrong secret or expired credentials
    FORBIDDEN = "forbidden"  # 403
    REJECTED = "rejected"  # any other STUN error response
    PROTOCOL = "protocol"  # an answer we cannot use


@dataclass(frozen=True, slots=True)
class ProbeResult:
    url: str
    ok: bool
    detail: str
    elapsed: float
    failure: ProbeFailure | None = None
    mapped: tuple[str, int] | None = None
    relayed: tuple[str, int] | None = None
    #: For ``peer=`` probes: whether the server agreed to relay to that peer.
    peer_allowed: bool | None = None
    peer_detail: str = ""

    def __str__(self) -> str:
        return f"{self.url}: {self.detail}"


class _Failed(Exception):
    def __init__(self, failure: ProbeFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class _ErrorResponse(Exception):
    def __init__(self, message: stun.Message) -> None:
        code, reason = message.attributes.get("ERROR-CODE", (0, "no ERROR-CODE"))
        super().__init__(f"{code} {reason}")
        self.message = message
        self.code = int(code)
        self.reason = str(reason)


# --- transports ----------------------------------------------------------------------


class _Channel:
    """One STUN conversation with one server over one transport."""

    where: str

    async def request(self, message: stun.Message, deadline: float) -> stun.Message:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[bytes, asyncio.Future[stun.Message]] = {}
        self.error: OSError | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        future = self.waiting.get(message.transaction_id)
        if future is not None and not future.done():
            future.set_result(message)

    def error_received(self, exc: Exception) -> None:
        # On a connected UDP socket, an ICMP port unreachable arrives here.
        if isinstance(exc, OSError):
            self.error = exc
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(exc)


class _UdpChannel(_Channel):
    def __init__(self, transport: asyncio.DatagramTransport, protocol: _UdpProtocol, where: str):
        self.transport = transport
        self.protocol = protocol
        self.where = where

    async def request(self, message: stun.Message, deadline: float) -> stun.Message:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[stun.Message] = loop.create_future()
        self.protocol.waiting[message.transaction_id] = future
        data = bytes(message)
        rto = RTO
        try:
            while True:
                self.transport.sendto(data)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), min(rto, remaining))
                rto *= 2
        except ConnectionRefusedError:
            raise _Failed(
                ProbeFailure.REFUSED,
                f"ICMP port unreachable from {self.where}: nothing listens there",
            ) from None
        except OSError as exc:
            raise _Failed(ProbeFailure.REFUSED, f"{self.where}: {exc.strerror or exc}") from None
        finally:
            self.protocol.waiting.pop(message.transaction_id, None)
            if not future.done():
                future.cancel()
        raise _Failed(ProbeFailure.TIMEOUT, f"no answer from {self.where}")

    def close(self) -> None:
        self.transport.close()


class _StreamChannel(_Channel):
    """STUN over TCP or TLS: messages back to back, framed by their length field."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str):
        self.reader = reader
        self.writer = writer
        self.where = where

    async def request(self, message: stun.Message, deadline: float) -> stun.Message:
        self.writer.write(bytes(message))
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self.writer.drain()
                while True:
                    header = await self.reader.readexactly(20)
                    (length,) = struct.unpack("!H", header[2:4])
                    body = await self.reader.readexactly(length)
                    try:
                        answer = stun.parse_message(header + body)
                    except ValueError:
                        continue
                    if answer.transaction_id == message.transaction_id:
                        return answer
        except TimeoutError:
            raise _Failed(ProbeFailure.TIMEOUT, f"no answer from {self.where}") from None
        except asyncio.IncompleteReadError:
            raise _Failed(
                ProbeFailure.PROTOCOL, f"{self.where} closed the connection without answering"
            ) from None
        except OSError as exc:
            raise _Failed(ProbeFailure.REFUSED, f"{self.where}: {exc.strerror or exc}") from None

    def close(self) -> None:
        self.writer.close()


def _tls_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    return exc.reason or str(exc)


async def _open(scheme: str, host: str, port: int, transport: str, deadline: float) -> _Channel:
    loop = asyncio.get_running_loop()
    use_tls = scheme in ("turns", "stuns")
    proto = "tls" if use_tls else transport
    remaining = max(0.05, deadline - time.monotonic())
    try:
        async with asyncio.timeout(remaining):
            infos = await loop.getaddrinfo(
                host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
    except (socket.gaierror, TimeoutError) as exc:
        why = "no answer from DNS" if isinstance(exc, TimeoutError) else exc.strerror
        raise _Failed(ProbeFailure.DNS, f"cannot resolve {host!r}: {why}") from None
    ip = infos[0][4][0]
    where = f"{ip}:{port}/{proto}"
    if proto == "udp":
        udp_transport, protocol = await loop.create_datagram_endpoint(
            _UdpProtocol, remote_addr=(ip, port)
        )
        return _UdpChannel(udp_transport, protocol, where)
    try:
        async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
            reader, writer = await asyncio.open_connection(ip, port)
    except TimeoutError:
        raise _Failed(
            ProbeFailure.TIMEOUT, f"no answer from {where} (TCP connection not established)"
        ) from None
    except ConnectionRefusedError:
        raise _Failed(
            ProbeFailure.REFUSED, f"connection refused by {where}: nothing listens there"
        ) from None
    except OSError as exc:
        raise _Failed(ProbeFailure.REFUSED, f"{where}: {exc.strerror or exc}") from None
    if use_tls:
        # aioice passes ssl=True: the default context, checking the name (or the
        # IP in the certificate's subjectAltName) against the system's CAs.
        try:
            async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
                await writer.start_tls(ssl.create_default_context(), server_hostname=host)
        except TimeoutError:
            writer.close()
            raise _Failed(
                ProbeFailure.TLS,
                f"{where}: TCP connected but no TLS handshake (is it a TLS port?)",
            ) from None
        except ssl.SSLError as exc:
            writer.close()
            raise _Failed(
                ProbeFailure.TLS, f"TLS with {where} failed: {_tls_reason(exc)}"
            ) from None
        except OSError as exc:
            writer.close()
            raise _Failed(
                ProbeFailure.TLS, f"TLS with {where} failed: {exc.strerror or exc}"
            ) from None
    return _StreamChannel(reader, writer, where)


# --- STUN and TURN -------------------------------------------------------------------


def _request(method: stun.Method, **attributes: object) -> stun.Message:
    return stun.Message(
        message_method=method, message_class=stun.Class.REQUEST, attributes=dict(attributes)
    )


async def _exchange(channel: _Channel, message: stun.Message, deadline: float) -> stun.Message:
    answer = await channel.request(message, deadline)
    if answer.message_class == stun.Class.ERROR:
        raise _ErrorResponse(answer)
    if answer.message_class != stun.Class.RESPONSE:
        raise _Failed(ProbeFailure.PROTOCOL, f"unexpected {answer.message_class.name} answer")
    return answer


def _timeout_hint(transport: str) -> str:
    return f"server down, a firewall dropping {transport.upper()}, or a wrong address"


async def probe_stun(url: str, *, timeout: float = 3.0) -> ProbeResult:
    """A Binding request to ``stun:host:port``."""
    started = time.monotonic()
    deadline = started + timeout
    scheme, host, port, _ = split_ice_url(url)
    if scheme != "stun":
        return ProbeResult(url, False, f"{scheme}: is not used by aiortc", 0.0, ProbeFailure.CONFIG)
    channel: _Channel | None = None
    try:
        channel = await _open(scheme, host, port or 3478, "udp", deadline)
        answer = await _exchange(channel, _request(stun.Method.BINDING), deadline)
        mapped = answer.attributes.get("XOR-MAPPED-ADDRESS") or answer.attributes.get(
            "MAPPED-ADDRESS"
        )
        if not mapped:
            raise _Failed(ProbeFailure.PROTOCOL, "the Binding response has no mapped address")
    except _Failed as exc:
        detail = exc.detail
        if exc.failure is ProbeFailure.TIMEOUT:
            detail += f" within {timeout:.1f} s ({_timeout_hint('udp')})"
        return ProbeResult(url, False, detail, time.monotonic() - started, exc.failure)
    except _ErrorResponse as exc:
        return ProbeResult(
            url, False, f"Binding refused: {exc}", time.monotonic() - started, ProbeFailure.REJECTED
        )
    finally:
        if channel is not None:
            channel.close()
    elapsed = time.monotonic() - started
    return ProbeResult(
        url,
        True,
        f"mapped address {mapped[0]}:{mapped[1]} ({elapsed * 1000:.0f} ms)",
        elapsed,
        mapped=tuple(mapped),  # type: ignore[arg-type]
    )


def _expiry_note(username: str | None) -> tuple[str, bool]:
    """('valid until …', expired?) from a REST-API username ``"{expiry}:{user}"``."""
    head = (username or "").split(":", 1)[0]
    if not head.isdigit():
        return "", False
    expires = int(head)
    when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return when, expires < time.time()


def _describe_401(reason: str, username: str | None) -> str:
    when, expired = _expiry_note(username)
    if expired:
        return (
            f"401 {reason}: the credentials expired at {when} (this machine's clock says "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC)"
        )
    extra = f"; they are valid until {when} by this machine's clock" if when else ""
    return (
        f"401 {reason}: the server refused the credentials: the TURN secret is not the "
        f"server's static-auth-secret, or the server's clock is far from ours{extra}"
    )


async def probe_turn(
    url: str,
    username: str | None,
    password: str | None,
    *,
    timeout: float = 3.0,
    peer: str | None = None,
) -> ProbeResult:
    """Allocate a relay on ``turn:``/``turns:`` ``url`` with these credentials, then free it.

    ``peer`` (an IP address): also ask for a permission to relay to it and
    report in ``peer_allowed`` whether the server agreed (a TURN server that
    relays into private networks is a door into them).
    """
    started = time.monotonic()
    deadline = started + timeout
    scheme, host, port, transport = split_ice_url(url)
    transport = transport or ("tcp" if scheme == "turns" else "udp")
    if scheme not in ("turn", "turns") or transport not in ("udp", "tcp"):
        return ProbeResult(url, False, "not a TURN URL aiortc can use", 0.0, ProbeFailure.CONFIG)
    if scheme == "turns" and transport != "tcp":
        return ProbeResult(
            url,
            False,
            "turns: over UDP (DTLS) is not supported by aiortc",
            0.0,
            ProbeFailure.CONFIG,
        )
    if not username or not password:
        return ProbeResult(
            url,
            False,
            "no TURN credentials: set [webrtc] turn_secret_file to coturn's static-auth-secret",
            0.0,
            ProbeFailure.CONFIG,
        )
    proto = "tls" if scheme == "turns" else transport
    channel: _Channel | None = None
    key: bytes | None = None
    realm = nonce = None
    try:
        channel = await _open(
            scheme, host, port or (5349 if scheme == "turns" else 3478), transport, deadline
        )

        async def authenticated(method: stun.Method, **attributes: object) -> stun.Message:
            """Send with the current realm/nonce; retry once on 401-with-nonce or 438."""
            nonlocal key, realm, nonce
            for attempt in range(3):
                message = _request(method, **attributes)
                if key is not None:
                    message.attributes.update(USERNAME=username, REALM=realm, NONCE=nonce)
                    message.add_message_integrity(key)
                try:
                    return await _exchange(channel, message, deadline)
                except _ErrorResponse as exc:
                    fresh = exc.message.attributes.get("NONCE")
                    first_401 = exc.code == 401 and key is None
                    stale = exc.code == 438
                    if attempt < 2 and fresh is not None and (first_401 or stale):
                        nonce = fresh
                        realm = exc.message.attributes.get("REALM", realm)
                        key = hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()
                        continue
                    raise
            raise AssertionError("unreachable")

        answer = await authenticated(
            stun.Method.ALLOCATE, LIFETIME=60, **{"REQUESTED-TRANSPORT": REQUESTED_TRANSPORT_UDP}
        )
        relayed = answer.attributes.get("XOR-RELAYED-ADDRESS")
        mapped = answer.attributes.get("XOR-MAPPED-ADDRESS")
        if not relayed:
            raise _Failed(ProbeFailure.PROTOCOL, "the Allocate response has no relayed address")
        peer_allowed: bool | None = None
        peer_detail = ""
        if peer is not None:
            try:
                await authenticated(
                    stun.Method.CREATE_PERMISSION, **{"XOR-PEER-ADDRESS": (peer, 9)}
                )
                peer_allowed, peer_detail = True, f"relays to {peer}"
            except _ErrorResponse as exc:
                peer_allowed, peer_detail = False, f"refuses to relay to {peer} ({exc})"
        with contextlib.suppress(_Failed, _ErrorResponse):
            await authenticated(stun.Method.REFRESH, LIFETIME=0)
    except _Failed as exc:
        detail = exc.detail
        if exc.failure is ProbeFailure.TIMEOUT:
            detail += f" within {timeout:.1f} s ({_timeout_hint(proto)})"
        return ProbeResult(url, False, detail, time.monotonic() - started, exc.failure)
    except _ErrorResponse as exc:
        if exc.code == 401:
            failure, detail = ProbeFailure.AUTH, _describe_401(exc.reason, username)
        elif exc.code == 403:
            failure = ProbeFailure.FORBIDDEN
            detail = f"403 {exc.reason}: the server refuses this client or user (ACLs, quotas)"
        else:
            failure, detail = ProbeFailure.REJECTED, f"Allocate refused: {exc}"
        return ProbeResult(url, False, detail, time.monotonic() - started, failure)
    finally:
        if channel is not None:
            channel.close()
    elapsed = time.monotonic() - started
    via = f", seen as {mapped[0]}:{mapped[1]}" if mapped else ""
    return ProbeResult(
        url,
        True,
        f"relay {relayed[0]}:{relayed[1]} allocated over {proto.upper()}{via} "
        f"({elapsed * 1000:.0f} ms)",
        elapsed,
        mapped=tuple(mapped) if mapped else None,  # type: ignore[arg-type]
        relayed=tuple(relayed),  # type: ignore[arg-type]
        peer_allowed=peer_allowed,
        peer_detail=peer_detail,
    )


async def probe_url(
    url: str,
    username: str | None = None,
    password: str | None = None,
    *,
    timeout: float = 3.0,
) -> ProbeResult:
    """``probe_stun`` or ``probe_turn`` as the URL's scheme says."""
    if url.startswith(("turn:", "turns:")):
        return await probe_turn(url, username, password, timeout=timeout)
    return await probe_stun(url, timeout=timeout)
