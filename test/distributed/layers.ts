/**
 * Test layers over a real redis-server (no tests here).
 */
import { Layer } from "effect"
import * as RedisMode from "../../src/distributed/RedisMode.ts"
import * as RedisPermits from "../../src/distributed/RedisPermits.ts"
import * as RedisQuota from "../../src/distributed/RedisQuota.ts"
import * as SharedState from "../../src/distributed/SharedState.ts"

/** Connection + mode + permits + quota, with short leases for tests. */
export const layerAll = (
  url: string,
  options?: {
    readonly mode?: RedisMode.Options | undefined
    readonly permits?: RedisPermits.Options | undefined
    readonly quota?: RedisQuota.Options | undefined
  }
) =>
  SharedState.layerRedis({
    url,
    connectTimeout: "1 second",
    mode: { commandTimeout: "500 millis", pingInterval: "100 millis", ...options?.mode },
    permits: { lease: "1500 millis", ...options?.permits },
    quota: { lease: "1500 millis", ...options?.quota }
  }).pipe(Layer.fresh)

/** Sleeps on the real clock. */
export const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
