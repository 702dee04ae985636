"""Celery beat that may run as several replicas: only the holder of a leader lock sends periodic tasks.

The lock is a Redis key (BEAT_LEADER_KEY) set with NX and an expiry (BEAT_LEADER_TTL_SECONDS) holding this
process's random id. The leader renews it on every tick (ticks are at most a third of the expiry apart);
the others try to take it on theirs. A leader that dies stops renewing and another beat takes over when
the key expires; one that stops cleanly deletes the key so the takeover is immediate. A beat that cannot
reach Redis is not the leader (it could not send anything either).

The leader also records when it last sent each entry (a Redis hash beside the lock), and a beat taking
over continues from those times: a takeover neither repeats a job early nor skips one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from celery.beat import PersistentScheduler
from django.conf import settings

logger = logging.getLogger(__name__)

# Renew only if the key still holds our id (another beat may have taken an expired lock).
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class LeaderLock:
    def __init__(self, url: str, key: str, ttl: float) -> None:
        self.key = key
        self.ttl_ms = max(int(ttl * 1000), 1000)
        self.ident = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self.held = False

    def acquire_or_renew(self) -> bool:
        try:
            if self.held and self.client.eval(_RENEW, 1, self.key, self.ident, self.ttl_ms):
                return True
            taken = bool(self.client.set(self.key, self.ident, nx=True, px=self.ttl_ms))
        except redis.RedisError as exc:
            if self.held:
                logger.warning("beat: leader lock unreachable (%s); stepping down", exc.__class__.__name__)
            self.held = False
            return False
        if taken != self.held:
            logger.info("beat: %s the leader lock (%s)", "took" if taken else "lost", self.ident)
        self.held = taken
        return taken

    def release(self) -> None:
        if not self.held:
            return
        with contextlib.suppress(redis.RedisError):  # it expires on its own
            self.client.eval(_RELEASE, 1, self.key, self.ident)
        self.held = False


class LeaderScheduler(PersistentScheduler):
    """celery beat --scheduler config.beat:LeaderScheduler (the default, CELERY_BEAT_SCHEDULER)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock = LeaderLock(
            settings.BEAT_LEADER_REDIS_URL, settings.BEAT_LEADER_KEY, settings.BEAT_LEADER_TTL_SECONDS
        )
        self.renew_every = settings.BEAT_LEADER_TTL_SECONDS / 3
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        was_leader = self.lock.held
        if not self.lock.acquire_or_renew():
            return self.renew_every
        if not was_leader:
            self._continue_from_last_runs()
        return min(super().tick(*args, **kwargs), self.renew_every)

    @property
    def _runs_key(self) -> str:
        return f"{self.lock.key}:last-runs"

    def reserve(self, entry: Any) -> Any:
        new_entry = super().reserve(entry)
        with contextlib.suppress(redis.RedisError):
            self.lock.client.hset(self._runs_key, entry.name, new_entry.last_run_at.timestamp())
            self.lock.client.expire(self._runs_key, 7 * 24 * 3600)
        return new_entry

    def _continue_from_last_runs(self) -> None:
        try:
            runs = self.lock.client.hgetall(self._runs_key)
        except redis.RedisError:
            return
        for raw_name, raw_ts in runs.items():
            entry = self.schedule.get(raw_name.decode() if isinstance(raw_name, bytes) else raw_name)
            if entry is None:
                continue
            last = datetime.fromtimestamp(float(raw_ts), tz=UTC)
            if entry.last_run_at is None or last > entry.last_run_at:
                entry.last_run_at = last
        self._heap = None  # rebuilt from the entries on this tick

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.lock.release()
