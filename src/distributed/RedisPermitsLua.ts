/**
 * The Lua of `RedisPermits`, as source strings (the build and the package need
 * nothing beyond the TypeScript). The `limit` script is the AIMD of
 * `resilience/AdaptiveLimit.ts` written again for Redis;
 * `test/distributed/RedisPermits.agreement.test.ts` drives both with the same
 * signals and checks they find the same limits.
 *
 * Every script that reads the limit starts with {@link prelude}: KEYS are
 * {@link keysOf}; ARGV[1..6] are initial, minLimit, maxLimit, decreaseFactor,
 * additiveIncrease, idleMillis; the script's own arguments follow from ARGV[7].
 *
 * @since 0.1.0
 */

/** The Redis keys of one (key, pool), in the order of the scripts' KEYS; the hash tag keeps them on one cluster slot. */
export const keysOf = (prefix: string, key: string, pool: string) => {
  const base = `${prefix}{${key}:${pool}}:`
  return [`${base}holders`, `${base}queue`, `${base}waiting`, `${base}seq`, `${base}limit`] as const
}

// Numbers are written with %.17g (estimates: a double round-trips exactly) and
// %.0f (times), so none turns into an exponent Redis would reject.
const prelude = `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function fmt(n) return string.format("%.17g", n) end
local function int(n) return string.format("%.0f", n) end
local holders, queue, waiting, seqKey, limitKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local initial = tonumber(ARGV[1])
local minLimit = tonumber(ARGV[2])
local maxLimit = tonumber(ARGV[3])
local decreaseFactor = tonumber(ARGV[4])
local additiveIncrease = tonumber(ARGV[5])
local idle = tonumber(ARGV[6])
local function clamp(n, lo, hi) return math.max(lo, math.min(hi, n)) end

local f = redis.call("HMGET", limitKey, "estimate", "ceiling", "others", "cap")
local estimate = tonumber(f[1])
local ceiling = tonumber(f[2])
local others = tonumber(f[3]) or 0
-- The hard cap (setCap): no rule lifts the permits above it; the estimate learns on below it.
local cap = tonumber(f[4])
if estimate == nil then estimate = clamp(initial, minLimit, ceiling or maxLimit) end

local function capOf()
  if ceiling == nil then return maxLimit end
  return math.max(minLimit, ceiling - others)
end
local function permits()
  local p = math.max(minLimit, math.floor(estimate + 1e-9))
  if cap ~= nil and cap < p then return cap end
  return p
end
local function saveLimit()
  if ceiling == nil then
    redis.call("HSET", limitKey, "estimate", fmt(estimate), "others", fmt(others))
    redis.call("HDEL", limitKey, "ceiling")
  else
    redis.call("HSET", limitKey, "estimate", fmt(estimate), "ceiling", fmt(ceiling), "others", fmt(others))
  end
  redis.call("PEXPIRE", limitKey, int(idle))
end
local function setCeiling(c)
  if c == nil or c ~= c or c < 1 then return false end
  c = math.floor(c)
  if ceiling == c then return false end
  local previous = ceiling
  ceiling = c
  local cap = capOf()
  if previous == nil then estimate = cap else estimate = clamp(estimate + math.max(0, c - previous), minLimit, cap) end
  return true
end
local function purge()
  redis.call("ZREMRANGEBYSCORE", holders, "-inf", now)
  local dead = redis.call("ZRANGEBYSCORE", waiting, "-inf", now, "LIMIT", 0, 500)
  if #dead > 0 then
    redis.call("ZREM", waiting, unpack(dead))
    redis.call("ZREM", queue, unpack(dead))
  end
end
`

/**
 * One acquire attempt: grant when the ticket is among the first `limit − held`
 * tickets of the queue (a new ticket counts as the last), else queue it once
 * and refresh its heartbeat. ARGV[7] ticket, [8] lease ms, [9] waiter lease ms.
 * Returns `{ granted (0/1), held, permits, rank, cap (0: none) }`.
 */
export const acquire = `${prelude}
local ticket = ARGV[7]
local lease = tonumber(ARGV[8])
local waiterLease = tonumber(ARGV[9])
purge()
local limit = permits()
local held = redis.call("ZCARD", holders)
local rank = redis.call("ZRANK", queue, ticket)
local queued = true
if rank == false then
  queued = false
  rank = redis.call("ZCARD", queue)
end
if rank < limit - held then
  redis.call("ZADD", holders, int(now + lease), ticket)
  redis.call("PEXPIRE", holders, int(idle + lease))
  if queued then
    redis.call("ZREM", queue, ticket)
    redis.call("ZREM", waiting, ticket)
  end
  return { 1, held + 1, limit, rank, cap or 0 }
end
if not queued then
  local seq = redis.call("INCR", seqKey)
  redis.call("ZADD", queue, seq, ticket)
  redis.call("PEXPIRE", seqKey, int(idle))
  redis.call("PEXPIRE", queue, int(idle + waiterLease))
end
redis.call("ZADD", waiting, int(now + waiterLease), ticket)
redis.call("PEXPIRE", waiting, int(idle + waiterLease))
return { 0, held, limit, rank, cap or 0 }
`

/**
 * Release or cancel: the ticket leaves the holders, the queue and the waiters.
 * KEYS holders, queue, waiting; ARGV[1] ticket, [2] and [3] the channel and
 * message published when anything was removed. Returns whether it held a permit.
 */
export const release = `
local removed = redis.call("ZREM", KEYS[1], ARGV[1])
local dequeued = redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
if removed + dequeued > 0 then redis.call("PUBLISH", ARGV[2], ARGV[3]) end
return removed
`

/** Renews a lease still held (KEYS holders; ARGV ticket, lease ms); 0 when it has lapsed (and drops it). */
export const renew = `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local score = tonumber(redis.call("ZSCORE", KEYS[1], ARGV[1]))
if score == nil then return 0 end
if score <= now then
  redis.call("ZREM", KEYS[1], ARGV[1])
  return 0
end
redis.call("ZADD", KEYS[1], "XX", string.format("%.0f", now + tonumber(ARGV[2])), ARGV[1])
return 1
`

/**
 * The AIMD rules of `AdaptiveLimit`, atomic. ARGV[7] `"get" | "set" | "limited"
 * | "response" | "cap"`; [8], [9] numbers or `""`: set (ceiling), limited (the
 * server's number), response (maximum, current), cap (the hard cap, `""`
 * removes it; only this op writes the `cap` field). `held` (permits held across every
 * process) stands for `ours`; saturated is `held ≥ permits or tickets queued`,
 * judged on the permits the responses ran under (before this one moves them),
 * as the local limiter does. Under a cap a cut starts from the permits in
 * force (an estimate above the cap is brought down to it once the server's
 * number is taken), as the local limiter does. Returns `{ estimate, ceiling or "", others, permits, held, queued, cap
 * (0: none) }`.
 */
export const limit = `${prelude}
local op = ARGV[7]
local a = tonumber(ARGV[8])
local b = tonumber(ARGV[9])
purge()
local held = redis.call("ZCARD", holders)
local queued = redis.call("ZCARD", queue)
if op == "set" then
  setCeiling(a)
  saveLimit()
elseif op == "limited" then
  local before = estimate
  local lowered = false
  if a ~= nil and setCeiling(a) and estimate < before then lowered = true end
  if not lowered then
    if cap ~= nil and estimate > cap then estimate = cap end
    estimate = math.max(minLimit, math.min(estimate * decreaseFactor, capOf()))
  end
  saveLimit()
elseif op == "response" then
  local saturated = held >= permits() or queued > 0
  if a ~= nil then setCeiling(a) end
  if b ~= nil and ceiling ~= nil then
    local o = math.max(0, math.floor(b) - held)
    if o ~= others then
      others = o
      local cap = capOf()
      if estimate > cap then estimate = cap end
    end
  end
  if saturated then
    local cap = capOf()
    if estimate < cap then estimate = math.min(cap, estimate + additiveIncrease / math.max(1, estimate)) end
  end
  saveLimit()
elseif op == "cap" then
  if a == nil then
    cap = nil
    redis.call("HDEL", limitKey, "cap")
  else
    cap = math.floor(a)
    redis.call("HSET", limitKey, "cap", int(cap))
  end
  saveLimit()
end
return { fmt(estimate), ceiling and fmt(ceiling) or "", fmt(others), permits(), held, queued, cap or 0 }
`
