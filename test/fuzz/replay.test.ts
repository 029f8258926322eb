// Replays every input kept under test/fuzz/corpus/<target>/ (seeds, coverage-increasing inputs, and every input
// that ever crashed or hung: crash-*) through its target with plain node, without Jazzer. A target throwing, or
// taking longer than the fuzzer's per-input timeout, fails the test and names the file.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { FuzzTarget } from './targets/harness.js'

const CORPUS = fileURLToPath(new URL('../../../test/fuzz/corpus/', import.meta.url))
/** scripts/fuzz.sh gives Jazzer --timeout=2000; replay allows the same. */
const HANG_MS = 2000

const targets = readdirSync(CORPUS, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort()

test('every fuzz target has a corpus', () => {
  const compiled = readdirSync(fileURLToPath(new URL('./targets/', import.meta.url)))
    .filter((f) => f.endsWith('.js') && f !== 'harness.js')
    .map((f) => f.slice(0, -'.js'.length))
  assert.deepEqual(targets, compiled.sort())
})

for (const name of targets) {
  test(`fuzz corpus ${name} replays without a crash or hang`, async () => {
    const { fuzz } = (await import(`./targets/${name}.js`)) as { fuzz: FuzzTarget }
    const files = readdirSync(join(CORPUS, name)).sort()
    assert.ok(
      files.some((f) => f.startsWith('seed-')),
      `${name} has no seed inputs`,
    )
    const failures: string[] = []
    for (const f of files) {
      const data = readFileSync(join(CORPUS, name, f))
      const start = performance.now()
      try {
        fuzz(data)
      } catch (e) {
        failures.push(`${f}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
        continue
      }
      const ms = performance.now() - start
      if (ms > HANG_MS) failures.push(`${f}: took ${Math.round(ms)} ms`)
    }
    assert.deepEqual(failures, [], `${name}: ${failures.length} of ${files.length} inputs failed`)
  })
}
