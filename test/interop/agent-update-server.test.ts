// The agent's UPDATE client and publisher against the real `autotunnel server` process on 127.0.0.1: discovery of
// the DoT update server by SRV, the RFC 9664 lease clamped and echoed, refresh keeping records alive past the
// lease, expiry once refreshes stop (a crash), withdraw, and browse over TSIG-signed queries. Read back with dig -y.
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { browseServices } from '../../src/agent/browse.js'
import { Publisher } from '../../src/agent/publisher.js'
import { hostRecords } from '../../src/agent/records.js'
import { UpdateClient } from '../../src/dns/client/update.js'
import { Watcher } from '../../src/dns/client/watcher.js'
import { RRType } from '../../src/dns/wire/rr-table.js'
import { SystemClock } from '../../src/io/clock.js'
import { MemoryLogger } from '../../src/io/log.js'
import { DESKTOP_TARGET, desktopInput } from './agent-fixture.js'
import { freePort, retryOnAddrInUse } from './ports.js'

const execFileP = promisify(execFile)
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))

interface Srv {
  data: string
  port: number
  tlsPort: number
  key: { keyName: string; algorithm: string; secret: string }
}

/** Retries with other ports when one was taken between freePort() and the bind (tests run beside others). */
function startServer(t: { after: (fn: () => Promise<void>) => void }, tls = true): Promise<Srv> {
  return retryOnAddrInUse(() => startServerOnce(t, tls))
}

async function startServerOnce(t: { after: (fn: () => Promise<void>) => void }, tls: boolean): Promise<Srv> {
  const data = await mkdtemp(join(tmpdir(), 'at-upd-srv-'))
  const port = await freePort()
  const tlsPort = await freePort()
  const add = await execFileP('node', [
    MAIN,
    'account',
    'add',
    'alice',
    '--data',
    data,
    '--zone',
    'members.example',
    '--json',
  ])
  const key = JSON.parse(add.stdout) as Srv['key']
  const proc: ChildProcess = spawn(
    'node',
    [
      MAIN,
      'server',
      '--zone',
      'members.example',
      '--data',
      data,
      '--listen',
      `127.0.0.1:${port}`,
      ...(tls ? ['--tls-listen', `127.0.0.1:${tlsPort}`] : []),
      '--lease-min',
      '2',
      '--lease-max',
      '10',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  proc.stderr?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  t.after(async () => {
    proc.kill('SIGTERM')
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)))
    await rm(data, { recursive: true, force: true })
  })
  const deadline = Date.now() + 15_000
  const soa = (extra: string[]) =>
    execFileP('dig', ['@127.0.0.1', ...extra, '+short', '+time=1', '+tries=1', 'members.example', 'SOA']).then(
      (r) => r.stdout.startsWith('ns.members.example. '),
      () => false,
    )
  for (;;) {
    if ((await soa(['-p', String(port)])) && (!tls || (await soa(['+tls', '-p', String(tlsPort)])))) break
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`server did not start:\n${out}`)
    await new Promise((res) => setTimeout(res, 100))
  }
  return { data, port, tlsPort, key }
}

async function dig(s: Srv, name: string, type: string): Promise<string[]> {
  const { stdout } = await execFileP('dig', [
    '-y',
    `${s.key.algorithm}:${s.key.keyName}:${s.key.secret}`,
    '@127.0.0.1',
    '-p',
    String(s.port),
    '+noall',
    '+answer',
    name,
    type,
  ])
  return stdout
    .split('\n')
    .filter((l) => l && !l.startsWith(';') && !/\sTSIG\s/.test(l))
    .map((l) =>
      l
        .split(/\s+/)
        .filter((_, i) => i !== 1)
        .map((w) => (w.endsWith('.') ? w.toLowerCase() : w))
        .join(' '),
    )
}

const input = desktopInput('natpmp')
// dig output is compared in lower case (DNS names are case-insensitive; see dig() above).
const target = DESKTOP_TARGET.toLowerCase()

function client(s: Srv, ca: Buffer): UpdateClient {
  return new UpdateClient(
    { clock: new SystemClock(), log: new MemoryLogger() },
    {
      bootstrap: { host: '127.0.0.1', port: s.port },
      domain: 'alice.members.example',
      key: { name: s.key.keyName, algorithm: s.key.algorithm, secret: Buffer.from(s.key.secret, 'base64') },
      tls: { ca },
    },
  )
}

test('publish over DoT to autotunnel server: lease clamped and echoed, refreshed, then expiring after a crash', async (t) => {
  const s = await startServer(t)
  const ca = await readFile(join(s.data, 'tls.crt'))
  const c = client(s, ca)
  const pub = new Publisher({ clock: new SystemClock(), log: new MemoryLogger(), sink: c }, { leaseSec: 3 })
  t.after(() => pub.stop())
  pub.set('members.example', hostRecords(input))
  await pub.settled()
  assert.equal(pub.state.kind, 'published', JSON.stringify(pub.status()))
  assert.equal(pub.status().via, `tls:127.0.0.1:${s.tlsPort}`)
  assert.equal(pub.status().leaseSec, 3)
  assert.deepEqual(await dig(s, target, 'AAAA'), [`${target} IN AAAA ${input.ula}`])
  assert.deepEqual(await dig(s, target, 'A'), [`${target} IN A 203.0.113.11`])
  assert.deepEqual(await dig(s, '_autotunnel._udp.desktop.alice.members.example.', 'SRV'), [
    `_autotunnel._udp.desktop.alice.members.example. IN SRV 0 0 4500 ${target}`,
  ])

  const services = await browseServices(c, 'alice.members.example', undefined)
  assert.deepEqual(services, [
    {
      type: '_ssh._tcp',
      instances: [
        {
          name: 'desktop',
          host: 'desktop.alice.members.example.',
          port: 22,
          txt: [],
          addresses: [input.ula],
        },
      ],
    },
  ])

  await new Promise((r) => setTimeout(r, 4500))
  assert.ok(pub.updates >= 2, `refreshed (${pub.updates} updates)`)
  assert.deepEqual(await dig(s, target, 'AAAA'), [`${target} IN AAAA ${input.ula}`], 'alive past its first lease')

  pub.stop()
  const t0 = Date.now()
  for (;;) {
    if ((await dig(s, target, 'AAAA')).length === 0) break
    assert.ok(Date.now() - t0 < 5000, 'records expire within a lease after refreshes stop')
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.deepEqual(await dig(s, '_autotunnel._udp.desktop.alice.members.example.', 'SRV'), [])
})

test('a lease longer than the server allows is clamped; withdraw removes everything', async (t) => {
  const s = await startServer(t)
  const c = client(s, await readFile(join(s.data, 'tls.crt')))
  const pub = new Publisher({ clock: new SystemClock(), log: new MemoryLogger(), sink: c }, { leaseSec: 5400 })
  t.after(() => pub.stop())
  pub.set('members.example', hostRecords(input))
  await pub.settled()
  assert.equal(pub.status().leaseSec, 10, 'clamped to --lease-max 10')
  await pub.withdraw()
  for (const [n, ty] of [
    [target, 'AAAA'],
    [target, 'A'],
    [target, 'TXT'],
    ['_autotunnel._udp.desktop.alice.members.example.', 'SRV'],
    ['_ssh._tcp.alice.members.example.', 'PTR'],
  ] as const)
    assert.deepEqual(await dig(s, n, ty), [], `${n} ${ty}`)
})

test('a server without a TLS listener advertises the plain port under the -tls name: the client uses plain DNS', async (t) => {
  const s = await startServer(t, false)
  const c = client(s, Buffer.alloc(0))
  const r = await c.update({
    zone: 'members.example',
    updates: [{ name: target, type: 28, class: 1, ttl: 60, data: { address: input.ula } }],
    leaseSec: 5,
  })
  assert.equal(r.via, `udp:127.0.0.1:${s.port}`)
  assert.equal(r.leaseSec, 5)
  assert.deepEqual(await dig(s, target, 'AAAA'), [`${target} IN AAAA ${input.ula}`])
})

test('a watcher against a server without a TLS listener skips the -tls stand-ins: LLQ over UDP at once', async (t) => {
  const s = await startServer(t, false)
  const w = new Watcher(
    {},
    {
      name: '_autotunnel._udp.alice.members.example.',
      type: RRType.PTR,
      domain: 'alice.members.example',
      server: { host: '127.0.0.1', port: s.port },
      key: { name: s.key.keyName, algorithm: s.key.algorithm, secret: Buffer.from(s.key.secret, 'base64') },
      tls: { rejectUnauthorized: false },
    },
  )
  t.after(() => w.close())
  const t0 = Date.now()
  assert.equal(await w.start(), 'llq')
  // Trying TLS on the plain port would cost a connect timeout (5 s) for Push and another for LLQ over TLS.
  const ms = Date.now() - t0
  assert.ok(ms < 3000, `LLQ set up after ${ms} ms`)
})
