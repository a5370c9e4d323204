/**
 * The Lua of `RedisConfig`, as source strings, and the Redis keys of one
 * account. Every script reads Redis `TIME` itself, so the times it writes and
 * the buckets it picks do not depend on any process's clock.
 *
 * @since 0.1.0
 */

/** The keys of one account; the `{account}` hash tag keeps them (and the outcome buckets) on one cluster slot. */
export const keysOf = (prefix: string, account: string) => {
  const base = `${prefix}{${account}}:`
  return {
    seq: `${base}seq`,
    versions: `${base}versions`,
    current: `${base}current`,
    channel: `${base}changed`,
    /** The buckets of a version are `<this><second>`. */
    outcomes: (version: number) => `${base}outcomes:${version}:`
  }
}

const time = `
local time = redis.call("TIME")
local function int(n) return string.format("%.0f", n) end
`

/**
 * KEYS: seq, versions, current. ARGV: expected current ("" = any, "0" = none
 * yet), the record's fields as a JSON object without version/at/previous, the
 * document as JSON text, the restored version ("" = none), the channel.
 *
 * The record is spliced together as text so the document is stored exactly as
 * it was serialized (cjson would re-encode numbers and turn `[]` into `{}`).
 * The check comes before INCR, so a lost compare-and-set leaves no gap.
 *
 * Returns `{"ok", record}`, `{"conflict", current}` or `{"missing", 0}`.
 */
export const publish = `${time}
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local seqKey, versions, currentKey = KEYS[1], KEYS[2], KEYS[3]
local expect, meta, document, restores, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local current = tonumber(redis.call("GET", currentKey)) or 0
if expect ~= "" and tonumber(expect) ~= current then return { "conflict", current } end
if restores ~= "" and redis.call("HEXISTS", versions, restores) == 0 then return { "missing", 0 } end
local version = int(redis.call("INCR", seqKey))
local record = '{"version":' .. version .. ',"at":' .. int(now)
if current > 0 then record = record .. ',"previous":' .. int(current) end
record = record .. ',' .. string.sub(meta, 2, -2) .. ',"document":' .. document .. '}'
redis.call("HSET", versions, version, record)
redis.call("SET", currentKey, version)
redis.call("PUBLISH", channel, version)
return { "ok", record }
`

/** KEYS: versions, current. Returns `{}` (nothing current) or `{current, record or false}`. */
export const current = `
local current = redis.call("GET", KEYS[2])
if not current then return {} end
return { current, redis.call("HGET", KEYS[1], current) }
`

/**
 * KEYS: seq, versions. ARGV: limit. The newest records first: versions are
 * dense (1..seq), so this walks down from seq and stops after `limit` records.
 */
export const history = `
local top = tonumber(redis.call("GET", KEYS[1])) or 0
local limit = tonumber(ARGV[1])
local out = {}
for v = top, 1, -1 do
  local record = redis.call("HGET", KEYS[2], string.format("%d", v))
  if record then
    out[#out + 1] = record
    if #out >= limit then break end
  end
end
return out
`

/**
 * KEYS: the bucket prefix of a version (see {@link keysOf}). ARGV: calls,
 * errors, breakerOpens, bucket time to live in seconds. The bucket key is
 * `KEYS[1] .. second`: not declared, but it carries the declared key's hash
 * tag, so it lives on the same cluster slot.
 */
export const record = `${time}
local key = KEYS[1] .. time[1]
local fields = { "calls", "errors", "breakerOpens" }
for i, field in ipairs(fields) do
  local n = tonumber(ARGV[i])
  if n > 0 then redis.call("HINCRBY", key, field, int(n)) end
end
redis.call("EXPIRE", key, ARGV[4])
return 1
`

/**
 * KEYS: the bucket prefix of a version. ARGV: since (epoch ms), bucket time to
 * live in seconds. Sums the buckets from the second of `since` to now (at most
 * the time to live back: older buckets are gone anyway).
 */
export const sum = `${time}
local nowSecond = tonumber(time[1])
local from = math.max(math.floor(tonumber(ARGV[1]) / 1000), nowSecond - tonumber(ARGV[2]))
local calls, errors, opens = 0, 0, 0
for s = from, nowSecond do
  local f = redis.call("HMGET", KEYS[1] .. int(s), "calls", "errors", "breakerOpens")
  calls = calls + (tonumber(f[1]) or 0)
  errors = errors + (tonumber(f[2]) or 0)
  opens = opens + (tonumber(f[3]) or 0)
end
return { int(calls), int(errors), int(opens) }
`
