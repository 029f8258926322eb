// The leak check itself: the counting rule, and a test file that leaves a UDP socket open fails (and ends) while
// one that closes it passes.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { leakedResources } from './leak-check.js'

const execFileP = promisify(execFile)

test('leakedResources names each kind held more often than before', () => {
  const cases: [string, [string, number][], [string, number][], string[]][] = [
    ['nothing open', [], [], []],
    ['same as before', [['Timeout', 1]], [['Timeout', 1]], []],
    ['fewer than before', [['UDPWrap', 2]], [['UDPWrap', 1]], []],
    ['a new socket', [], [['UDPWrap', 1]], ['UDPWrap: 1 open, 0 before the tests']],
    ['one more timer', [['Timeout', 1]], [['Timeout', 2]], ['Timeout: 2 open, 1 before the tests']],
  ]
  for (const [name, before, now, want] of cases)
    assert.deepEqual(leakedResources(new Map(before), new Map(now)), want, name)
})

test('a test file that leaves a socket open fails and ends; one that closes it passes', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'at-leak-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const probe = (close: boolean): string => `
import dgram from 'node:dgram'
import { test } from 'node:test'
import { failOnLeakedResources } from ${JSON.stringify(new URL('./leak-check.js', import.meta.url).href)}
failOnLeakedResources()
test('binds a socket', async () => {
  const s = dgram.createSocket('udp4')
  await new Promise((r) => s.bind(0, '127.0.0.1', r))
  ${close ? 'await new Promise((r) => s.close(r))' : ''}
})
`
  await writeFile(join(dir, 'leaks.test.mjs'), probe(false))
  await writeFile(join(dir, 'closes.test.mjs'), probe(true))
  // Without NODE_TEST_CONTEXT, which this runner sets, the child runs as a test runner of its own.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env
  const run = (f: string) =>
    execFileP(process.execPath, ['--test', join(dir, f)], { timeout: 20_000, env }).then(
      (r) => ({ code: 0, out: r.stdout }),
      (e: { code: number; stdout: string; killed?: boolean }) => ({ code: e.killed ? -1 : e.code, out: e.stdout }),
    )
  const leaks = await run('leaks.test.mjs')
  assert.equal(leaks.code, 1)
  assert.match(leaks.out, /left resources open: UDPWrap: 1 open, 0 before the tests/)
  const closes = await run('closes.test.mjs')
  assert.equal(closes.code, 0, closes.out)
})
