"""`[server] allowed_networks`: which sender addresses the daemon takes records from.

Checked per TCP connection (when it is accepted) and per UDP datagram; the answer per
address is cached (bounded), so a datagram from a known address costs one dict lookup.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["Network", "parse_networks", "PeerFilter"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CACHE_MAX = 65536  # addresses remembered; emptied when full


def parse_networks(value: Sequence[object]) -> tuple[Network, ...]:
    """["10.77.0.0/24", "::1/128", "192.0.2.7"] → networks; ValueError names the bad entry."""
    out = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"entries must be strings like \"10.0.0.0/8\", not {item!r}")
        try:
            out.append(ipaddress.ip_network(item, strict=True))
        except ValueError as e:
            raise ValueError(f"{item!r} is not a network in CIDR notation ({e})") from None
    return tuple(out)


class PeerFilter:
    """allowed(peer) for peer addresses as the receivers write them (ogrt.protocols.tcp.peer_text)."""

    def __init__(self, networks: Sequence[Network] | None) -> None:
        self.networks = tuple(networks) if networks is not None else None
        self._cache: dict[str, bool] = {}

    def allowed(self, peer: str) -> bool:
        if self.networks is None:
            return True
        found = self._cache.get(peer)
        if found is None:
            try:
                addr = ipaddress.ip_address(peer)
            except ValueError:
                found = False
            else:
                found = any(addr in net for net in self.networks)
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[peer] = found
        return found
