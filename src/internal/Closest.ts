/**
 * "Did you mean": the name of a list nearest to a mistyped one, by edit
 * distance. The CLI uses it for plans, models, voices and strategies, the
 * config validator for unknown keys (not exported from the package).
 *
 * @since 0.1.0
 */

/** Edit (Levenshtein) distance between two strings, ignoring case. */
export const editDistance = (a: string, b: string): number => {
  const x = a.toLowerCase()
  const y = b.toLowerCase()
  const row = Array.from({ length: y.length + 1 }, (_, j) => j)
  for (let i = 1; i <= x.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= y.length; j++) {
      const here = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (x[i - 1] === y[j - 1] ? 0 : 1))
      prev = here
    }
  }
  return row[y.length]!
}

/**
 * The nearest of `choices` to `value` when it is close enough to be a typo
 * of it (at most 2 edits, or a third of the choice's length for a longer
 * one), else `undefined`. The first of equally near choices wins.
 */
export const closest = (value: string, choices: Iterable<string>): string | undefined => {
  let best: string | undefined
  let bestDistance = Infinity
  for (const choice of choices) {
    const d = editDistance(value, choice)
    if (d < bestDistance && d <= Math.max(2, Math.floor(choice.length / 3))) {
      best = choice
      bestDistance = d
    }
  }
  return best
}
