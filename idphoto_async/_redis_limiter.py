"""A rate limiter shared through Redis by many processes on many machines (one key, one QPS).

Every slot is decided by one Lua script (GCRA, burst 1) that runs atomically in Redis and
reads the Redis server's ``TIME``, so callers with skewed clocks still agree. It answers 0
(slot granted) or the milliseconds to wait; `RedisLimiter.acquire` sleeps that long and
asks again. Grants follow a schedule ``(1 + margin) / floor(qps)`` seconds apart (``(1 +
margin) / qps`` below 1 QPS; a grant that woke late keeps its place on it), exactly like
`idphoto_async._limiter.TokenBucketLimiter` with ``burst=1``, and like it the script keeps
a window over the requests' real departures: a slot taken with `RedisLimiter.reserve` is
pending (it may leave at any moment) until its
`idphoto_async._limiter.Reservation.publish` stamps its departure on the server's clock, and
no slot is granted while ``floor(qps)`` requests left (or may leave) within one window. So a
server that allows ``floor(qps)`` arrivals in any closed 1 s window never sees one too many,
whatever the number of workers and however late a request leaves after its grant.

Backends: on asyncio the calls go through ``redis.asyncio``; on trio (which ``redis.asyncio``
does not support) through a synchronous ``redis.Redis`` in anyio worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import uuid
from collections.abc import Callable
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import anyio
import anyio.lowlevel
import anyio.to_thread
import redis
import redis.asyncio
import redis.asyncio.retry
import redis.backoff
import redis.commands.core
import redis.connection
import redis.exceptions
import redis.retry

from ._constants import DEFAULT_QPS
from ._errors import IDPhotoError, LimiterTimeoutError
from ._eventloop import on_asyncio
from ._limiter import Reservation, TokenBucketLimiter
from ._waiters import FairQueue, Waiter

__all__ = ["DEFAULT_REDIS_URL", "LimiterUnavailableError", "RedisLimiter"]

REDIS_DEFAULT_MARGIN = 0.04
"""Relative safety margin of `RedisLimiter` (4 %: 40 ms per second of window).

Slots taken with `RedisLimiter.reserve` count from their requests' real departures (as in
the in-process limiter; a stamp errs late by the way to Redis, never early), so the margin
covers the transit from every worker to the API server and the jitter of its clock.
"""

logger = logging.getLogger("idphoto_async.limiter")

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_KEY: Final = "idphoto:limiter:default"
FailMode = Literal["closed", "local"]

_EPS = 1e-9
_parse_url: Callable[[str], dict[str, Any]] = redis.connection.parse_url  # untyped upstream
_RECHECK_AFTER: Final = 5.0  # seconds on the local fallback before trying Redis again
_IDLE_TTL_US: Final = 60_000_000  # the state key outlives its last use by a minute
_MAX_GRACE: Final = 0.05  # seconds a slot stays reserved for the caller that claimed it
_MAX_PENDING_TTL: Final = 30.0  # seconds, so the state key (kept a minute) outlives them

# KEYS[1]: one hash (so one cluster slot) with tat, paused_until, recover_from (microseconds
# of the server's TIME), floor (the rate factor right after the last slowdown), one field
# "q:<caller id>" = "<since>,<deadline>" per process waiting for a slot, and one field
# "s:<slot id>" per recent slot: "<departure>" once its request left, "p<expiry>" while it
# is pending (granted, not yet reported sent: it counts as leaving at every decision).
# ARGV: op ("acquire" | "sent" | "limited" | "ping"), spacing_us, decrease, min_factor,
#       quiet_us, recovery_per_us, pause_us ("limited"), idle_ttl_us, caller id, grace_us,
#       max_wait_us (-1: no limit), window_us, limit, slot id, pending_us (0: the request
#       leaves at the grant, else the pending slot's lifetime), elapsed_us ("sent": how long
#       ago the request left).
# Returns 0 when a slot is granted (acquire) or recorded (sent, limited), else the ms to wait.
# Fairness between processes: a free slot goes to the caller that has waited longest (FIFO
# by first refusal); a waiter that does not come back within grace_us of its wake-up time
# (cancelled, timed out, dead) loses its place. Window over departures: a grant needs fewer
# than `limit` slots departed within the last window_us, pending ones included.
_LUA: Final = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local op = ARGV[1]
local spacing = tonumber(ARGV[2])
local decrease = tonumber(ARGV[3])
local min_factor = tonumber(ARGV[4])
local quiet = tonumber(ARGV[5])
local recovery = tonumber(ARGV[6])
local window = tonumber(ARGV[12])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function num(x) return string.format('%.0f', x) end
local function ms(x) return math.max(1, math.ceil(x / 1000)) end
if op == 'sent' then
  redis.call('HSET', key, 's:' .. ARGV[14], num(now - math.max(0, tonumber(ARGV[16]))))
  local keep = math.ceil((window + tonumber(ARGV[8])) / 1000)
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, keep) end
  return 0
end
local s = redis.call('HMGET', key, 'tat', 'paused_until', 'floor', 'recover_from')
local tat = tonumber(s[1]) or 0
local paused = tonumber(s[2]) or 0
local floor_f = tonumber(s[3]) or 1
local recover_from = tonumber(s[4]) or 0
local function factor(at)
  if at <= recover_from then return floor_f end
  return math.min(1, floor_f + (at - recover_from) * recovery)
end
if op == 'acquire' then
  local mine = 'q:' .. ARGV[9]
  local grace = tonumber(ARGV[10])
  local max_wait = tonumber(ARGV[11])
  local limit = tonumber(ARGV[13])
  local pending_for = tonumber(ARGV[15])
  local my_since = now
  local first, first_since, first_deadline = nil, nil, nil
  local departed, pending, pending_end = {}, 0, now + pending_for
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local field = all[i]
    local kind = string.sub(field, 1, 2)
    if kind == 'q:' then
      local since, deadline = string.match(all[i + 1], '([^,]+),([^,]+)')
      since, deadline = tonumber(since), tonumber(deadline)
      if field == mine then my_since = since end
      if deadline < now and field ~= mine then
        redis.call('HDEL', key, field)
      elseif first == nil or since < first_since or (since == first_since and field < first) then
        first, first_since, first_deadline = field, since, deadline
      end
    elseif kind == 's:' then
      local value = all[i + 1]
      if string.sub(value, 1, 1) == 'p' then
        local expiry = tonumber(string.sub(value, 2))
        if expiry <= now then
          redis.call('HDEL', key, field)
        else
          pending = pending + 1
          pending_end = math.max(pending_end, expiry)
        end
      elseif tonumber(value) + window <= now then
        redis.call('HDEL', key, field)
      else
        departed[#departed + 1] = {tonumber(value), field}
      end
    end
  end
  table.sort(departed, function(a, b) return a[1] < b[1] end)
  while #departed > limit do
    redis.call('HDEL', key, departed[1][2])
    table.remove(departed, 1)
  end
  local slot = math.max(tat, paused)
  local free = limit - pending
  if free > 0 and #departed >= free then
    slot = math.max(slot, departed[#departed - free + 1][1] + window)
  end
  local wait
  if free <= 0 then
    wait = math.max(1000, math.min(10000, grace))  -- every place pending: poll for a stamp
  elseif slot > now then
    wait = slot - now
  elseif first == nil or first == mine then
    -- a grant that woke late keeps its place on the schedule; an idle slot restarts it
    local step = spacing / factor(now)
    if now - tat < step then tat = tat + step else tat = now + step end
    redis.call('HSET', key, 'tat', num(tat))
    redis.call('HDEL', key, mine)
    if pending_for > 0 then
      redis.call('HSET', key, 's:' .. ARGV[14], 'p' .. num(now + pending_for))
    else
      redis.call('HSET', key, 's:' .. ARGV[14], num(now))
    end
    wait = 0
  else
    wait = math.max(1000, math.min(grace, first_deadline - now))
  end
  if wait > 0 then
    if max_wait >= 0 and wait > max_wait then
      redis.call('HDEL', key, mine)
      return ms(wait)
    end
    redis.call('HSET', key, mine, num(my_since) .. ',' .. num(now + wait + grace))
  end
  local last = math.max(tat, recover_from + (1 - floor_f) / recovery, pending_end + window)
  redis.call('PEXPIRE', key, math.max(1000, math.ceil((last - now + tonumber(ARGV[8])) / 1000)))
  if wait > 0 then return ms(wait) end
  return 0
elseif op == 'limited' then
  local pause = tonumber(ARGV[7])
  if now >= paused then floor_f = math.max(min_factor, factor(now) * decrease) end
  paused = math.max(paused, now + pause)
  recover_from = paused + quiet
  tat = math.max(tat, paused)
  redis.call('HSET', key, 'tat', num(tat), 'paused_until', num(paused),
             'floor', string.format('%.6f', floor_f), 'recover_from', num(recover_from))
  local ttl = math.max(tat, recover_from + (1 - floor_f) / recovery) - now + tonumber(ARGV[8])
  redis.call('PEXPIRE', key, math.max(1000, math.ceil(ttl / 1000)))
  return 0
elseif op == 'ping' then
  return 0
end
return redis.error_reply('unknown op ' .. tostring(op))
"""


class LimiterUnavailableError(IDPhotoError):
    """The shared limiter's Redis cannot be reached; no slot was taken (fail closed)."""

    retryable = True

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(
            f"The shared rate limiter's Redis at {url} is unavailable ({detail}). No request was "
            "sent, so the key's QPS is never exceeded. Start Redis or fix redis_url, then retry; "
            "or pass fail_mode='local' with expected_workers=N to fall back to an in-process "
            "limiter at qps/N while Redis is down."
        )


def redact_url(url: str) -> str:
    """``url`` with any password (in the userinfo or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, sep, _ = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if sep else f"{user}@{host}"
        query = parts.query
        if query:
            pairs = [
                (k, "***" if k.lower() == "password" else v)
                for k, v in parse_qsl(query, keep_blank_values=True)
            ]
            query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable redis url>"


def _client_url(client: redis.Redis | redis.asyncio.Redis) -> str:
    """A display URL (never with the password) for an injected client."""
    kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    user = kwargs.get("username")
    auth = f"{quote(str(user))}:***@" if user else (":***@" if kwargs.get("password") else "")
    return f"redis://{auth}{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/" + str(
        kwargs.get("db", 0)
    )


class RedisLimiter:
    """A `idphoto_async._limiter.Limiter` shared through Redis by many processes.

    All processes (on any machine) that use the same ``key`` on the same Redis share one
    budget of ``qps`` requests per second; give them all the same ``qps`` and ``margin``.
    After any of them reports a 429 (`on_rate_limited`), every one of them pauses and
    the shared rate slows down and recovers as in
    `idphoto_async._limiter.TokenBucketLimiter`.

    ``priority`` and the FIFO order are process-local: this process serves its own priority
    callers first, but across processes slots go to whoever asks first. Only the head of the
    local queue talks to Redis, so a process costs about one Redis call per slot.

    Args:
        redis_url: where Redis is (``redis://[[user]:password@]host:port/db``, ``rediss://``,
            ``unix://``); ignored when ``client`` is given.
        key: the Redis key holding the shared state; one key per API key.
        qps: requests per second allowed for the API key (default 2).
        margin: relative safety margin, default `REDIS_DEFAULT_MARGIN` (4 %).
        client: a ready ``redis.asyncio.Redis`` (asyncio only) or ``redis.Redis`` (any
            backend, run in worker threads); it is not closed by `aclose`.
        fail_mode: ``"closed"`` (default): raise `LimiterUnavailableError` while Redis
            is unreachable. ``"local"``: log a warning and use an in-process
            `idphoto_async._limiter.TokenBucketLimiter` at ``qps / expected_workers``
            until Redis answers again (retried every 5 s).
        expected_workers: how many processes share the key; required with ``"local"``.
        socket_timeout: seconds for connecting and for each Redis call (own client only).
        pending_ttl: seconds a slot taken with `reserve` holds its place while its request
            is not reported sent (a process that died, a stamp that Redis never got); at
            most 30.
    """

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        *,
        key: str = DEFAULT_KEY,
        qps: float = DEFAULT_QPS,
        margin: float = REDIS_DEFAULT_MARGIN,
        client: redis.asyncio.Redis | redis.Redis | None = None,
        fail_mode: FailMode = "closed",
        expected_workers: int | None = None,
        socket_timeout: float = 2.0,
        pending_ttl: float = 10.0,
    ) -> None:
        if isinstance(qps, bool) or not isinstance(qps, int | float) or not 0 < qps < math.inf:
            raise ValueError(f"qps must be a positive number, got {qps!r}")
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        if (
            isinstance(pending_ttl, bool)
            or not isinstance(pending_ttl, int | float)
            or not 0 < pending_ttl <= _MAX_PENDING_TTL
        ):
            raise ValueError(f"pending_ttl must be in (0, 30] seconds, got {pending_ttl!r}")
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        if fail_mode not in ("closed", "local"):
            raise ValueError(f"fail_mode must be 'closed' or 'local', got {fail_mode!r}")
        if expected_workers is not None and (
            isinstance(expected_workers, bool)
            or not isinstance(expected_workers, int)
            or expected_workers < 1
        ):
            raise ValueError(f"expected_workers must be an integer >= 1, got {expected_workers!r}")
        if fail_mode == "local" and expected_workers is None:
            raise ValueError(
                "fail_mode='local' needs expected_workers=N (the number of processes sharing "
                "the key), so the fallback runs at qps/N and the workers together stay under it"
            )
        if client is None:
            try:
                _parse_url(redis_url)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"invalid redis_url {redact_url(str(redis_url))!r}") from exc
            self._url = redact_url(redis_url)
        else:
            self._url = _client_url(client)
        self._redis_url = redis_url
        self._key = key
        self._qps = float(qps)
        self._margin = float(margin)
        self._fail_mode: FailMode = fail_mode
        self._expected_workers = expected_workers
        self._socket_timeout = socket_timeout
        self._pending_ttl = float(pending_ttl)
        limit = math.floor(qps + 1e-9)
        self._limit = max(1, limit)
        self._spacing = (1.0 + margin) / (limit if limit >= 1 else qps)
        self._window = (1.0 + margin) * max(1.0, 1.0 / qps)
        self._injected = client
        self._id = uuid.uuid4().hex
        self._slot_ids = itertools.count()
        self._aclient: redis.asyncio.Redis | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._sclient: redis.Redis | None = None
        self._ascript: redis.commands.core.AsyncScript | None = None
        self._sscript: redis.commands.core.Script | None = None
        self._fallback = (
            TokenBucketLimiter(qps / expected_workers, margin=margin)
            if fail_mode == "local" and expected_workers
            else None
        )
        self._local_until = -math.inf  # use the fallback until then (anyio.current_time)
        self._queue: FairQueue[Waiter] = FairQueue()
        self._sleep_scope: anyio.CancelScope | None = None
        self._next_hint = -math.inf  # when the head expects its slot (anyio.current_time)
        self.acquired = 0
        """Slots taken by this instance (from Redis or the fallback)."""
        self.rate_limited = 0
        """Calls of `on_rate_limited` on this instance."""

    def __repr__(self) -> str:
        return (
            f"RedisLimiter(url={self._url!r}, key={self._key!r}, qps={self._qps:g}, "
            f"margin={self._margin:g}, fail_mode={self._fail_mode!r})"
        )

    @property
    def qps(self) -> float:
        """The configured requests per second (shared by all processes on the key)."""
        return self._qps

    @property
    def margin(self) -> float:
        """The relative safety margin."""
        return self._margin

    @property
    def key(self) -> str:
        """The Redis key holding the shared state."""
        return self._key

    @property
    def url(self) -> str:
        """Where Redis is, with any password replaced by ``***``."""
        return self._url

    @property
    def fail_mode(self) -> FailMode:
        """``"closed"`` or ``"local"``."""
        return self._fail_mode

    @property
    def waiting(self) -> int:
        """Callers of this process queued for a slot right now."""
        return self._queue.waiting

    async def __aenter__(self) -> RedisLimiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the Redis connections this limiter opened (not an injected client).

        Its asyncio connections belong to the event loop that opened them: close the limiter
        before that loop ends. It reconnects if used again (e.g. from another loop).
        """
        aclient, sclient = self._aclient, self._sclient
        self._aclient = self._sclient = None
        self._ascript = self._sscript = None
        if aclient is not None:
            await aclient.aclose()
        if sclient is not None:
            await anyio.to_thread.run_sync(sclient.close)

    async def check(self) -> None:
        """Raise `LimiterUnavailableError` now if Redis cannot be reached (takes no slot).

        Call it at start-up to fail fast with a clear message instead of on the first
        request.
        """
        await self._call("ping")

    async def acquire(
        self,
        *,
        timeout: float | None = None,
        priority: bool = False,
    ) -> None:
        """Take one request slot; see `idphoto_async._limiter.Limiter.acquire`.

        Fails at once with `LimiterTimeoutError` when the wait (the queue ahead in
        this process, or the wait Redis announces) already exceeds ``timeout``. Raises
        `LimiterUnavailableError` when Redis is unreachable and ``fail_mode`` is
        ``"closed"``. The request counts as sent at the grant.
        """
        await self._take(timeout, priority, reserve=False)

    async def reserve(
        self,
        *,
        timeout: float | None = None,
        priority: bool = False,
    ) -> Reservation:
        """Like `acquire`, but the request counts from its departure.

        Until the returned reservation is published (`Reservation.publish`, one more Redis
        call, which the client makes when the request's headers have left), the slot holds
        a place in every window of every process on the key, for at most ``pending_ttl``.
        """
        return await self._take(timeout, priority, reserve=True)

    async def _take(self, timeout: float | None, priority: bool, *, reserve: bool) -> Reservation:
        if timeout is not None and math.isnan(timeout):
            raise ValueError("timeout must be a number or None")
        await anyio.lowlevel.checkpoint_if_cancelled()
        now = anyio.current_time()
        deadline = math.inf
        if timeout is not None:
            estimate = self._estimate(now, priority)
            if estimate > timeout + _EPS:
                raise LimiterTimeoutError(timeout, retry_after=estimate)
            deadline = now + max(0.0, timeout)
        waiter = Waiter(priority)
        if self._queue.join(waiter) and self._sleep_scope is not None:
            self._sleep_scope.cancel()  # a priority caller displaced a sleeping head
            self._sleep_scope = None
        try:
            return await self._wait_for_slot(waiter, timeout, deadline, reserve)
        finally:
            self._queue.leave(waiter)
            self._queue.wake_head()

    async def on_rate_limited(self, retry_after: float | None = None) -> None:
        """Report a 429: every process on the key pauses, then the shared rate slows down.

        The pause lasts ``retry_after`` seconds (default one full window). 429s that arrive
        during a pause extend it but do not slow down again.
        """
        self.rate_limited += 1
        if retry_after is not None and math.isfinite(retry_after):
            pause = max(0.0, retry_after)
        else:
            pause = self._window
        if self._fallback is not None:
            await self._fallback.on_rate_limited(retry_after)
        try:
            await self._call("limited", pause)
        except LimiterUnavailableError:
            if self._fallback is None:
                raise
            self._degrade()

    # -- internals -------------------------------------------------------------------------

    async def _wait_for_slot(
        self, waiter: Waiter, requested: float | None, deadline: float, reserve: bool
    ) -> Reservation:
        slot = f"{self._id}:{next(self._slot_ids)}"
        while True:
            if self._queue.head() is not waiter:
                with anyio.move_on_after(deadline - anyio.current_time()):
                    await waiter.wait()
                    continue
                self._queue.leave(waiter)
                raise self._timeout(requested, waiter.priority)
            if self._fallback is not None and anyio.current_time() < self._local_until:
                return await self._acquire_local(waiter, requested, deadline, reserve)
            try:
                wait = await self._call(
                    "acquire",
                    max_wait=deadline - anyio.current_time(),
                    slot=slot,
                    pending=self._pending_ttl if reserve else 0.0,
                )
            except LimiterUnavailableError:
                if self._fallback is None:
                    raise
                self._degrade()
                continue
            now = anyio.current_time()
            if self._local_until > -math.inf:
                self._local_until = -math.inf
                logger.info("Redis at %s answers again; the rate limit is shared again", self._url)
            if wait <= 0:
                self._grant(waiter)
                return self._reservation(slot) if reserve else Reservation()
            self._next_hint = now + wait
            if now + wait > deadline + _EPS:
                raise LimiterTimeoutError(
                    requested if requested is not None else 0.0, retry_after=wait
                )
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                try:
                    await anyio.sleep(wait)
                finally:
                    if self._sleep_scope is scope:
                        self._sleep_scope = None

    async def _acquire_local(
        self, waiter: Waiter, requested: float | None, deadline: float, reserve: bool
    ) -> Reservation:
        assert self._fallback is not None
        remaining = None if requested is None else max(0.0, deadline - anyio.current_time())
        try:
            if reserve:
                reservation = await self._fallback.reserve(
                    timeout=remaining, priority=waiter.priority
                )
            else:
                await self._fallback.acquire(timeout=remaining, priority=waiter.priority)
                reservation = Reservation()
        except LimiterTimeoutError as exc:
            raise LimiterTimeoutError(
                requested if requested is not None else 0.0, retry_after=exc.retry_after
            ) from None
        self._grant(waiter)
        return reservation

    def _reservation(self, slot: str) -> Reservation:
        """A reservation whose `Reservation.publish` stamps ``slot``'s departure in Redis."""
        departed = math.nan

        def depart(at: float | None) -> None:
            nonlocal departed
            departed = anyio.current_time() if at is None else at

        async def publish() -> None:
            elapsed = anyio.current_time() - departed
            try:
                await self._call("sent", slot=slot, elapsed=elapsed if elapsed > 0 else 0.0)
            except LimiterUnavailableError as exc:
                logger.warning(
                    "%s; the slot keeps its place in the shared window for %g s",
                    exc,
                    self._pending_ttl,
                )

        return Reservation(depart, publish)

    def _degrade(self) -> None:
        if self._local_until == -math.inf:
            logger.warning(
                "Redis at %s is unavailable: falling back to an in-process limiter at %g QPS "
                "(qps %g / %s expected workers) until it answers again",
                self._url,
                self._qps / (self._expected_workers or 1),
                self._qps,
                self._expected_workers,
            )
        self._local_until = anyio.current_time() + _RECHECK_AFTER

    def _grant(self, waiter: Waiter) -> None:
        self._queue.grant(waiter)
        self.acquired += 1

    def _timeout(self, requested: float | None, priority: bool) -> LimiterTimeoutError:
        return LimiterTimeoutError(
            requested if requested is not None else 0.0,
            retry_after=self._estimate(anyio.current_time(), priority),
        )

    def _estimate(self, now: float, priority: bool) -> float:
        """A lower bound of the wait of a new waiter (only this process's queue is known)."""
        ahead = self._queue.count(True) if priority else self.waiting
        if ahead == 0:
            return 0.0
        return max(0.0, self._next_hint - now) + ahead * self._spacing

    def _args(
        self, op: str, pause: float, max_wait: float, slot: str, pending: float, elapsed: float
    ) -> list[str]:
        tb = TokenBucketLimiter
        return [
            op,
            f"{self._spacing * 1e6:.0f}",
            repr(tb.DECREASE),
            repr(tb.MIN_FACTOR),
            f"{tb.QUIET_PERIOD * 1e6:.0f}",
            repr(tb.RECOVERY_RATE / 1e6),
            f"{pause * 1e6:.0f}",
            str(_IDLE_TTL_US),
            self._id,
            f"{min(_MAX_GRACE, self._spacing / 4) * 1e6:.0f}",
            f"{max_wait * 1e6:.0f}" if math.isfinite(max_wait) else "-1",
            f"{self._window * 1e6:.0f}",
            str(self._limit),
            slot,
            f"{pending * 1e6:.0f}",
            f"{elapsed * 1e6:.0f}",
        ]

    async def _call(
        self,
        op: str,
        pause: float = 0.0,
        max_wait: float = math.inf,
        *,
        slot: str = "",
        pending: float = 0.0,
        elapsed: float = 0.0,
    ) -> float:
        """Run the script; the seconds to wait (0: granted or recorded)."""
        args = self._args(op, pause, max(0.0, max_wait), slot, pending, elapsed)
        try:
            if on_asyncio() and not isinstance(self._injected, redis.Redis):
                ascript = self._async_script()
                result = await ascript(keys=[self._key], args=args)
            else:
                sscript = self._sync_script()
                call = functools.partial(sscript, keys=[self._key], args=args)
                result = await anyio.to_thread.run_sync(call)
        except redis.exceptions.RedisError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            password = self._password()
            if password:
                detail = detail.replace(password, "***")
            raise LimiterUnavailableError(self._url, detail) from None
        return int(cast(int, result)) / 1000.0

    def _password(self) -> str | None:
        if self._injected is not None:
            value = self._injected.connection_pool.connection_kwargs.get("password")
            return str(value) if value else None
        value = _parse_url(self._redis_url).get("password")
        return str(value) if value else None

    def _async_script(self) -> redis.commands.core.AsyncScript:
        loop = asyncio.get_running_loop()
        if self._aloop is not loop and self._injected is None:
            # Our client's connections belong to another (finished) event loop: start afresh.
            self._aclient = self._ascript = None
        self._aloop = loop
        if self._ascript is None:
            client = self._injected
            if client is None:
                client = self._aclient = redis.asyncio.Redis.from_url(
                    self._redis_url,
                    socket_timeout=self._socket_timeout,
                    socket_connect_timeout=self._socket_timeout,
                    retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 1),
                )
            assert isinstance(client, redis.asyncio.Redis)
            self._ascript = client.register_script(_LUA)
        return self._ascript

    def _sync_script(self) -> redis.commands.core.Script:
        if self._sscript is None:
            client = self._injected
            if isinstance(client, redis.asyncio.Redis):
                raise RuntimeError(
                    "RedisLimiter got a redis.asyncio.Redis client, which works on asyncio only; "
                    "on trio pass redis_url (RedisLimiter then runs a synchronous redis.Redis in "
                    "worker threads) or a redis.Redis client."
                )
            if client is None:
                client = self._sclient = redis.Redis.from_url(
                    self._redis_url,
                    socket_timeout=self._socket_timeout,
                    socket_connect_timeout=self._socket_timeout,
                    retry=redis.retry.Retry(redis.backoff.NoBackoff(), 1),
                )
            self._sscript = client.register_script(_LUA)
        return self._sscript
