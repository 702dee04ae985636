"""The per-process client cache: one `Kube` per user, built on first use (bounded LRU, fork-safe).

The caller passes the timeouts and the size (the reconcilers take them from the settings).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

from reconcile.kube.client import CONNECT_TIMEOUT, READ_TIMEOUT, Kube
from reconcile.kube.egress import EgressPolicy

CLIENT_CACHE_SIZE = 100


_cache: OrderedDict[str, tuple[str, Kube]] = OrderedDict()
_cache_lock = threading.Lock()


def kubeconfig_hash(kubeconfig_text: str) -> str:
    return hashlib.sha256(kubeconfig_text.encode("utf-8")).hexdigest()


def get_kube(
    user_id: int | str,
    kubeconfig_text: str,
    *,
    timeouts: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
    max_clients: int = CLIENT_CACHE_SIZE,
    egress: EgressPolicy | None = None,
) -> Kube:
    """The cached client of this user for this kubeconfig (built on first use).

    Keyed by (user, sha256 of the text): a new kubeconfig for the same user (or new timeouts, or a
    new egress policy) replaces and closes the old client. Least recently used clients are closed
    beyond `max_clients`.
    """
    key = str(user_id)
    digest = kubeconfig_hash(kubeconfig_text)
    timeouts = (float(timeouts[0]), float(timeouts[1]))
    egress = egress if egress is not None else EgressPolicy()
    stale: list[Kube] = []
    with _cache_lock:
        entry = _cache.get(key)
        if (
            entry is not None
            and entry[0] == digest
            and entry[1].timeouts == timeouts
            and entry[1].egress == egress
            and not entry[1].closed
        ):
            _cache.move_to_end(key)
            return entry[1]
        # may raise KubeconfigInvalid: the old entry stays until replaced
        kube = Kube(kubeconfig_text, connect_timeout=timeouts[0], read_timeout=timeouts[1], egress=egress)
        if entry is not None:
            stale.append(entry[1])
        _cache[key] = (digest, kube)
        _cache.move_to_end(key)
        limit = max(1, int(max_clients))
        while len(_cache) > limit:
            _, (_, evicted) = _cache.popitem(last=False)
            stale.append(evicted)
    for old in stale:  # outside the lock; in-flight requests on them finish on their own connections
        old.close()
    return kube


def _reset_after_fork() -> None:
    # The child must not share the parent's sockets or a lock some parent thread may hold: start
    # empty without closing (closing would act on connections the parent still uses).
    global _cache_lock, _cache
    _cache_lock = threading.Lock()
    _cache = OrderedDict()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
