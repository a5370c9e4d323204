import { Effect } from "effect"
import * as Runner from "../../src/simulation/Runner.ts"
import * as Strategies from "../../src/simulation/Strategies.ts"
import * as Report from "../../src/simulation/Report.ts"
const pattern = (process.argv[2] ?? "burst") as any
const n = Number(process.argv[3] ?? 50)
for (const s of [Strategies.naive, Strategies.seedTemplate]) {
  const t0 = performance.now()
  const r = await Effect.runPromise(Runner.run({ traffic: { pattern, requests: n }, strategy: s, plan: "free" }))
  console.log(Report.toText([r]))
}
