import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Runtime } from "effect"
import { CliError } from "effect/cli"
import * as CliFailure from "../../src/cli/CliFailure.ts"
import * as Output from "../../src/cli/output.ts"

describe("output", () => {
  it("an invalid invocation is one line: the command, every error, where to read the flags", () => {
    const path = ["elevenlabs-resilience", "simulate"]
    assert.strictEqual(
      Output.invocationLine(path, [
        new CliError.InvalidValue({
          option: "requests",
          value: "abc",
          expected: "a string representing a finite number",
          kind: "flag"
        })
      ]),
      "simulate: --requests: \"abc\" is not valid (expected a number); see: elevenlabs-resilience simulate --help"
    )
    assert.strictEqual(
      Output.invocationLine(path, [
        new CliError.UnrecognizedOption({ option: "--requestz", suggestions: ["--requests"] }),
        new CliError.UnrecognizedOption({ option: "--x", suggestions: [] })
      ]),
      "simulate: unknown flag --requestz (did you mean --requests?); unknown flag --x; see: elevenlabs-resilience simulate --help"
    )
    assert.strictEqual(
      Output.invocationLine(["elevenlabs-resilience"], [
        new CliError.UnknownSubcommand({ subcommand: "simulat", suggestions: ["simulate"] })
      ]),
      "elevenlabs-resilience: unknown command \"simulat\" (did you mean simulate?); see: elevenlabs-resilience --help"
    )
    // A refinement's own message already names the flag.
    assert.strictEqual(
      Output.parseErrorText(
        new CliError.InvalidValue({
          option: "port",
          value: "70000",
          expected: "--port must be between 0 and 65535, got 70000",
          kind: "flag"
        })
      ),
      "--port must be between 0 and 65535, got 70000"
    )
    assert.strictEqual(
      Output.parseErrorText(
        new CliError.InvalidValue({ option: "seed", value: "", expected: "integer", kind: "flag" })
      ),
      "--seed needs a value (expected integer)"
    )
  })

  it("what a failure prints: a CliFailure its line; help and parse errors nothing more (already presented)", () => {
    assert.strictEqual(Output.failureText(CliFailure.make("alerts", "--out: x")), "alerts: --out: x")
    assert.isUndefined(
      Output.failureText(new CliError.ShowHelp({ commandPath: ["elevenlabs-resilience"], errors: [] }))
    )
    assert.isUndefined(Output.failureText(new Output.Reported()))
    assert.strictEqual(Output.failureText(new Error("boom\n  at x")), "elevenlabs-resilience: boom at x")
  })

  it.effect("reportFailures: exit 1 without a second report; an interruption stays one (exit 130)", () =>
    Effect.gen(function*() {
      const failed = yield* Effect.exit(Output.reportFailures(Effect.fail(CliFailure.make("x", "bad"))))
      assert.isTrue(Exit.isFailure(failed))
      const error = Exit.isFailure(failed) ? Cause.squash(failed.cause) : undefined
      assert.instanceOf(error, Output.Reported)
      assert.isFalse(Runtime.getErrorReported(error))
      assert.strictEqual(Runtime.getErrorExitCode(error), 1)
      const interrupted = yield* Effect.exit(Output.reportFailures(Effect.interrupt))
      assert.isTrue(Exit.isFailure(interrupted) && Cause.hasInterruptsOnly(interrupted.cause))
    }))
})
