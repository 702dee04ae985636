"""The connections the gateway opens: vetted by the egress policy at connect time, never redirected.

`EgressPoolManager` replaces the pool manager the `kubernetes` client builds. Its connections resolve
the server's host once (`EgressPolicy.vetted_addresses`: every address vetted, `EgressRefused` before
any socket is opened when one is refused) and connect to a vetted address; the connection's `host`
stays the kubeconfig's name, so TLS still sends it as SNI and verifies the certificate against it.
Redirects are returned as responses (the gateway treats them as "not a Kubernetes API server"), and
proxies (`HTTPS_PROXY` in the worker's environment) are not used.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

from reconcile.kube.egress import EgressPolicy


class _Vetted:
    """Mixin for urllib3 connections: connect only to addresses the policy allows."""

    egress: EgressPolicy
    egress_address: str | None
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.egress.vetted_addresses(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        last: OSError | None = None
        for address in addresses:
            try:
                sock = connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:  # socket.timeout included; try the next vetted address
                last = exc
                continue
            self.egress_address = address
            return sock
        if isinstance(last, TimeoutError):
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from last
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}") from last  # type: ignore[arg-type]


class VettedHTTPConnection(_Vetted, HTTPConnection):
    def __init__(self, *args: Any, egress: EgressPolicy, **kwargs: Any) -> None:
        self.egress, self.egress_address = egress, None
        super().__init__(*args, **kwargs)


class VettedHTTPSConnection(_Vetted, HTTPSConnection):
    def __init__(self, *args: Any, egress: EgressPolicy, **kwargs: Any) -> None:
        self.egress, self.egress_address = egress, None
        super().__init__(*args, **kwargs)


_CONNECTIONS: dict[str, type[HTTPConnection]] = {"http": VettedHTTPConnection, "https": VettedHTTPSConnection}


class EgressPoolManager(urllib3.PoolManager):
    """A PoolManager whose pools open only vetted connections and which never follows redirects."""

    def __init__(self, egress: EgressPolicy, **connection_pool_kw: Any) -> None:
        super().__init__(**connection_pool_kw)
        self.egress = egress

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = _CONNECTIONS[scheme]  # type: ignore[assignment]
        pool.conn_kw["egress"] = self.egress
        return pool

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> urllib3.BaseHTTPResponse:
        return super().urlopen(method, url, redirect=False, **kw)


def egress_pool_manager(current: urllib3.PoolManager, egress: EgressPolicy) -> EgressPoolManager:
    """An EgressPoolManager with the TLS and pool settings of the one the client built (minus any proxy)."""
    kw = {k: v for k, v in current.connection_pool_kw.items() if not k.startswith("_proxy")}
    return EgressPoolManager(egress, **kw)


def vetted_socket(egress: EgressPolicy, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to `host` for a stream the client cannot make through urllib3 (exec's
    WebSocket): resolved once, every address vetted (`EgressRefused` before any socket is opened),
    connected to a vetted address. Raises OSError (the last one) when none accepts."""
    addresses = egress.vetted_addresses(host, port)
    last: OSError | None = None
    for address in addresses:
        try:
            sock = connection.create_connection((address, port), timeout)
        except OSError as exc:
            last = exc
            continue
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    assert last is not None
    raise last
