import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { holdOnHost } from './etc.js'

test('holdOnHost: made by the first holder, kept while another live run holds it, removed by the last', async (t) => {
  const name = `test-${randomBytes(4).toString('hex')}`
  const tmp = mkdtempSync(join(tmpdir(), 'at-hold-'))
  const thing = join(tmp, 'thing')
  t.after(() => {
    rmSync(tmp, { recursive: true, force: true })
    rmSync(join('/run/autotunnel-lab/holds', name), { recursive: true, force: true })
  })
  let made = 0
  let removed = 0
  const make = () => {
    if (existsSync(thing)) return false
    writeFileSync(thing, '')
    made++
    return true
  }
  const remove = () => {
    rmSync(thing)
    removed++
  }
  const first = holdOnHost(name, make, remove)
  assert.ok(existsSync(thing))
  // Another run (a live process) holds it too.
  const other = spawn('sleep', ['60'])
  t.after(() => other.kill())
  writeFileSync(join('/run/autotunnel-lab/holds', name, String(other.pid)), '')
  first.release()
  assert.ok(existsSync(thing), 'kept: the other run still holds it')
  // The other run dies without releasing; the next run finds the thing there and, being last, removes it.
  other.kill()
  await new Promise((r) => other.once('exit', r))
  const next = holdOnHost(name, make, remove)
  next.release()
  assert.equal(existsSync(thing), false)
  assert.deepEqual([made, removed], [1, 1])
})

test('holdOnHost: something that was on the machine before any run is never removed', (t) => {
  const name = `test-${randomBytes(4).toString('hex')}`
  t.after(() => rmSync(join('/run/autotunnel-lab/holds', name), { recursive: true, force: true }))
  let removed = 0
  const h = holdOnHost(
    name,
    () => false,
    () => removed++,
  )
  h.release()
  assert.equal(removed, 0)
})
