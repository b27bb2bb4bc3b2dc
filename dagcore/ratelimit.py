"""Token-bucket rate limiting shared by every process (Synapse's ``rc_*`` semantics).

A bucket holds up to ``burst_count`` actions and refills at ``per_second``.
With Redis configured the bucket lives in Redis (atomic Lua script), so N
Tribune processes enforce one limit; otherwise it lives in this process (the
quick start runs a single process).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import redis
from django.conf import settings


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    retry_after_ms: int


_LUA = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local peek = tonumber(ARGV[5] or '0')
local state = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + (now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  if peek == 0 then tokens = tokens - cost end
  allowed = 1
else
  if rate > 0 then wait = (cost - tokens) / rate else wait = 3600 end
end
redis.call('HSET', key, 'tokens', tokens, 'ts', now)
local ttl = 3600
if rate > 0 then ttl = math.ceil(burst / rate) + 1 end
redis.call('EXPIRE', key, ttl)
return {allowed, tostring(wait)}
"""


class _LocalBuckets:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: float, burst: float, cost: float, peek: bool = False) -> RateLimitResult:
        now = time.monotonic()
        with self.lock:
            tokens, ts = self.buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - ts) * rate)
            if tokens >= cost:
                self.buckets[key] = (tokens if peek else tokens - cost, now)
                return RateLimitResult(True, 0)
            self.buckets[key] = (tokens, now)
            wait = (cost - tokens) / rate if rate > 0 else 3600.0
            return RateLimitResult(False, max(1, math.ceil(wait * 1000)))

    def reset(self) -> None:
        with self.lock:
            self.buckets.clear()


_local = _LocalBuckets()


@cache
def _redis_script() -> Any:

    assert settings.REDIS_URL is not None
    client = redis.Redis.from_url(settings.REDIS_URL)
    return client.register_script(_LUA)


def check_rate_limit(
    action: str, key: str, *, per_second: float, burst_count: float, cost: float = 1.0, peek: bool = False
) -> RateLimitResult:
    """Take ``cost`` from the bucket ``action:key``; say whether it was allowed.

    ``peek``: only say whether ``cost`` could be taken now, taking nothing (e.g.
    refuse a login once failed attempts ran out, but count only failures).
    """
    if per_second <= 0 and burst_count <= 0:
        return RateLimitResult(True, 0)
    bucket = f"{settings.REDIS_KEY_PREFIX}:rl:{action}:{key}"
    if settings.REDIS_URL:
        allowed, wait = _redis_script()(
            keys=[bucket], args=[per_second, burst_count, time.time(), cost, 1 if peek else 0]
        )
        if int(allowed):
            return RateLimitResult(True, 0)
        return RateLimitResult(False, max(1, math.ceil(float(wait) * 1000)))
    return _local.take(bucket, per_second, burst_count, cost, peek)


def reset_local_buckets() -> None:
    _local.reset()
