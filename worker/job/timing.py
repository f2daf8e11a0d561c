"""When to poll: generation times learned per model and length, and the poll schedule.

A slot is held from submission until a poll (or a webhook) finds the task final, so every
second between the clip being ready and the poll that sees it is a second of a paid slot
sitting idle. The schedule aims the polls at the moment the clip is ready:

- **An estimate per model and length**, shared by the fleet in Redis, with the number of
  finished jobs behind it. With none, the catalogue's prior (scaled by
  ``RELAYDANCE_TIME_SCALE`` for a simulation).
- **Probing while the estimate is young.** With fewer than three observations the first
  poll lands at a tenth, then half, then 75 % of the estimate, and later polls double
  towards it, so a prior ten times too high is caught in the first round instead of
  idling every slot for ten generations.
- **Polls spread over the spread.** A settled estimate also knows how much generation
  times vary (the mean absolute deviation *d* of its bracketed samples): the first poll
  comes at the estimate minus *d*/2, later polls every 4/3 *d* (at least 6 % of the
  estimate), growing with how far past the expected span the task is. A slot then idles
  about half a step on average, and a prior too low costs a few polls, not dozens.
- **Learning from both sides.** Each finished job brackets the true time between its last
  poll that missed and the one that hit (its midpoint is the sample); a first poll that
  hits says only "sooner than this" (half of it for a probe, 85 % once settled, which also
  lets a provider that speeds up pull the estimate down); a webhook says when, almost
  exactly. Estimate and deviation are running means of their first samples, then
  exponentially weighted ones that follow the provider's drift.

A server hint (``Retry-After``) is a floor on the next delay.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from worker.render.rules import find_model

__all__ = ["Estimate", "Timing", "first_poll_delay_for", "next_poll_delay", "sample_from"]

PROBE_AT = (0.1, 0.5, 0.75)  # of the estimate: first polls with 0, 1, 2 observations
SETTLED = len(PROBE_AT)  # observations after which the estimate is trusted
DEFAULT_SPREAD = 0.1  # of the estimate: the deviation assumed before any is learned
MAX_SPREAD = 0.25  # of the estimate: the deviation is never taken as larger
FIRST_BEFORE = 0.5  # settled first poll: the estimate less this much of the deviation
STEP_OF_SPREAD = 4 / 3  # a step past the first poll, in deviations ...
MIN_STEP = 0.06  # ... and at least this much of the estimate
PROBE_HIT = 0.5  # a probe's first poll that hits: the sample is this much of its time
SETTLED_HIT = 0.85  # a settled first poll that hits: likewise
MEAN_OF_FIRST = 5  # samples averaged plainly before the estimate follows drift
DRIFT_WEIGHT = 0.2  # how much one job moves a settled estimate
FALLBACK_PRIOR = 90.0  # seconds, for a model no catalogue knows

# KEYS: estimates, counts, deviations hashes; ARGV: field, sample, mean_of_first, weight,
# bracketed ('1': the sample lies between two polls, so it says how times vary).
# Returns the new estimate as text.
_LEARN = """
local function weight(n)
  if n < tonumber(ARGV[3]) then return 1 / (n + 1) end
  return tonumber(ARGV[4])
end
local n = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local sample = tonumber(ARGV[2])
local new = sample
if old and n > 0 then new = old + (sample - old) * weight(n) end
redis.call('HSET', KEYS[1], ARGV[1], tostring(new))
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if ARGV[5] == '1' and n > 0 then
  local nb = tonumber(redis.call('HGET', KEYS[3], ARGV[1] .. '#n') or '0')
  local dev = tonumber(redis.call('HGET', KEYS[3], ARGV[1]))
  local miss = math.abs(sample - new)
  if dev and nb > 0 then dev = dev + (miss - dev) * weight(nb) else dev = miss end
  redis.call('HSET', KEYS[3], ARGV[1], tostring(dev), ARGV[1] .. '#n', nb + 1)
end
return tostring(new)
"""


@dataclass(frozen=True)
class Estimate:
    """The expected generation time of one model and length, and what it rests on."""

    seconds: float
    observations: int
    prior: float
    deviation: float | None = None  # mean absolute deviation of the samples, when learned

    @property
    def spread(self) -> float:
        """The deviation to plan polls with: learned, else a default share of the estimate."""
        if self.deviation is None:
            return DEFAULT_SPREAD * self.seconds
        return min(self.deviation, MAX_SPREAD * self.seconds)


class Timing:
    """Learned generation times per (model, seconds), shared by the fleet through Redis."""

    def __init__(self, client: redis.Redis, *, key: str = "rd:timing", scale: float = 1.0) -> None:
        self._redis = client
        self._key = key
        self._counts = f"{key}:n"
        self._devs = f"{key}:dev"
        self._scale = scale  # a simulation's faster clock (RELAYDANCE_TIME_SCALE)
        self._learn = client.register_script(_LEARN)

    def prior(self, model: str) -> float:
        """The catalogue's expected generation time of a model (scaled)."""
        entry = find_model(model)
        return (entry.expected_seconds if entry else FALLBACK_PRIOR) * self._scale

    def estimate(self, model: str, seconds: int) -> Estimate:
        """The learned estimate, or the prior with no observations."""
        field = f"{model}:{seconds}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(self._key, field)
        pipe.hget(self._counts, field)
        pipe.hget(self._devs, field)
        learned, count, dev = pipe.execute()
        prior = self.prior(model)
        if learned is None:
            return Estimate(prior, 0, prior)
        deviation = None if dev is None else float(dev)
        return Estimate(float(learned), int(count or 0), prior, deviation)

    def expected(self, model: str, seconds: int) -> float:
        """Expected generation time in seconds: learned, else the catalogue's prior."""
        return self.estimate(model, seconds).seconds

    def record(self, model: str, seconds: int, sample: float, *, bracketed: bool = False) -> float:
        """Fold one finished job's sample of the generation time into the estimate.

        ``bracketed``: the sample lies between a poll that missed and one that hit (or
        came from a webhook), so it also teaches how much generation times vary.
        """
        result = self._learn(
            keys=[self._key, self._counts, self._devs],
            args=[f"{model}:{seconds}", max(sample, 0.01), MEAN_OF_FIRST, DRIFT_WEIGHT,
                  "1" if bracketed else "0"],
        )  # fmt: skip
        return float(result.decode() if isinstance(result, bytes) else result)

    def all(self) -> list[tuple[str, int, Estimate]]:
        """Every learned (model, seconds, estimate), sorted."""
        learned = self._redis.hgetall(self._key)
        counts = self._redis.hgetall(self._counts)
        devs = self._redis.hgetall(self._devs)  # also holds "<field>#n" counts
        rows = []
        for raw_field, value in learned.items():
            field = _text(raw_field)
            model, _, seconds = field.rpartition(":")
            count = int(_text(counts.get(raw_field, "0")))
            dev = devs.get(raw_field)
            deviation = None if dev is None else float(_text(dev))
            estimate = Estimate(float(_text(value)), count, self.prior(model), deviation)
            rows.append((model, int(seconds), estimate))
        return sorted(rows, key=lambda row: (row[0], row[1]))


def _settled_first(estimate: Estimate) -> float:
    return max(estimate.seconds - FIRST_BEFORE * estimate.spread, 0.5 * estimate.seconds)


def first_poll_delay_for(estimate: Estimate, *, minimum: float) -> float:
    """Seconds from submission to the first poll: early while the estimate is young."""
    if estimate.observations < SETTLED:
        return max(estimate.seconds * PROBE_AT[estimate.observations], minimum)
    return max(_settled_first(estimate), minimum)


def next_poll_delay(
    *,
    elapsed: float,
    estimate: Estimate,
    minimum: float,
    maximum: float,
    hint: float | None = None,
) -> float:
    """Seconds until the next poll of a task submitted ``elapsed`` seconds ago, still running.

    Before the settled first-poll point, double the elapsed time towards it (probing);
    from there, step by 4/3 of the deviation (at least 6 % of the estimate), growing with
    how far past the expected span the task already is; within [minimum, maximum]; a
    server hint is a floor.
    """
    settled = _settled_first(estimate)
    spread = estimate.spread
    if elapsed < settled:
        delay = min(max(elapsed, minimum), settled - elapsed)
    else:
        step = max(STEP_OF_SPREAD * spread, MIN_STEP * estimate.seconds)
        overshoot = elapsed - (estimate.seconds + 2 * spread)
        delay = max(step, 0.5 * max(overshoot, 0.0))
    delay = min(max(delay, minimum), maximum)
    if hint is not None:
        delay = max(delay, hint)
    return delay


def sample_from(
    *, hit: float, last_miss: float | None, estimate: Estimate | None = None, exact: bool = False
) -> tuple[float, bool]:
    """One job's sample of the generation time, and whether it is bracketed.

    ``hit`` is the time (since submission) of the poll or webhook that saw the task final;
    ``last_miss`` the time of the last poll that saw it still running, if any; a webhook
    comes when the task ends (``exact``). A first poll that hits bounds the time from
    above only: a share of it is the sample, smaller for a probe (a young ``estimate``).
    """
    if exact:
        return hit, True
    if last_miss is not None and last_miss < hit:
        return (last_miss + hit) / 2, True
    settled = estimate is not None and estimate.observations >= SETTLED
    return hit * (SETTLED_HIT if settled else PROBE_HIT), False


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
