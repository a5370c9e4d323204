import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Redacted, Schema } from "effect"
import { KeyValueStore } from "effect/persistence"
import { TestClock } from "effect/testing"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import {
  ElevenLabsError,
  InvalidRequest,
  NotFound,
  QuotaExceeded,
  SystemBusy,
  Timeout
} from "../../src/client/Errors.ts"
import * as Fallback from "../../src/resilience/Fallback.ts"

const request = { voiceId: "JBFqnCBsd6RMkjVDRZzb", text: "The quick brown fox jumps", modelId: "eleven_flash_v2_5" }
const key = Fallback.requestKey(request)
const bytes = (...xs: Array<number>) => new Uint8Array(xs)
const codec = Fallback.bytesCodec("audio/mpeg")
const operation = "textToSpeech.convert"
const busy = new ElevenLabsError({ reason: new SystemBusy({ operation, message: "busy", status: 429 }) })
const invalid = new ElevenLabsError({ reason: new InvalidRequest({ operation, message: "bad", status: 400 }) })

const getCache = Fallback.AudioCache
const hexKey = (n: number) => Fallback.requestKey({ voiceId: "v", text: `entry ${n}` })

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "audio-cache-"))
const fileCache = (dir: string, options?: Fallback.AudioCacheOptions) =>
  Fallback.make(options).pipe(Effect.provide(KeyValueStore.layerFileSystem(dir)), Effect.provide(NodeServices.layer))

describe("requestKey", () => {
  it("is a SHA-256 hex digest, stable under key order, without the text", () => {
    assert.match(key, /^[0-9a-f]{64}$/)
    assert.notInclude(key, "quick")
    const reordered = Fallback.requestKey({
      modelId: "eleven_flash_v2_5",
      text: "The quick brown fox jumps",
      voiceId: "JBFqnCBsd6RMkjVDRZzb"
    })
    assert.strictEqual(reordered, key)
    const withSettings = (s: object) => Fallback.requestKey({ ...request, voiceSettings: s })
    assert.strictEqual(withSettings({ stability: 0.5, speed: 1 }), withSettings({ speed: 1, stability: 0.5 }))
    assert.strictEqual(withSettings({ stability: 0.5, style: undefined }), withSettings({ stability: 0.5 }))
  })

  it("changes with every field that changes the audio", () => {
    const others = [
      { ...request, text: "The quick brown fox jumps!" },
      { ...request, voiceId: "other" },
      { ...request, modelId: "eleven_v3" },
      { ...request, outputFormat: "pcm_16000" },
      { ...request, voiceSettings: { stability: 0.4 } },
      { ...request, seed: 7 },
      { ...request, languageCode: "de" },
      { ...request, previousText: "Before." }
    ].map((r) => Fallback.requestKey(r))
    assert.strictEqual(new Set([key, ...others]).size, others.length + 1)
    assert.notStrictEqual(Fallback.requestKey(request, { operation: "textToSpeech.convertWithTimestamps" }), key)
    assert.notStrictEqual(Fallback.requestKey(request, { partition: "tenant-a" }), key)
  })

  it("keys absent defaults like the explicit API defaults, and ignores unknown fields", () => {
    const bare = { voiceId: "v", text: "Hi" }
    assert.strictEqual(
      Fallback.requestKey(bare),
      Fallback.requestKey({ ...bare, modelId: "eleven_multilingual_v2", outputFormat: "mp3_44100_128" })
    )
    const withSecret = { ...bare, apiKey: "sk_secret" } as Fallback.SpeechKeyInput
    assert.strictEqual(Fallback.requestKey(withSecret), Fallback.requestKey(bare))
  })

  it("keeps its format: a pinned digest (cache entries written before stay readable)", () => {
    const nested = {
      voiceId: "JBFqnCBsd6RMkjVDRZzb",
      text: "The quick brown fox jumps",
      modelId: "eleven_flash_v2_5",
      voiceSettings: { style: 0, stability: 0.5, similarityBoost: -0 },
      seed: 7,
      pronunciationDictionaryLocators: [{ versionId: "b", pronunciationDictionaryId: "a" }]
    }
    assert.strictEqual(
      Fallback.requestKey(nested, { partition: "tenant-a" }),
      "9c7f7d73ef13a2cabeb490d98456a8c743a02784310a1185b8f0d780e3deda91"
    )
  })

  const settingsKeys = ["stability", "similarityBoost", "style", "speed", "useSpeakerBoost"] as const
  it.prop(
    "is the SHA-256 of the canonical JSON of its fields, whatever the order and values",
    [
      Schema.String,
      Schema.Array(Schema.Tuple([Schema.Literals(settingsKeys), Schema.Number])),
      Schema.UndefinedOr(Schema.Int),
      Schema.UndefinedOr(Schema.String)
    ],
    ([text, settings, seed, previousText]) => {
      const voiceSettings = settings.length === 0 ? undefined : Object.fromEntries(settings)
      const request = { text, voiceId: "v", seed, previousText, voiceSettings }
      const expected = Fallback.sha256Hex(Fallback.canonicalJson({
        v: 1,
        operation: "textToSpeech.convert",
        partition: "p",
        voiceId: "v",
        modelId: "eleven_multilingual_v2",
        outputFormat: "mp3_44100_128",
        text,
        voiceSettings,
        seed,
        previousText
      }))
      return Fallback.requestKey(request, { partition: "p" }) === expected
    }
  )

  it("partitions by API key without exposing it", () => {
    const a = Fallback.partitionOfApiKey(Redacted.make("sk_alpha"))
    const b = Fallback.partitionOfApiKey(Redacted.make("sk_beta"))
    assert.match(a, /^[0-9a-f]{16}$/)
    assert.notStrictEqual(a, b)
    assert.notInclude(a, "alpha")
  })
})

describe("AudioCache (memory)", () => {
  it.effect("write-through on success", () =>
    Effect.gen(function*() {
      const cache = yield* getCache
      const served = yield* Effect.succeed(bytes(1, 2, 3)).pipe(Fallback.withFallback({ key, ...codec }))
      assert.deepStrictEqual(served, { source: "upstream", fallback: false, value: bytes(1, 2, 3) })
      const hit = yield* cache.get(key)
      assert.isTrue(Option.isSome(hit))
      if (Option.isSome(hit)) {
        assert.deepStrictEqual(hit.value.audio, bytes(1, 2, 3))
        assert.strictEqual(hit.value.contentType, "audio/mpeg")
        assert.strictEqual(hit.value.metadata.size, 3)
      }
      assert.deepStrictEqual(yield* cache.stats, { entries: 1, bytes: 3 })
    }).pipe(Effect.provide(Fallback.layerMemory())))

  it.effect("serves the cached audio on a qualifying terminal failure, marked", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(1_000)
      yield* Effect.succeed(bytes(9, 9)).pipe(Fallback.withFallback({ key, ...codec }))
      yield* TestClock.adjust("1 minute")
      const served = yield* Effect.fail(busy).pipe(Fallback.withFallback({ key, ...codec }))
      assert.strictEqual(served.source, "cache")
      assert.isTrue(served.fallback)
      assert.deepStrictEqual(served.value, bytes(9, 9))
      if (served.source === "cache") {
        assert.strictEqual(served.cachedAt, 1_000)
        assert.strictEqual(served.error, busy)
      }
    }).pipe(Effect.provide(Fallback.layerMemory())))

  it.effect("does not serve the cache on a non-qualifying error", () =>
    Effect.gen(function*() {
      yield* Effect.succeed(bytes(1)).pipe(Fallback.withFallback({ key, ...codec }))
      const error = yield* Effect.flip(Effect.fail(invalid).pipe(Fallback.withFallback({ key, ...codec })))
      assert.strictEqual(error, invalid)
      // A caller-given predicate decides instead of the default one.
      const never = yield* Effect.flip(
        Effect.fail(busy).pipe(Fallback.withFallback({ key, ...codec, qualifies: () => false }))
      )
      assert.strictEqual(never, busy)
    }).pipe(Effect.provide(Fallback.layerMemory())))

  it.effect("passes the original error through when there is no entry", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.fail(busy).pipe(Fallback.withFallback({ key, ...codec })))
      assert.strictEqual(error, busy)
    }).pipe(Effect.provide(Fallback.layerMemory())))

  it.effect("is opt-in: without an AudioCache results are tagged upstream and errors pass", () =>
    Effect.gen(function*() {
      const served = yield* Effect.succeed(bytes(1)).pipe(Fallback.withFallback({ key, ...codec }))
      assert.strictEqual(served.source, "upstream")
      assert.strictEqual(yield* Effect.flip(Effect.fail(busy).pipe(Fallback.withFallback({ key, ...codec }))), busy)
    }))

  it.effect("never caches a failure", () =>
    Effect.gen(function*() {
      const cache = yield* getCache
      yield* Effect.flip(Effect.fail(busy).pipe(Fallback.withFallback({ key, ...codec })))
      assert.deepStrictEqual(yield* cache.stats, { entries: 0, bytes: 0 })
      assert.isTrue(Option.isNone(yield* cache.get(key)))
    }).pipe(Effect.provide(Fallback.layerMemory())))

  it("default rule: overload, transport, timeout and quota qualify; request errors do not", () => {
    const e = (reason: ConstructorParameters<typeof ElevenLabsError>[0]["reason"]) => new ElevenLabsError({ reason })
    assert.isTrue(Fallback.qualifiesForFallback(busy))
    assert.isTrue(
      Fallback.qualifiesForFallback(
        e(new Timeout({ operation, message: "t", phase: "deadline", after: Duration.seconds(1) }))
      )
    )
    assert.isTrue(Fallback.qualifiesForFallback(e(new QuotaExceeded({ operation, message: "q", status: 401 }))))
    assert.isTrue(Fallback.qualifiesForFallback({ _tag: "CircuitBreakerError", reason: { _tag: "CircuitOpen" } }))
    assert.isTrue(Fallback.qualifiesForFallback({ _tag: "InsufficientQuota" }))
    assert.isFalse(Fallback.qualifiesForFallback(invalid))
    assert.isFalse(Fallback.qualifiesForFallback(e(new NotFound({ operation, message: "n", status: 404 }))))
    assert.isFalse(Fallback.qualifiesForFallback(new Error("boom")))
    assert.isFalse(Fallback.qualifiesForFallback(undefined))
  })

  it.effect("evicts the least recently used entry at maxEntries", () =>
    Effect.gen(function*() {
      const cache = yield* getCache
      const [a, b, c] = [hexKey(1), hexKey(2), hexKey(3)]
      yield* cache.put(a, { audio: bytes(1), contentType: "audio/mpeg" })
      yield* TestClock.adjust("1 second")
      yield* cache.put(b, { audio: bytes(2), contentType: "audio/mpeg" })
      yield* TestClock.adjust("1 second")
      yield* cache.get(a) // a is now more recent than b
      yield* cache.put(c, { audio: bytes(3), contentType: "audio/mpeg" })
      assert.isTrue(Option.isSome(yield* cache.get(a)))
      assert.isTrue(Option.isNone(yield* cache.get(b)))
      assert.isTrue(Option.isSome(yield* cache.get(c)))
      assert.deepStrictEqual(yield* cache.stats, { entries: 2, bytes: 2 })
    }).pipe(Effect.provide(Fallback.layerMemory({ maxEntries: 2 }))))

  it.effect("evicts oldest-used entries until under maxBytes, and refuses oversized audio", () =>
    Effect.gen(function*() {
      const cache = yield* getCache
      const [a, b, c] = [hexKey(1), hexKey(2), hexKey(3)]
      yield* cache.put(a, { audio: new Uint8Array(4), contentType: "audio/mpeg" })
      yield* cache.put(b, { audio: new Uint8Array(4), contentType: "audio/mpeg" })
      yield* cache.put(c, { audio: new Uint8Array(6), contentType: "audio/mpeg" })
      // 14 > 10: a goes (4 + 6 = 10 fits)
      assert.isTrue(Option.isNone(yield* cache.get(a)))
      assert.isTrue(Option.isSome(yield* cache.get(b)))
      assert.deepStrictEqual(yield* cache.stats, { entries: 2, bytes: 10 })
      assert.isFalse(yield* cache.put(a, { audio: new Uint8Array(11), contentType: "audio/mpeg" }))
      assert.deepStrictEqual(yield* cache.stats, { entries: 2, bytes: 10 })
    }).pipe(Effect.provide(Fallback.layerMemory({ maxBytes: 10 }))))

  it.effect("replacing an entry keeps the byte count right", () =>
    Effect.gen(function*() {
      const cache = yield* getCache
      yield* cache.put(key, { audio: new Uint8Array(5), contentType: "audio/mpeg" })
      yield* cache.put(key, { audio: new Uint8Array(2), contentType: "audio/wav" })
      assert.deepStrictEqual(yield* cache.stats, { entries: 1, bytes: 2 })
      const hit = yield* cache.get(key)
      assert.strictEqual(Option.getOrUndefined(hit)?.contentType, "audio/wav")
    }).pipe(Effect.provide(Fallback.layerMemory())))

  it.effect("expires entries after the TTL (TestClock)", () =>
    Effect.gen(function*() {
      const cache = yield* getCache
      yield* cache.put(key, { audio: bytes(1), contentType: "audio/mpeg" })
      yield* TestClock.adjust("59 seconds")
      assert.isTrue(Option.isSome(yield* cache.get(key)))
      yield* TestClock.adjust("1 second")
      assert.isTrue(Option.isNone(yield* cache.get(key)))
      assert.deepStrictEqual(yield* cache.stats, { entries: 0, bytes: 0 })
      // and an expired entry is no fallback
      assert.strictEqual(yield* Effect.flip(Effect.fail(busy).pipe(Fallback.withFallback({ key, ...codec }))), busy)
    }).pipe(Effect.provide(Fallback.layerMemory({ ttl: "1 minute" }))))

  it.effect("rejects keys that are not content addresses, and bad options", () =>
    Effect.gen(function*() {
      const cache = yield* getCache
      const error = yield* Effect.flip(cache.put("The quick brown fox", { audio: bytes(1), contentType: "audio/mpeg" }))
      assert.strictEqual(error._tag, "AudioCacheError")
      assert.strictEqual(error.method, "put")
      const options = yield* Effect.flip(
        Fallback.make({ maxEntries: 0 }).pipe(Effect.provide(KeyValueStore.layerMemory))
      )
      assert.include(options.message, "maxEntries")
      const ttl = yield* Effect.flip(Fallback.make({ ttl: "0 millis" }).pipe(Effect.provide(KeyValueStore.layerMemory)))
      assert.include(ttl.message, "ttl")
    }).pipe(Effect.provide(Fallback.layerMemory())))

  it.effect("a failing store never fails the call: success stays success, the error stays the error", () => {
    const broken = KeyValueStore.make({
      get: () => Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "get", message: "disk on fire" })),
      getUint8Array: () =>
        Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "get", message: "disk on fire" })),
      set: () => Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "set", message: "disk on fire" })),
      remove: () => Effect.void,
      clear: Effect.void,
      size: Effect.succeed(0),
      keys: Effect.succeed([])
    })
    return Effect.gen(function*() {
      const served = yield* Effect.succeed(bytes(1)).pipe(Fallback.withFallback({ key, ...codec }))
      assert.strictEqual(served.source, "upstream")
      assert.strictEqual(yield* Effect.flip(Effect.fail(busy).pipe(Fallback.withFallback({ key, ...codec }))), busy)
    }).pipe(Effect.provide(Fallback.layer().pipe(Layer.provide(Layer.succeed(KeyValueStore.KeyValueStore, broken)))))
  })
})

describe("AudioCache (file system)", () => {
  it.effect("persists across two instances on the same directory, in LRU order, with no text in file names", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const [a, b, c] = [hexKey(1), hexKey(2), hexKey(3)]
      const first = yield* fileCache(dir, { maxEntries: 3 })
      yield* Effect.succeed(bytes(7, 7, 7)).pipe(
        Fallback.withFallback({ key, ...codec }),
        Effect.provideService(Fallback.AudioCache, first)
      )
      yield* TestClock.adjust("1 second")
      yield* first.put(a, { audio: bytes(1), contentType: "audio/mpeg" })
      yield* TestClock.adjust("1 second")
      yield* first.put(b, { audio: bytes(2), contentType: "audio/mpeg" })
      yield* TestClock.adjust("1 second")
      yield* first.get(key) // key is now the most recent; a the least

      for (const name of fs.readdirSync(dir)) {
        assert.match(name, /^elevenlabs-audio-[0-9a-f]{64}\.(audio|json)$/)
        assert.notInclude(name, "quick")
        assert.notInclude(fs.readFileSync(path.join(dir, name), "latin1"), "quick")
      }

      // A restart: a fresh instance reads the index back from the directory.
      yield* TestClock.adjust("1 second")
      const second = yield* fileCache(dir, { maxEntries: 3 })
      assert.deepStrictEqual(yield* second.stats, { entries: 3, bytes: 5 })
      const served = yield* Effect.fail(busy).pipe(
        Fallback.withFallback({ key, ...codec }),
        Effect.provideService(Fallback.AudioCache, second)
      )
      assert.strictEqual(served.source, "cache")
      assert.deepStrictEqual(served.value, bytes(7, 7, 7))
      // LRU order survived the restart: a goes first.
      yield* second.put(c, { audio: bytes(3), contentType: "audio/mpeg" })
      assert.isTrue(Option.isNone(yield* second.get(a)))
      assert.isTrue(Option.isSome(yield* second.get(b)))
      fs.rmSync(dir, { recursive: true, force: true })
    }))

  it.effect("cleans up unfinished writes and applies smaller bounds on start", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const first = yield* fileCache(dir)
      for (const n of [1, 2, 3]) {
        yield* first.put(hexKey(n), { audio: bytes(n), contentType: "audio/mpeg" })
        yield* TestClock.adjust("1 second")
      }
      // An audio file whose metadata was never written (a crash mid-put).
      const orphan = hexKey(4)
      fs.writeFileSync(path.join(dir, `elevenlabs-audio-${orphan}.audio`), bytes(4))
      const second = yield* fileCache(dir, { maxEntries: 2 })
      assert.deepStrictEqual(yield* second.stats, { entries: 2, bytes: 2 })
      assert.isFalse(fs.existsSync(path.join(dir, `elevenlabs-audio-${orphan}.audio`)))
      assert.isTrue(Option.isNone(yield* second.get(hexKey(1))))
      assert.isTrue(Option.isSome(yield* second.get(hexKey(3))))
      fs.rmSync(dir, { recursive: true, force: true })
    }))

  it.effect("a TTL applies to entries found on start", () =>
    Effect.gen(function*() {
      const dir = tempDir()
      const first = yield* fileCache(dir)
      yield* first.put(key, { audio: bytes(1), contentType: "audio/mpeg" })
      yield* TestClock.adjust("2 hours")
      const second = yield* fileCache(dir, { ttl: "1 hour" })
      assert.deepStrictEqual(yield* second.stats, { entries: 0, bytes: 0 })
      assert.deepStrictEqual(fs.readdirSync(dir), [])
      fs.rmSync(dir, { recursive: true, force: true })
    }))
})
