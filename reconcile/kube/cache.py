"""The per-process client cache: one `Kube` per user, built on first use (bounded LRU, fork-safe)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

from reconcile.kube.client import Kube, _setting

CLIENT_CACHE_SIZE = 100


_cache: OrderedDict[str, tuple[str, Kube]] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_size() -> int:
    return max(1, int(_setting("KUBE_CLIENT_CACHE_SIZE", CLIENT_CACHE_SIZE)))


def kubeconfig_hash(kubeconfig_text: str) -> str:
    return hashlib.sha256(kubeconfig_text.encode("utf-8")).hexdigest()


def get_kube(user_id: int | str, kubeconfig_text: str) -> Kube:
    """The cached client of this user for this kubeconfig (built on first use).

    Keyed by (user, sha256 of the text): a new kubeconfig for the same user replaces and closes
    the old client. Least recently used clients are closed beyond KUBE_CLIENT_CACHE_SIZE.
    """
    key = str(user_id)
    digest = kubeconfig_hash(kubeconfig_text)
    stale: list[Kube] = []
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0] == digest and not entry[1].closed:
            _cache.move_to_end(key)
            return entry[1]
        kube = Kube(kubeconfig_text)  # may raise KubeconfigInvalid: the old entry stays until replaced
        if entry is not None:
            stale.append(entry[1])
        _cache[key] = (digest, kube)
        _cache.move_to_end(key)
        limit = _cache_size()
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
