import { Effect } from "effect"
import * as Runner from "../../src/simulation/Runner.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"
const t0 = performance.now()
const r = await Effect.runPromise(Runner.run({ traffic: { pattern: "steady", requests: Number(process.argv[2] ?? 2000), rps: 1 }, strategy: Strategies.naive, plan: "pro" }))
console.log(r.summary.succeeded, r.summary.wallMs, performance.now() - t0)
