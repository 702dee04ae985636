"""Running a command in a pod (`pods/exec`) over a WebSocket this module opens itself.

Why not `kubernetes.stream`: it opens its WebSocket with websocket-client's own connect, bypassing the
egress-vetted pool (`transport.py`): a user's kubeconfig could then make the worker connect to any
address (DNS rebinding included), follow redirects and use the worker's proxy settings. Here:

- the TCP connection is opened by `transport.vetted_socket` (resolve once, vet every address, connect
  to a vetted one; refusal before any socket), wrapped in TLS with the kubeconfig's CA, client
  certificate and key, SNI and hostname check on the kubeconfig's host name; no proxy, no redirect
  (anything but 101 is an error), no cookies kept between connections;
- the upgrade asks for `v5.channel.k8s.io` then `v4.channel.k8s.io`; each binary message's first byte
  is its channel: 0 stdin, 1 stdout, 2 stderr, 3 status (JSON), 4 resize; v5 adds 255 "close" (the
  message [255, 0] closes stdin, so a command reading stdin to its end finishes);
- the exit code comes from the status channel: `{"status": "Success"}` is 0, a `NonZeroExitCode`
  Failure carries it in `details.causes[reason=ExitCode].message`;
- output is bounded (the tail of each stream is kept), the whole call has a deadline (its `timeout`,
  and the step's budget when shorter), and every failure leaves as a `KubeError`: no text of the
  remote end is ever put into an error message.

Commands are argv, never typed into a terminal (tty=false). `sh()` builds `sh -c` argv whose values
are positional parameters, never interpolated into the script.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import certifi
from kubernetes.client.exceptions import ApiException

from core.text import redact as redact_text
from reconcile.kube.egress import EgressPolicy, EgressRefused
from reconcile.kube.errors import (
    NOT_KUBERNETES,
    KubeCredentials,
    KubeError,
    KubePermanent,
    KubeTransient,
    from_api_exception,
    from_transport_error,
)
from reconcile.kube.transport import vetted_socket

logger = logging.getLogger(__name__)

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
MAX_STREAM = 64 * 1024  # bytes kept of each of stdout and stderr (the tail)
MAX_STDIN = 4 * 1024 * 1024
MAX_HEADER = 64 * 1024
MAX_FRAME = 16 * 1024 * 1024
FAILURE_LIMIT = 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class ExecResult:
    exit_code: int  # the process's exit code from the status channel (0 = success; -1: not started)
    stdout: str  # utf-8, errors="replace"; the last MAX_STREAM bytes
    stderr: str
    duration: float  # seconds
    truncated: bool  # either stream was longer than MAX_STREAM
    error: str = ""  # when the command could not be started: why, in our words

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.error

    def failure(self) -> str:
        """ "" when ok, else "exit 3: <the last lines of stderr, else of stdout>" (at most ~1 KiB)."""
        if self.ok:
            return ""
        head = self.error or f"exit {self.exit_code}"
        text = (self.stderr.strip() or self.stdout.strip())[-(FAILURE_LIMIT - len(head) - 3) :]
        if text and len(text) == FAILURE_LIMIT - len(head) - 3 and "\n" in text:
            text = text.split("\n", 1)[1]  # start at a line
        return f"{head}: {text}" if text else head


def sh(script: str, *args: str) -> list[str]:
    """argv for `sh -c script tenter arg1 arg2 ...`: the values are the script's positional parameters
    ($1, $2 …; $0 is "tenter"), never interpolated into it. Quote them in the script: "$1"."""
    return ["sh", "-c", script, "tenter", *(str(a) for a in args)]


class _Tail:
    def __init__(self, limit: int = MAX_STREAM) -> None:
        self.buf = bytearray()
        self.limit = limit
        self.truncated = False

    def add(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > self.limit:
            del self.buf[: len(self.buf) - self.limit]
            self.truncated = True

    def text(self) -> str:
        return bytes(self.buf).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Endpoint:
    """Where and how to open exec streams, from the client configuration the kubeconfig built."""

    scheme: str
    host: str  # the kubeconfig's host name (SNI, certificate check, Host header)
    port: int
    prefix: str  # path prefix of the server URL (e.g. a proxy's /k8s/clusters/x)
    headers: tuple[tuple[str, str], ...]  # authentication
    tls: ssl.SSLContext | None
    server_hostname: str

    @classmethod
    def from_configuration(cls, cfg: Any) -> Endpoint:
        parts = urlsplit(str(cfg.host))
        scheme = parts.scheme or "https"
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        headers: list[tuple[str, str]] = []
        for setting in (cfg.auth_settings() or {}).values():
            if setting.get("in") == "header" and setting.get("value"):
                headers.append((str(setting["key"]), str(setting["value"])))
        tls = None
        if scheme == "https":
            if cfg.verify_ssl:
                tls = ssl.create_default_context(cafile=cfg.ssl_ca_cert or certifi.where())
                if cfg.assert_hostname is False:
                    tls.check_hostname = False
            else:  # insecure-skip-tls-verify, refused at upload unless the operator allows it
                tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
            if cfg.cert_file:
                tls.load_cert_chain(cfg.cert_file, cfg.key_file)
            tls.set_alpn_protocols(["http/1.1"])
        return cls(
            scheme=scheme,
            host=host,
            port=port,
            prefix=parts.path.rstrip("/"),
            headers=tuple(headers),
            tls=tls,
            server_hostname=str(cfg.tls_server_name or host),
        )

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class _Timeout(Exception):
    pass


class _Stream:
    """One WebSocket connection (client side): masked frames out, unmasked frames in."""

    def __init__(self, sock: socket.socket, end: float) -> None:
        self.sock = sock
        self.end = end
        self.buf = bytearray()

    def _settimeout(self) -> None:
        left = self.end - time.monotonic()
        if left <= 0:
            raise _Timeout()
        self.sock.settimeout(left)

    def recv_more(self) -> bool:
        self._settimeout()
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise _Timeout() from None
        if not data:
            return False
        self.buf += data
        return True

    def sendall(self, data: bytes) -> None:
        self._settimeout()
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise _Timeout() from None

    def send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        first = 0x80 | opcode
        if n < 126:
            header = struct.pack("!BB", first, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", first, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, n)
        key = os.urandom(4)
        if n:
            stream = (key * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
        self.sendall(header + key + payload)

    def frame(self) -> tuple[int, bool, bytes] | None:
        """The next frame (opcode, fin, payload), None at EOF."""
        while True:
            buf = self.buf
            if len(buf) >= 2:
                fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
                masked, n, i = buf[1] & 0x80, buf[1] & 0x7F, 2
                ready = True
                if n == 126:
                    ready = len(buf) >= 4
                    if ready:
                        (n,) = struct.unpack_from("!H", buf, 2)
                        i = 4
                elif n == 127:
                    ready = len(buf) >= 10
                    if ready:
                        (n,) = struct.unpack_from("!Q", buf, 2)
                        i = 10
                if ready:
                    if masked or n > MAX_FRAME:
                        raise KubePermanent(NOT_KUBERNETES, reason="NotKubernetes")
                    if len(buf) >= i + n:
                        payload = bytes(buf[i : i + n])
                        del buf[: i + n]
                        return opcode, fin, payload
            if not self.recv_more():
                return None

    def message(self) -> tuple[int, bytes] | None:
        """The next whole message (fragments joined; pings answered), None at EOF."""
        parts: list[bytes] = []
        first: int | None = None
        while True:
            frame = self.frame()
            if frame is None:
                return None
            opcode, fin, payload = frame
            if opcode == _OP_PING:
                self.send(_OP_PONG, payload[:125])
                continue
            if opcode == _OP_PONG:
                continue
            if opcode == _OP_CLOSE:
                return opcode, payload
            if opcode != _OP_CONT:
                first = opcode
            parts.append(payload)
            if sum(map(len, parts)) > MAX_FRAME:
                raise KubePermanent(NOT_KUBERNETES, reason="NotKubernetes")
            if fin:
                return first if first is not None else _OP_BINARY, b"".join(parts)


def _read_response_head(stream: _Stream) -> tuple[int, dict[str, str]]:
    while b"\r\n\r\n" not in stream.buf:
        if len(stream.buf) > MAX_HEADER or not stream.recv_more():
            raise KubePermanent(NOT_KUBERNETES, reason="NotKubernetes")
    head, _, rest = bytes(stream.buf).partition(b"\r\n\r\n")
    stream.buf = bytearray(rest)
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise KubePermanent(NOT_KUBERNETES, reason="NotKubernetes") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return status, headers


def _read_error_body(stream: _Stream, headers: dict[str, str]) -> bytes:
    """The body of a refused upgrade (a Status, from an API server), bounded; best effort."""
    try:
        want = int(headers.get("content-length") or 0)
    except ValueError:
        want = 0
    with contextlib.suppress(_Timeout, OSError):
        while len(stream.buf) < min(want or MAX_HEADER, MAX_HEADER) and stream.recv_more():
            if not want and b"\r\n0\r\n\r\n" in stream.buf:
                break
    body = bytes(stream.buf[:MAX_HEADER])
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            try:
                size = int(size_line.split(b";")[0] or b"0", 16)
            except ValueError:
                break
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        body = out
    return body


def _refused(status: int, headers: dict[str, str], body: bytes, namespace: str) -> KubeError:
    """The KubeError for an upgrade the server refused (no remote text in the message)."""
    if status == 403:
        return KubeCredentials(
            f"forbidden: cannot exec into pods in namespace {namespace}", status=403, reason="Forbidden"
        )
    exc = ApiException(status=status, reason="")
    exc.body = body
    exc.headers = headers
    return from_api_exception(exc)


def _exit_code(raw: bytes) -> tuple[int, str]:
    """(exit code, error) from the status channel's JSON."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise KubePermanent(NOT_KUBERNETES, reason="NotKubernetes") from None
    if not isinstance(data, dict):
        raise KubePermanent(NOT_KUBERNETES, reason="NotKubernetes")
    if data.get("status") == "Success":
        return 0, ""
    details = data.get("details")
    if not isinstance(details, dict):
        details = {}
    if data.get("reason") == "NonZeroExitCode":
        for cause in details.get("causes") or []:
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                with contextlib.suppress(TypeError, ValueError):
                    return int(str(cause.get("message"))), ""
    return -1, "the command could not be started in the container"


def run(
    endpoint: Endpoint,
    egress: EgressPolicy,
    namespace: str,
    pod: str,
    command: list[str],
    *,
    stdin: bytes | str | None,
    container: str | None,
    timeout: float,
    connect_timeout: float,
    deadline: float | None,
    redact: Iterable[str] = (),
) -> ExecResult:
    if not command or not all(isinstance(a, str) for a in command):
        raise ValueError("command is a non-empty list of strings")
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    if data is not None and len(data) > MAX_STDIN:
        raise ValueError(f"stdin is larger than {MAX_STDIN // (1024 * 1024)} MiB")
    secrets = list(redact)
    started = time.monotonic()
    end = started + float(timeout)
    if deadline is not None:
        end = min(end, deadline)
    query: list[tuple[str, str]] = [("command", arg) for arg in command]
    if container:
        query.append(("container", container))
    query += [("stdin", "true" if data is not None else "false"), ("stdout", "true"), ("stderr", "true")]
    query.append(("tty", "false"))
    path = (
        f"{endpoint.prefix}/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/exec?"
        + urlencode(query, quote_via=quote)
    )
    sock: socket.socket | None = None
    try:
        left = end - time.monotonic()
        if left <= 0.05:
            raise _Timeout()
        try:
            raw = vetted_socket(egress, endpoint.host, endpoint.port, min(connect_timeout, left))
            sock = raw
            if endpoint.tls is not None:
                raw.settimeout(max(0.05, min(connect_timeout, end - time.monotonic())))
                sock = endpoint.tls.wrap_socket(raw, server_hostname=endpoint.server_hostname)
        except TimeoutError:
            if time.monotonic() >= end:
                raise _Timeout() from None
            raise
        stream = _Stream(sock, end)
        protocol = _upgrade(stream, endpoint, path, namespace)
        stdout, stderr = _Tail(), _Tail()
        if data is not None:
            for i in range(0, len(data), 65536):
                stream.send(_OP_BINARY, bytes([STDIN]) + data[i : i + 65536])
            if protocol == V5:
                stream.send(_OP_BINARY, bytes([CLOSE, STDIN]))
        code: int | None = None
        error = ""
        while True:
            message = stream.message()
            if message is None:
                break
            opcode, payload = message
            if opcode == _OP_CLOSE:
                with contextlib.suppress(OSError, _Timeout):
                    stream.send(_OP_CLOSE, payload[:2])
                break
            if not payload:
                continue
            channel, body = payload[0], payload[1:]
            if channel == STDOUT:
                stdout.add(body)
            elif channel == STDERR:
                stderr.add(body)
            elif channel == STATUS:
                code, error = _exit_code(body)
        if code is None:
            raise KubeTransient(
                "the exec stream ended before the command's exit status arrived", reason="ExecInterrupted"
            )
    except _Timeout:
        raise KubeTransient(
            f"the command did not finish within {max(0.0, end - started):.0f}s", reason="ExecTimeout"
        ) from None
    except KubeError:
        raise
    except EgressRefused as exc:
        raise from_transport_error(exc) from exc
    except (OSError, ssl.SSLError) as exc:
        raise from_transport_error(exc) from exc
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
    result = ExecResult(
        exit_code=code,
        stdout=redact_text(stdout.text(), secrets),
        stderr=redact_text(stderr.text(), secrets),
        duration=time.monotonic() - started,
        truncated=stdout.truncated or stderr.truncated,
        error=error,
    )
    logger.info(
        "exec in pod %s/%s: %s -> exit %s in %.2fs",
        namespace,
        pod,
        redact_text(" ".join(command), secrets)[:300],
        code,
        result.duration,
    )
    return result


def _upgrade(stream: _Stream, endpoint: Endpoint, path: str, namespace: str) -> str:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {endpoint.host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: {V5}, {V4}",
        "User-Agent: tenter",
        *(f"{name}: {value}" for name, value in endpoint.headers),
    ]
    stream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    status, headers = _read_response_head(stream)
    if status != 101:
        raise _refused(status, headers, _read_error_body(stream, headers), namespace)
    expected = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != expected or headers.get("upgrade", "").lower() != "websocket":
        raise KubePermanent(NOT_KUBERNETES, reason="NotKubernetes")
    protocol = headers.get("sec-websocket-protocol", "")
    if protocol not in (V5, V4):
        raise KubePermanent(
            "the API server offers no exec protocol Tenter speaks (v5 or v4.channel.k8s.io)",
            reason="ExecProtocol",
        )
    return protocol
