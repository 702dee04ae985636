"""HTTPS transport: threaded HTTP/1.1 server with keep-alive, TCP_NODELAY and bearer-token auth."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubesim import wsproto
from kubesim.api import Api
from kubesim.messages import Request, Response, dumps
from kubesim.tls import TLSMaterial

log = logging.getLogger("kubesim")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubesim"
    sys_version = ""
    server: KubeSimHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.api.stats.connection()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            log.info("%s - %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def _serve(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = b""
        length = int(headers.get("content-length") or 0)
        if length:
            body = self.rfile.read(length)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        req = Request(self.command, url.path, query, headers, body, url.query)
        t0 = time.perf_counter()
        try:
            resp = self.server.api.handle(req)
        except Exception:  # pragma: no cover - defensive
            log.exception("kubesim: internal error on %s %s", self.command, self.path)
            resp = Response(
                500,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": "internal error",
                    "reason": "InternalError",
                    "code": 500,
                },
            )
        if resp.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if resp.stream is not None:
            self._send_stream(resp)
            return
        if resp.upgrade is not None:
            self._upgrade(resp, headers)
            return
        payload = bytes(resp.body) if isinstance(resp.body, bytes | bytearray) else dumps(resp.body)
        self.send_response(resp.code)
        ctype = resp.headers.pop("Content-Type", "application/json")
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        # headers and body in one write (one TLS record, one segment with TCP_NODELAY)
        buf: list[bytes] = self._headers_buffer  # type: ignore[attr-defined]
        buf.append(b"\r\n")
        if self.command != "HEAD":
            buf.append(payload)
        self.wfile.write(b"".join(buf))
        buf.clear()
        if not url.path.startswith("/_kubesim"):
            self.server.api.stats.observe(time.perf_counter() - t0)

    def _read_chunked(self) -> bytes:
        out = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    def _send_stream(self, resp: Response) -> None:
        self.send_response(resp.code)
        self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        assert resp.stream is not None
        try:
            for chunk in resp.stream:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (ConnectionError, ssl.SSLError, OSError):
            self.close_connection = True
        finally:
            close = getattr(resp.stream, "close", None)
            if close:
                close()

    def _upgrade(self, resp: Response, headers: dict[str, str]) -> None:
        """Switch to WebSocket (RFC 6455) and hand the connection to `resp.upgrade`; it is closed after."""
        protocol = resp.headers.get("Sec-WebSocket-Protocol", "")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", wsproto.accept_key(headers.get("sec-websocket-key", "")))
        if protocol:
            self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        assert resp.upgrade is not None
        try:
            resp.upgrade(self.connection, protocol)
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve
    do_HEAD = _serve


class KubeSimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, addr: tuple[str, int], api: Api, tls: TLSMaterial | None, verbose: bool = False
    ) -> None:
        self.api = api
        self.verbose = verbose
        self.ssl_ctx: ssl.SSLContext | None = None
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
            ctx.set_alpn_protocols(["http/1.1"])
            self.ssl_ctx = ctx
        super().__init__(addr, Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.ssl_ctx is not None:
            sock = self.ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.verbose:
            super().handle_error(request, client_address)


def serve_in_thread(server: KubeSimHTTPServer) -> threading.Thread:
    t = threading.Thread(
        target=server.serve_forever, name="kubesim-http", kwargs={"poll_interval": 0.2}, daemon=True
    )
    t.start()
    return t


def kubeconfig_text(
    server_url: str,
    ca_pem: bytes,
    token: str,
    namespace: str,
    name: str = "kubesim",
    user: str = "kubesim-admin",
) -> str:
    import base64

    import yaml

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user, "namespace": namespace}}],
        "current-context": name,
    }
    return yaml.safe_dump(cfg, sort_keys=False)


__all__ = ["KubeSimHTTPServer", "kubeconfig_text", "serve_in_thread"]
