"""In-memory object storage with (resource, namespace) -> name indexes and a watch event window."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]


@dataclass(frozen=True)
class Event:
    rv: int
    key: Key
    namespace: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj


class TooOld(Exception):
    pass


class Store:
    """Stored objects are treated as immutable: writers always store a fresh dict."""

    def __init__(self, window: int = 10000) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 0
        self.buckets: dict[tuple[Key, str], dict[str, Obj]] = {}
        self.by_uid: dict[str, tuple[Key, str, str]] = {}
        self.dependents: dict[str, set[tuple[Key, str, str]]] = {}
        self.window = window
        self.events: deque[Event] = deque()
        self.compacted_rv = 0  # rv of the newest event dropped from the window
        self.closed = False

    # -- reads -------------------------------------------------------------
    def get(self, key: Key, ns: str, name: str) -> Obj | None:
        b = self.buckets.get((key, ns))
        return b.get(name) if b else None

    def list_objects(self, key: Key, ns: str | None) -> tuple[list[Obj], int]:
        with self.lock:
            if ns is not None:
                b = self.buckets.get((key, ns))
                items = [b[n] for n in sorted(b)] if b else []
            else:
                items = []
                for k, bns in sorted(self.buckets):
                    if k == key:
                        b = self.buckets[(k, bns)]
                        items.extend(b[n] for n in sorted(b))
            return items, self.rv

    def namespaced_keys(self, ns: str) -> list[Key]:
        with self.lock:
            return [k for (k, bns), b in self.buckets.items() if bns == ns and b]

    def count(self, key: Key, ns: str) -> int:
        b = self.buckets.get((key, ns))
        return len(b) if b else 0

    def locate_uid(self, uid: str) -> tuple[Key, str, str] | None:
        return self.by_uid.get(uid)

    def dependents_of(self, uid: str) -> list[tuple[Key, str, str]]:
        with self.lock:
            return sorted(self.dependents.get(uid, ()))

    # -- writes ------------------------------------------------------------
    def next_rv(self) -> int:
        with self.lock:
            self.rv += 1
            return self.rv

    def put(self, key: Key, ns: str, obj: Obj, etype: str) -> Obj:
        """Store obj (assigning a new resourceVersion) and emit a watch event."""
        with self.lock:
            self.rv += 1
            md = obj["metadata"]
            md["resourceVersion"] = str(self.rv)
            name = md["name"]
            bucket = self.buckets.setdefault((key, ns), {})
            old = bucket.get(name)
            if old is not None:
                self._unindex(key, ns, old)
            bucket[name] = obj
            self._index(key, ns, obj)
            self._emit(Event(self.rv, key, ns, etype, obj))
            return obj

    def remove(self, key: Key, ns: str, name: str) -> Obj | None:
        with self.lock:
            bucket = self.buckets.get((key, ns))
            if not bucket or name not in bucket:
                return None
            old = bucket.pop(name)
            if not bucket:
                del self.buckets[(key, ns)]
            self._unindex(key, ns, old)
            self.rv += 1
            gone = dict(old)
            gone["metadata"] = dict(old["metadata"], resourceVersion=str(self.rv))
            self._emit(Event(self.rv, key, ns, "DELETED", gone))
            return gone

    def _index(self, key: Key, ns: str, obj: Obj) -> None:
        md = obj["metadata"]
        uid = md.get("uid")
        if uid:
            self.by_uid[uid] = (key, ns, md["name"])
        for ref in md.get("ownerReferences") or ():
            ouid = ref.get("uid")
            if ouid:
                self.dependents.setdefault(ouid, set()).add((key, ns, md["name"]))

    def _unindex(self, key: Key, ns: str, obj: Obj) -> None:
        md = obj["metadata"]
        uid = md.get("uid")
        if uid and self.by_uid.get(uid) == (key, ns, md["name"]):
            del self.by_uid[uid]
        for ref in md.get("ownerReferences") or ():
            deps = self.dependents.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard((key, ns, md["name"]))
                if not deps:
                    del self.dependents[ref["uid"]]

    def _emit(self, ev: Event) -> None:
        self.events.append(ev)
        while len(self.events) > self.window:
            self.compacted_rv = self.events.popleft().rv
        self.cond.notify_all()

    # -- watch -------------------------------------------------------------
    def events_after(self, rv: int) -> list[Event]:
        """Events with resourceVersion > rv. Raises TooOld if some were compacted away."""
        with self.lock:
            if rv < self.compacted_rv:
                raise TooOld()
            out: list[Event] = []
            for ev in reversed(self.events):
                if ev.rv <= rv:
                    break
                out.append(ev)
            out.reverse()
            return out

    def wait(self, rv: int, timeout: float) -> None:
        with self.lock:
            if self.rv > rv or self.closed:
                return
            self.cond.wait(timeout)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.cond.notify_all()
