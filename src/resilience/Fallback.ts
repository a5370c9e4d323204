/**
 * Cached-audio fallback: a bounded, content-addressed cache of generated audio
 * on `effect/persistence`'s `KeyValueStore`, and {@link withFallback}, which
 * writes successful audio through to it and serves it back when a call fails
 * terminally for a reason where stale-but-identical audio beats an error.
 *
 * **Details**
 *
 * - Keys: {@link requestKey} hashes (SHA-256, hex) a canonical JSON of every
 *   request field that changes the audio (voice, model, text, voice settings,
 *   output format, seed, language, context, dictionaries...), the operation,
 *   and an optional partition (a tenant, or {@link partitionOfApiKey}). Neither
 *   the text nor the API key ever appears in a key or a file name.
 * - Storage: two store entries per key, `<prefix><hash>.audio` (the bytes) and
 *   `<prefix><hash>.json` (content type, size, created and last-access times).
 *   The metadata is written last and is the commit marker: audio without
 *   metadata is an unfinished write and is cleaned up on the next start.
 * - Bounds: `maxEntries` and `maxBytes`; least-recently-used entries go first.
 *   The LRU index lives in memory and is rebuilt from the metadata on start, so
 *   a file-system cache keeps its order across restarts.
 * - TTL (optional): an entry older than `ttl` (from its creation, by `Clock`) is
 *   never served and is removed when seen.
 * - Opt-in: {@link withFallback} reads the {@link AudioCache} service with
 *   `Effect.serviceOption`; without a cache layer it only tags results as
 *   coming from upstream.
 *
 * **Gotchas**
 *
 * - Several processes sharing one directory each keep their own index: each
 *   enforces the bounds on what it knows, a process adopts entries written by
 *   others when it reads them, and the union may briefly exceed the bounds.
 * - Failures are never cached; an entry larger than `maxBytes` is not stored.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Fallback } from "elevenlabs-resilience/resilience"
 *
 * declare const convert: (req: Fallback.SpeechKeyInput) => Effect.Effect<Uint8Array, Error>
 * const request = { voiceId: "JBFqnCBsd6RMkjVDRZzb", text: "Hello", modelId: "eleven_flash_v2_5" }
 * const program = Effect.gen(function*() {
 *   const served = yield* convert(request).pipe(
 *     Fallback.withFallback({ key: Fallback.requestKey(request), ...Fallback.bytesCodec("audio/mpeg") })
 *   )
 *   return served.source // "upstream" | "cache"
 * }).pipe(Effect.provide(Fallback.layerMemory({ maxEntries: 100 })))
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Context, Duration, Effect, Layer, Option, Schema, Semaphore } from "effect"
import type { FileSystem, Path } from "effect"
import { KeyValueStore } from "effect/persistence"
import type { PlatformError } from "effect/PlatformError"
import { isCacheKey, requestKey, type RequestKeyOptions, type SpeechKeyInput } from "./FallbackKey.ts"

export * from "./FallbackKey.ts"

// ----------------------------------------------------------------------------
// Models and errors
// ----------------------------------------------------------------------------

/** What is stored: the audio bytes and their content type. */
export interface AudioPayload {
  readonly audio: Uint8Array
  readonly contentType: string
}

/** The metadata record kept beside each entry. */
export const AudioMetadata = Schema.Struct({
  contentType: Schema.String,
  /** Bytes of audio. */
  size: Schema.Number,
  /** When the entry was stored (epoch ms, from `Clock`). */
  createdAt: Schema.Number,
  /** When it was last stored or served (epoch ms), the LRU order. */
  lastAccessedAt: Schema.Number
})
export type AudioMetadata = typeof AudioMetadata.Type

/** A cache hit. */
export interface CachedAudio extends AudioPayload {
  readonly key: string
  readonly metadata: AudioMetadata
}

/** A cache operation failed: the store failed, or a key or option was invalid. */
export class AudioCacheError extends Schema.Error<AudioCacheError>("elevenlabs-resilience/AudioCacheError")({
  _tag: Schema.tag("AudioCacheError"),
  /** `make`, `get`, `put` or `remove`. */
  method: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {}

/** Options of the audio cache. */
export interface AudioCacheOptions {
  /** Most entries kept; the least recently used go first. Default 1000. */
  readonly maxEntries?: number | undefined
  /** Most audio bytes kept (metadata not counted). Default 256 MiB. */
  readonly maxBytes?: number | undefined
  /** Entries older than this (from creation) are never served. Default: no expiry. */
  readonly ttl?: Duration.Input | undefined
  /** Prefix of every store key, so the cache can share a store. Default `"elevenlabs-audio-"`. */
  readonly prefix?: string | undefined
}

/** The defaults of {@link AudioCacheOptions}. */
export const defaults = {
  maxEntries: 1000,
  maxBytes: 256 * 1024 * 1024,
  prefix: "elevenlabs-audio-"
} as const

/** Size of the cache as this process knows it. */
export interface AudioCacheStats {
  readonly entries: number
  readonly bytes: number
}

// ----------------------------------------------------------------------------
// Service
// ----------------------------------------------------------------------------

/** Runtime type identifier of {@link AudioCache}. */
export const TypeId = "~elevenlabs-resilience/AudioCache" as const

/** A bounded, content-addressed cache of generated audio. */
export interface AudioCache {
  readonly [TypeId]: typeof TypeId
  /** {@link requestKey}: the key of a request. */
  readonly key: (request: SpeechKeyInput, options?: RequestKeyOptions | undefined) => string
  /** The entry under `key`, when present and not expired; a hit counts as a use for LRU. */
  readonly get: (key: string) => Effect.Effect<Option.Option<CachedAudio>, AudioCacheError>
  /**
   * Stores audio under `key` (replacing any entry), then evicts down to the
   * bounds. Returns `false` when the audio alone is over `maxBytes` and was
   * not stored.
   */
  readonly put: (key: string, payload: AudioPayload) => Effect.Effect<boolean, AudioCacheError>
  /** Removes the entry under `key`, if any. */
  readonly remove: (key: string) => Effect.Effect<void, AudioCacheError>
  /** Entries and bytes in this process's index. */
  readonly stats: Effect.Effect<AudioCacheStats>
}

/** The {@link AudioCache} service tag. */
export const AudioCache = Context.Service<AudioCache>(TypeId)

interface IndexEntry {
  readonly size: number
  readonly createdAt: number
}

const fail = (method: string, message: string) => (cause?: unknown) => new AudioCacheError({ method, message, cause })

const MetadataJson = Schema.fromJsonString(AudioMetadata)
const decodeMetadata = Schema.decodeUnknownEffect(MetadataJson)
const encodeMetadata = Schema.encodeEffect(MetadataJson)

const positiveInt = (name: string, value: number): Effect.Effect<number, AudioCacheError> =>
  Number.isSafeInteger(value) && value > 0
    ? Effect.succeed(value)
    : Effect.fail(new AudioCacheError({ method: "make", message: `${name} must be a positive integer, got ${value}` }))

/**
 * Builds an audio cache on the `KeyValueStore` in context. Reads the existing
 * metadata to rebuild the LRU index, removes unfinished writes and expired
 * entries, and evicts down to the bounds.
 */
export const make = Effect.fnUntraced(function*(options?: AudioCacheOptions | undefined) {
  const maxEntries = yield* positiveInt("maxEntries", options?.maxEntries ?? defaults.maxEntries)
  const maxBytes = yield* positiveInt("maxBytes", options?.maxBytes ?? defaults.maxBytes)
  const ttlMillis = options?.ttl === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(options.ttl))
  if (ttlMillis !== undefined && !(ttlMillis > 0)) {
    return yield* new AudioCacheError({ method: "make", message: "ttl must be a positive duration" })
  }
  const prefix = options?.prefix ?? defaults.prefix
  const store = KeyValueStore.prefix(yield* KeyValueStore.KeyValueStore, prefix)
  const audioKey = (key: string) => `${key}.audio`
  const metaKey = (key: string) => `${key}.json`

  // Map iteration order is insertion order: re-inserting on use makes the
  // first entry the least recently used one.
  const index = new Map<string, IndexEntry>()
  let bytes = 0
  const lock = yield* Semaphore.make(1)

  const forget = (key: string) => {
    const entry = index.get(key)
    if (entry !== undefined) {
      bytes -= entry.size
      index.delete(key)
    }
  }
  const touch = (key: string, entry: IndexEntry) => {
    forget(key)
    index.set(key, entry)
    bytes += entry.size
  }
  const removeStored = (key: string) =>
    Effect.andThen(store.remove(metaKey(key)), store.remove(audioKey(key))).pipe(
      Effect.mapError(fail("remove", "could not remove a cache entry")),
      Effect.tap(() => Effect.sync(() => forget(key)))
    )
  const expired = (metadata: AudioMetadata, now: number) =>
    ttlMillis !== undefined && now - metadata.createdAt >= ttlMillis
  const readMetadata = (method: string, key: string) =>
    store.get(metaKey(key)).pipe(
      Effect.mapError(fail(method, "could not read cache metadata")),
      Effect.flatMap((json) =>
        json === undefined
          ? Effect.succeed(Option.none<AudioMetadata>())
          // Unreadable metadata is treated as absent and cleaned up by the caller.
          : decodeMetadata(json).pipe(Effect.map(Option.some), Effect.orElseSucceed(() => Option.none<AudioMetadata>()))
      )
    )
  const writeMetadata = (method: string, key: string, metadata: AudioMetadata) =>
    encodeMetadata(metadata).pipe(
      Effect.mapError(fail(method, "could not encode cache metadata")),
      Effect.flatMap((json) => store.set(metaKey(key), json)),
      Effect.mapError(fail(method, "could not write cache metadata"))
    )
  const evict = Effect.fnUntraced(function*(keep: string) {
    for (const key of index.keys()) {
      if (index.size <= maxEntries && bytes <= maxBytes) break
      if (key !== keep) yield* removeStored(key)
    }
  })

  // Rebuild the index from what the store already holds (a file-system cache
  // after a restart), oldest use first.
  const loaded = yield* Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const keys = yield* store.keys.pipe(Effect.mapError(fail("make", "could not list the cache")))
    const hashes = new Set<string>()
    for (const k of keys) {
      const m = /^([0-9a-f]{64})\.(audio|json)$/.exec(k)
      if (m?.[1] !== undefined) hashes.add(m[1])
    }
    const found: Array<readonly [string, AudioMetadata]> = []
    for (const key of hashes) {
      const metadata = yield* readMetadata("make", key)
      const hasAudio = yield* store.has(audioKey(key)).pipe(Effect.mapError(fail("make", "could not read the cache")))
      if (Option.isNone(metadata) || !hasAudio || expired(metadata.value, now)) {
        yield* removeStored(key)
      } else {
        found.push([key, metadata.value])
      }
    }
    found.sort(([ka, a], [kb, b]) =>
      a.lastAccessedAt - b.lastAccessedAt || a.createdAt - b.createdAt || (ka < kb ? -1 : ka > kb ? 1 : 0)
    )
    return found
  })
  for (const [key, metadata] of loaded) touch(key, { size: metadata.size, createdAt: metadata.createdAt })
  yield* evict("")

  const checkKey = (method: string, key: string) =>
    isCacheKey(key)
      ? Effect.void
      : Effect.fail(new AudioCacheError({ method, message: "a cache key is 64 lowercase hex digits (see requestKey)" }))

  const get = (key: string): Effect.Effect<Option.Option<CachedAudio>, AudioCacheError> =>
    Effect.andThen(
      checkKey("get", key),
      lock.withPermits(1)(Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        // Read the store even when the index does not know the key: another
        // process sharing the directory may have written it.
        const metadata = yield* readMetadata("get", key)
        if (Option.isNone(metadata)) {
          if (index.has(key)) yield* removeStored(key)
          return Option.none()
        }
        if (expired(metadata.value, now)) {
          yield* removeStored(key)
          return Option.none()
        }
        const audio = yield* store.getUint8Array(audioKey(key)).pipe(
          Effect.mapError(fail("get", "could not read cached audio"))
        )
        if (audio === undefined) {
          yield* removeStored(key)
          return Option.none()
        }
        const used: AudioMetadata = { ...metadata.value, lastAccessedAt: now }
        yield* writeMetadata("get", key, used)
        touch(key, { size: used.size, createdAt: used.createdAt })
        yield* evict(key)
        // A copy, so a caller that mutates its bytes cannot corrupt the store.
        return Option.some<CachedAudio>({ key, audio: audio.slice(), contentType: used.contentType, metadata: used })
      }))
    )

  const put = (key: string, payload: AudioPayload): Effect.Effect<boolean, AudioCacheError> =>
    Effect.andThen(
      checkKey("put", key),
      lock.withPermits(1)(Effect.gen(function*() {
        const size = payload.audio.byteLength
        if (size > maxBytes) return false
        const now = yield* Clock.currentTimeMillis
        const metadata: AudioMetadata = { contentType: payload.contentType, size, createdAt: now, lastAccessedAt: now }
        // Audio first, metadata last: the metadata marks a complete entry.
        yield* store.set(audioKey(key), payload.audio.slice()).pipe(
          Effect.mapError(fail("put", "could not write cached audio"))
        )
        yield* writeMetadata("put", key, metadata)
        touch(key, { size, createdAt: now })
        yield* evict(key)
        return true
      }))
    )

  return AudioCache.of({
    [TypeId]: TypeId,
    key: requestKey,
    get,
    put,
    remove: (key) => Effect.andThen(checkKey("remove", key), lock.withPermits(1)(removeStored(key))),
    stats: Effect.sync(() => ({ entries: index.size, bytes }))
  })
})

/** An audio cache on the `KeyValueStore` in context. */
export const layer = (
  options?: AudioCacheOptions | undefined
): Layer.Layer<AudioCache, AudioCacheError, KeyValueStore.KeyValueStore> => Layer.effect(AudioCache, make(options))

/** An audio cache in process memory (`KeyValueStore.layerMemory`): lost on exit. */
export const layerMemory = (options?: AudioCacheOptions | undefined): Layer.Layer<AudioCache, AudioCacheError> =>
  layer(options).pipe(Layer.provide(KeyValueStore.layerMemory))

/**
 * An audio cache in a directory (`KeyValueStore.layerFileSystem`), kept across
 * restarts. Give it a directory of its own. Needs `FileSystem` and `Path`
 * (for example `NodeServices.layer` from `@effect/platform-node`).
 */
export const layerFileSystem = (
  directory: string,
  options?: AudioCacheOptions | undefined
): Layer.Layer<AudioCache, AudioCacheError | PlatformError, FileSystem.FileSystem | Path.Path> =>
  layer(options).pipe(Layer.provide(KeyValueStore.layerFileSystem(directory)))

// ----------------------------------------------------------------------------
// Fallback
// ----------------------------------------------------------------------------

const fallbackReasons: ReadonlySet<string> = new Set([
  // The service is overloaded or failing: the same audio from before is the best answer.
  "SystemBusy",
  "RateLimited",
  "ServerError",
  "Transport",
  "Timeout",
  "InvalidResponse",
  // The queue could not give a permit in time.
  "ConcurrencyLimited",
  // Out of credits: the cached render is exactly what would be bought, at no cost.
  "QuotaExceeded",
  "InsufficientQuota",
  "QuotaExhausted",
  // Policy refusals that mean "upstream is unhealthy", by the tags Effect and
  // this project's policies use.
  "CircuitOpen",
  "CircuitHalfOpen",
  "BreakerOpen",
  "QueueTimeout",
  "QueueFull",
  "RetryBudgetExhausted",
  "TimeoutError"
])

const tagOf = (u: unknown): string | undefined =>
  typeof u === "object" && u !== null && "_tag" in u && typeof u._tag === "string" ? u._tag : undefined

/**
 * The default fallback rule. An error qualifies when its `_tag`, or the
 * `_tag` of its `reason` (`ElevenLabsError`, `CircuitBreakerError`, and any
 * wrapper of that shape), says upstream is unhealthy or out of credits:
 * `SystemBusy`, `RateLimited`, `ServerError`, `Transport`, `Timeout`,
 * `InvalidResponse`, `ConcurrencyLimited`, `QuotaExceeded`,
 * `InsufficientQuota`, `CircuitOpen`, `CircuitHalfOpen`, `BreakerOpen`,
 * `QueueTimeout`, `QueueFull`, `RetryBudgetExhausted`, `TimeoutError`.
 *
 * Never: `InvalidRequest`, `ValidationFailed`, `NotFound`, `Forbidden`,
 * `InvalidApiKey`, `MissingPermissions`, `Unauthorized`, nor anything else:
 * those say the request is wrong or not allowed, and old audio would hide
 * that (or serve a voice the caller may no longer use).
 */
export const qualifiesForFallback = (error: unknown): boolean => {
  const tag = tagOf(error)
  if (tag !== undefined && fallbackReasons.has(tag)) return true
  const reason = typeof error === "object" && error !== null && "reason" in error ? error.reason : undefined
  const reasonTag = tagOf(reason)
  return reasonTag !== undefined && fallbackReasons.has(reasonTag)
}

/** How a result becomes audio to store, and cached audio becomes a result again. */
export interface FallbackCodec<A> {
  readonly encode: (value: A) => AudioPayload
  readonly decode: (cached: CachedAudio) => A
}

/** Codec for results that are the bytes themselves. */
export const bytesCodec = (contentType: string): FallbackCodec<Uint8Array> => ({
  encode: (audio) => ({ audio, contentType }),
  decode: (cached) => cached.audio
})

/** Codec for results that are already an {@link AudioPayload}. */
export const payloadCodec: FallbackCodec<AudioPayload> = {
  encode: (value) => ({ audio: value.audio, contentType: value.contentType }),
  decode: (cached) => ({ audio: cached.audio, contentType: cached.contentType })
}

/** Options of {@link withFallback}. */
export interface FallbackOptions<A, E> extends FallbackCodec<A> {
  /** The entry to write and to serve: usually {@link requestKey} of the request. */
  readonly key: string
  /** Which terminal failures are served from the cache. Default {@link qualifiesForFallback}. */
  readonly qualifies?: ((error: E) => boolean) | undefined
  /** Write successful results to the cache. Default `true`. */
  readonly writeThrough?: boolean | undefined
}

/** A result and where it came from. */
export type Served<A, E> =
  | { readonly source: "upstream"; readonly fallback: false; readonly value: A }
  | {
    readonly source: "cache"
    readonly fallback: true
    readonly value: A
    /** When the served audio was generated (epoch ms). */
    readonly cachedAt: number
    /** The terminal failure the cache stood in for. */
    readonly error: E
  }

/**
 * Write-through on success; on a terminal failure that `qualifies`, the
 * cached audio under `key`, marked `source: "cache"`. With no entry (or no
 * {@link AudioCache} in context, or a cache that fails) the original error
 * passes through unchanged. Interruption and defects are never replaced.
 * Cache errors never fail a call: they are logged at debug level.
 */
export const withFallback =
  <A, E>(options: FallbackOptions<A, E>) => <R>(self: Effect.Effect<A, E, R>): Effect.Effect<Served<A, E>, E, R> =>
    Effect.flatMap(Effect.serviceOption(AudioCache), (cache) => {
      if (Option.isNone(cache)) return Effect.map(self, upstream)
      const qualifies = options.qualifies ?? qualifiesForFallback
      return Effect.matchEffect(self, {
        onSuccess: (value) =>
          options.writeThrough === false
            ? Effect.succeed(upstream(value))
            : cache.value.put(options.key, options.encode(value)).pipe(
              Effect.catch((e) => Effect.logDebug("audio cache write failed", e.message)),
              Effect.as(upstream(value))
            ),
        onFailure: (error) =>
          !qualifies(error)
            ? Effect.fail(error)
            : cache.value.get(options.key).pipe(
              Effect.catch((e) =>
                Effect.as(Effect.logDebug("audio cache read failed", e.message), Option.none<CachedAudio>())
              ),
              Effect.flatMap(Option.match({
                onNone: () => Effect.fail(error),
                onSome: (cached): Effect.Effect<Served<A, E>> =>
                  Effect.succeed({
                    source: "cache",
                    fallback: true,
                    value: options.decode(cached),
                    cachedAt: cached.metadata.createdAt,
                    error
                  })
              }))
            )
      })
    })

const upstream = <A>(value: A): { readonly source: "upstream"; readonly fallback: false; readonly value: A } => ({
  source: "upstream",
  fallback: false,
  value
})
