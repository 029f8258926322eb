import assert from 'node:assert/strict'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { failOnLeakedResources } from '../io/leak-check.js'
import { MemoryLogger } from '../io/log.js'
import { ControlError, ControlServer, controlRequest, controlSocketPath } from './control.js'

failOnLeakedResources()

async function tmp(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'at-ctl-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

test('request/response over the control socket, errors come back typed', async (t) => {
  const dir = await tmp(t)
  const path = controlSocketPath(dir)
  const srv = new ControlServer({ log: new MemoryLogger() }, path, async (req) => {
    if (req.cmd === 'status') return { ula: 'fd00::1', asked: req.verbose }
    throw new ControlError(`unknown command ${req.cmd}`, 'EUNKNOWN')
  })
  await srv.listen()
  t.after(() => srv.close())
  assert.equal((await stat(path)).mode & 0o777, 0o600)
  assert.deepEqual(await controlRequest(path, 'status', { verbose: true }), { ula: 'fd00::1', asked: true })
  await assert.rejects(controlRequest(path, 'nope'), (e: ControlError) => e.code === 'EUNKNOWN')
})

test('a second agent on the same state directory is refused; a stale socket file is replaced', async (t) => {
  const dir = await tmp(t)
  const path = controlSocketPath(dir)
  await writeFile(path, '')
  const a = new ControlServer({ log: new MemoryLogger() }, path, async () => 'a')
  await a.listen()
  t.after(() => a.close())
  const b = new ControlServer({ log: new MemoryLogger() }, path, async () => 'b')
  await assert.rejects(b.listen(), (e: ControlError) => e.code === 'EAGENTRUNNING')
  assert.equal(await controlRequest(path, 'x'), 'a')
})

test('no agent: ENOAGENT', async (t) => {
  const dir = await tmp(t)
  await assert.rejects(controlRequest(controlSocketPath(dir), 'status'), (e: ControlError) => e.code === 'ENOAGENT')
})

test('garbage lines get error answers and are counted; an oversized line closes the connection', async (t) => {
  const dir = await tmp(t)
  const path = controlSocketPath(dir)
  const srv = new ControlServer({ log: new MemoryLogger() }, path, async () => 'fine')
  await srv.listen()
  t.after(() => srv.close())
  const lines = await new Promise<string[]>((resolve) => {
    const c = net.connect(path)
    let buf = ''
    c.setEncoding('utf8')
    c.on('data', (d: string) => {
      buf += d
      const got = buf.split('\n').filter(Boolean)
      if (got.length === 3) {
        c.destroy()
        resolve(got)
      }
    })
    c.write('not json\n[1,2]\n{"id":7,"cmd":"ok"}\n')
  })
  const replies = lines.map((l) => JSON.parse(l) as { id: unknown; ok: boolean })
  assert.deepEqual(
    replies.map((r) => r.ok),
    [false, false, true],
  )
  assert.equal(srv.dropped, 2)
  const closed = await new Promise<boolean>((resolve) => {
    const c = net.connect(path)
    c.on('close', () => resolve(true))
    c.on('error', () => {})
    c.write('x'.repeat(70_000))
  })
  assert.ok(closed)
  assert.equal(await controlRequest(path, 'still'), 'fine')
})
