import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted, Schema } from "effect"
import * as Redact from "../../src/telemetry/Redact.ts"

const key = "sk_0123456789abcdef"

describe("Redact", () => {
  it.effect("finds a secret anywhere in nested values and says where", () =>
    Effect.sync(() => {
      const cyclic: Record<string, unknown> = { ok: "nothing here" }
      cyclic["self"] = cyclic
      const value = {
        headers: { "xi-api-key": key, accept: "audio/mpeg" },
        list: ["a", `Bearer ${key}`],
        map: new Map([["k", key]]),
        set: new Set([key]),
        bytes: new TextEncoder().encode(`x${key}y`),
        err: new Error("failed", { cause: new Error(`key=${key}`) }),
        [key]: 1,
        cyclic
      }
      assert.deepStrictEqual(Redact.findSecret(value, key), [
        "headers.xi-api-key",
        "list.1",
        "map.k",
        "set.0",
        "bytes",
        "err.cause.message",
        "err.cause.stack",
        "<key>"
      ])
      assert.isTrue(Redact.containsSecret(`log ${key}`, Redacted.make(key)))
    }))

  it.effect("finds nothing where the secret is absent, redacted, or empty", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(Redact.findSecret({ a: "sk_0123", key: Redacted.make(key), n: 42 }, key), [])
      assert.deepStrictEqual(Redact.findSecret({ a: "anything" }, ""), [])
    }))

  it.effect.prop("scrub removes every occurrence", [Schema.String, Schema.String], ([a, b]) =>
    Effect.sync(() => {
      const scrubbed = Redact.scrub(`${a}${key}${b}${key}`, key)
      assert.isFalse(Redact.containsSecret(scrubbed, key))
      assert.include(scrubbed, "<redacted>")
    }))
})
