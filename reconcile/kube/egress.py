"""The egress policy: which addresses the workers may connect to on a user's behalf (SSRF defence).

A kubeconfig names a server; the worker connects there and tells the user how it went. Without a
policy that is a way to reach the worker's own network: loopback, the cloud metadata service, private
ranges. So every address is vetted:

- refused: loopback, link-local (incl. the metadata addresses 169.254.169.254 and fd00:ec2::254),
  private and shared ranges, multicast, unspecified, reserved and documentation ranges, IPv4 and IPv6,
  looking through IPv4-mapped, 6to4 and NAT64 IPv6 spellings to the IPv4 address inside;
- allowed: public addresses, and whatever falls into the operator's `allow` networks
  (`KUBE_EGRESS_ALLOW_CIDRS`: on-prem clusters often live on private addresses; tests and the dev
  stack allow 127.0.0.0/8 for kubesim).

`check_url` is the save-time check (no DNS: literal addresses, in any spelling the resolver accepts,
and names that always mean this machine). `EgressPolicy.vetted_addresses` is the connect-time
guarantee: `transport.py` resolves the host once through `resolver`, vets every address and connects
to a vetted one, so a DNS answer that changes between check and connect (rebinding) cannot slip by.

Pure standard library: the web process uses it at save time without loading `kubernetes`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

REFUSED_MESSAGE = "refused by the egress policy"

# Names that mean this machine (or its metadata service) whatever DNS says.
_LOCAL_NAMES = {
    "localhost": "127.0.0.1",
    "localhost.localdomain": "127.0.0.1",
    "ip6-localhost": "::1",
    "ip6-loopback": "::1",
    "metadata.google.internal": "169.254.169.254",
    "metadata": "169.254.169.254",
}
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class EgressRefused(Exception):
    """The policy refuses this host or address. `str()` ("refused by the egress policy (loopback
    address)") is safe to show to the kubeconfig's owner."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (literal addresses come back as they are, normalised)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_networks(cidrs: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from "10.0.0.0/8, fd00::/8" or a list of such strings (ValueError when one is bad)."""
    items = cidrs.split(",") if isinstance(cidrs, str) else cidrs
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 spelling carries: IPv4-mapped, 6to4 or NAT64."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def why_refused(ip: IPAddress) -> str | None:
    """The kind of address that makes `ip` refused by default (None: a public address)."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        return why_refused(inner)
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or not ip.is_global:
        return "private"
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address when `host` is one, in any spelling the C resolver also accepts (2130706433,
    0x7f.1, 127.1, [::1]); None for a name."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """Public addresses plus the `allow` networks; `resolver` is how names become addresses."""

    allow: tuple[IPNetwork, ...] = ()
    resolver: Resolver = system_resolver

    @classmethod
    def from_cidrs(cls, cidrs: str | Iterable[str], resolver: Resolver | None = None) -> EgressPolicy:
        return cls(allow=parse_networks(cidrs), resolver=resolver or system_resolver)

    def allowed(self, ip: IPAddress) -> bool:
        inner = _embedded_ipv4(ip)
        for candidate in (ip, inner):
            if candidate is not None and any(
                candidate.version == net.version and candidate in net for net in self.allow
            ):
                return True
        return why_refused(ip) is None

    def vet(self, ip: IPAddress) -> None:
        if not self.allowed(ip):
            raise EgressRefused(f"{REFUSED_MESSAGE} ({why_refused(ip)} address)")

    def vetted_addresses(self, host: str, port: int) -> list[str]:
        """Resolve `host` once and vet every address (any refused one refuses the host)."""
        literal = literal_address(host)
        addresses = [str(literal)] if literal is not None else self.resolver(host, port)
        if not addresses:
            raise OSError(f"no address for {host}")
        for address in addresses:
            self.vet(ipaddress.ip_address(address.split("%", 1)[0]))
        return addresses

    def check_url(self, url: str) -> None:
        """Save-time check of a server URL, without DNS: credentials in the URL, literal addresses
        and names that always mean this machine are refused (unless an allowed network covers them)."""
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname or ""
        except ValueError:
            raise EgressRefused(f"{REFUSED_MESSAGE} (invalid URL)") from None
        if parts.username is not None or parts.password is not None:
            raise EgressRefused(f"{REFUSED_MESSAGE} (user name or password in the URL)")
        literal = literal_address(host)
        if literal is not None:
            self.vet(literal)
            return
        name = host.rstrip(".").lower()
        if name.endswith(".localhost"):
            name = "localhost"
        if name in _LOCAL_NAMES:
            self.vet(ipaddress.ip_address(_LOCAL_NAMES[name]))
