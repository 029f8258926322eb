import assert from 'node:assert/strict'
import { test } from 'node:test'
import { jsonLogger, type LogFields } from './log.js'

function capture(level: 'debug' | 'info' | 'warn' | 'error' = 'info', name?: string) {
  const lines: string[] = []
  const log = jsonLogger({ level, ...(name ? { name } : {}), write: (l) => lines.push(l) })
  return { log, lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) }
}

test('a line is pino-shaped JSON: level number, time, pid, name, fields, msg; one per line', () => {
  const c = capture()
  const before = Date.now()
  c.log.info('pcp.renew', { gw: '192.0.2.1', epoch: 7 })
  assert.equal(c.lines.length, 1)
  assert.ok(c.lines[0]?.endsWith('}\n'))
  assert.equal(c.lines[0]?.indexOf('\n'), c.lines[0]!.length - 1)
  const [j] = c.parsed()
  assert.equal(j?.level, 30)
  assert.equal(j?.pid, process.pid)
  assert.equal(j?.name, 'autotunnel')
  assert.equal(j?.msg, 'pcp.renew')
  assert.equal(j?.gw, '192.0.2.1')
  assert.equal(j?.epoch, 7)
  assert.ok(typeof j?.time === 'number' && j.time >= before && j.time <= Date.now())
})

test('levels below the chosen one are dropped and enabled() says so', () => {
  const c = capture('warn')
  c.log.debug('a')
  c.log.info('b')
  c.log.warn('c')
  c.log.error('d')
  assert.deepEqual(
    c.parsed().map((j) => [j.level, j.msg]),
    [
      [40, 'c'],
      [50, 'd'],
    ],
  )
  assert.equal(c.log.enabled('info'), false)
  assert.equal(c.log.enabled('warn'), true)
  const d = capture('debug')
  d.log.debug('x')
  assert.equal(d.parsed()[0]?.level, 20)
})

test('child bindings come before the fields and nest', () => {
  const c = capture('info', 'tunnel')
  c.log.child({ peer: 'laptop' }).child({ spi: 5 }).info('sa.up', { path: 'direct' })
  const line = c.lines[0] ?? ''
  assert.ok(line.indexOf('"peer"') < line.indexOf('"spi"') && line.indexOf('"spi"') < line.indexOf('"path"'))
  assert.deepEqual(
    { ...c.parsed()[0], time: 0 },
    { level: 30, time: 0, pid: process.pid, name: 'tunnel', peer: 'laptop', spi: 5, path: 'direct', msg: 'sa.up' },
  )
})

test('errors, bigints and cycles are written, never thrown', () => {
  const c = capture()
  const e = Object.assign(new Error('boom', { cause: 'disk' }), { code: 'EIO' })
  const cyclic: LogFields = { a: 1 }
  cyclic.self = cyclic
  const shared = { x: 1 }
  c.log.error('fail', { err: e, n: 2n ** 70n, cyclic, twice: [shared, shared] })
  const [j] = c.parsed() as [Record<string, Record<string, unknown>>]
  assert.equal(j.err?.type, 'Error')
  assert.equal(j.err?.message, 'boom')
  assert.equal(j.err?.code, 'EIO')
  assert.equal(j.err?.cause, 'disk')
  assert.match(String(j.err?.stack), /boom/)
  assert.equal(j.n, '1180591620717411303424')
  assert.deepEqual(j.cyclic, { a: 1, self: '[Circular]' })
  assert.deepEqual(j.twice, [{ x: 1 }, { x: 1 }])
})

test('a message with quotes or newlines stays one valid line', () => {
  const c = capture()
  c.log.info('say "hi"\nthere', { s: 'a\nb' })
  assert.equal(c.lines[0]?.split('\n').length, 2)
  assert.equal(c.parsed()[0]?.msg, 'say "hi"\nthere')
})

test('an unknown level is a clear error', () => {
  assert.throws(() => jsonLogger({ level: 'verbose' as 'info' }), /log level "verbose": use one of debug, info/)
})
