/**
 * Formats (or, with `--check`, checks) every TypeScript file of the repository with dprint's TypeScript plugin
 * and the settings of `dprint.json` (Effect's own). It runs the plugin through `@dprint/formatter` rather than
 * the `dprint` command: that command's npm package needs a native binary per platform, which not every npm
 * registry mirror carries (a lock file written on Linux then fails `npm ci` elsewhere).
 *
 * Usage: `node scripts/format.ts [--check] [file ...]` (`npm run format`, `npm run lint`): the files given, or
 * every one. Exit 1 when `--check` finds a file to format (one line each), 0 otherwise.
 */
import { createContext } from "@dprint/formatter"
import { getPath } from "@dprint/typescript"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, relative } from "node:path"

const root = join(import.meta.dirname, "..")
const check = process.argv.includes("--check")
const given = process.argv.slice(2).filter((arg) => arg !== "--check").map((file) => join(process.cwd(), file))
const config = JSON.parse(readFileSync(join(root, "dprint.json"), "utf8")) as {
  readonly indentWidth: number
  readonly lineWidth: number
  readonly newLineKind: "lf"
  readonly typescript: Record<string, unknown>
  readonly excludes: ReadonlyArray<string>
}
const skipped = new Set(["node_modules", "dist", "coverage", ".scratch", ".tmp", ".git"])

const context = createContext({
  indentWidth: config.indentWidth,
  lineWidth: config.lineWidth,
  newLineKind: config.newLineKind
})
context.addPlugin(readFileSync(getPath()), config.typescript)

const files = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    skipped.has(entry.name)
      ? []
      : entry.isDirectory()
      ? files(join(dir, entry.name))
      : entry.name.endsWith(".ts")
      ? [join(dir, entry.name)]
      : []
  )

const unformatted: Array<string> = []
for (const file of given.length > 0 ? given : files(root)) {
  const text = readFileSync(file, "utf8")
  const formatted = context.formatText({ filePath: file, fileText: text })
  if (formatted === text) continue
  unformatted.push(relative(root, file))
  if (!check) writeFileSync(file, formatted)
}
if (check && unformatted.length > 0) {
  for (const file of unformatted) console.error(`not formatted: ${file} (npm run format)`)
  process.exit(1)
}
if (!check && unformatted.length > 0) console.log(`formatted ${unformatted.length} file(s)`)
