// The agent's UPDATE client and publisher against BIND 9 `named` (an independent RFC 2136 + RFC 8945 server) on
// 127.0.0.1: TSIG interop both ways (BIND verifies our requests, we verify its signed answers), discovery of the
// update server by SRV, DNS over TLS with a CA file, the atomic replace and the withdraw, read back with `dig -y`.
// BIND ignores the RFC 9664 lease option (../../shared/peers/RECIPES.md section 3), so leases are tested against
// our own server elsewhere.
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { Publisher } from '../../src/agent/publisher.js'
import { hostRecords } from '../../src/agent/records.js'
import { UpdateClient, type UpdateError } from '../../src/dns/client/update.js'
import { SystemClock } from '../../src/io/clock.js'
import { MemoryLogger } from '../../src/io/log.js'
import { ensureSelfSigned } from '../../src/server/tls-cert.js'
import { DESKTOP_TARGET, desktopInput } from './agent-fixture.js'
import { freePort, retryOnAddrInUse } from './ports.js'

const execFileP = promisify(execFile)

interface Bind {
  dir: string
  port: number
  tlsPort: number
  secret: string
  proc: ChildProcess
}

const KEY = 'alice.members.example.'

/** Retries with other ports when one was taken between freePort() and the bind (tests run beside others). */
function startBind(t: { after: (fn: () => Promise<void>) => void }): Promise<Bind> {
  return retryOnAddrInUse(() => startBindOnce(t))
}

async function startBindOnce(t: { after: (fn: () => Promise<void>) => void }): Promise<Bind> {
  const dir = await mkdtemp(join(tmpdir(), 'at-bind-'))
  const port = await freePort()
  const tlsPort = await freePort()
  const secret = randomBytes(32).toString('base64')
  ensureSelfSigned(dir, 'ns.members.example', ['127.0.0.1'])
  await writeFile(
    join(dir, 'named.conf'),
    `key "${KEY}" { algorithm hmac-sha256; secret "${secret}"; };
tls local-tls { key-file "${dir}/tls.key"; cert-file "${dir}/tls.crt"; };
options {
  directory "${dir}"; pid-file "${dir}/named.pid"; session-keyfile "${dir}/session.key";
  managed-keys-directory "${dir}";
  listen-on port ${port} { 127.0.0.1; }; listen-on port ${tlsPort} tls local-tls { 127.0.0.1; };
  listen-on-v6 { none; }; recursion no; dnssec-validation no; notify no; allow-query { any; };
};
controls { };
zone "members.example" {
  type primary; file "${dir}/members.example.db";
  update-policy { grant ${KEY} subdomain alice.members.example. ANY; };
};
`,
  )
  await writeFile(
    join(dir, 'members.example.db'),
    `$TTL 60
@ IN SOA ns.members.example. hostmaster.members.example. ( 1 3600 600 86400 60 )
  IN NS ns.members.example.
ns IN A 127.0.0.1
_dnsupdate-tls._udp.alice IN SRV 0 0 ${tlsPort} ns.members.example.
_dns-update._udp.alice IN SRV 0 0 ${port} ns.members.example.
`,
  )
  const proc = spawn('named', ['-g', '-c', join(dir, 'named.conf')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  proc.stderr?.on('data', (d: Buffer) => {
    log += d.toString()
  })
  t.after(async () => {
    proc.kill('SIGTERM')
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)))
    await rm(dir, { recursive: true, force: true })
  })
  const deadline = Date.now() + 10_000
  // named logs "running on Linux ..." and "running as: named ..." at once and the bare "running" line only after
  // "all zones loaded": waiting for the word alone let a loaded machine query before the zone was there (SERVFAIL).
  while (!/ running$/m.test(log)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`named did not start:\n${log}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { dir, port, tlsPort, secret, proc }
}

async function dig(b: Bind, name: string, type: string): Promise<string[]> {
  const { stdout } = await execFileP('dig', [
    '-y',
    `hmac-sha256:${KEY}:${b.secret}`,
    '@127.0.0.1',
    '-p',
    String(b.port),
    '+noall',
    '+answer',
    name,
    type,
  ])
  return stdout
    .split('\n')
    .filter((l) => l && !l.startsWith(';') && !l.includes('TSIG'))
    .map((l) => l.replace(/\s+/g, ' ').trim())
}

const input = desktopInput('pcp')
const target = DESKTOP_TARGET

test('UPDATE client + publisher against BIND over DNS-over-TLS: publish, replace, withdraw', async (t) => {
  const b = await startBind(t)
  const clock = new SystemClock()
  const log = new MemoryLogger()
  const client = new UpdateClient(
    { clock, log },
    {
      bootstrap: { host: '127.0.0.1', port: b.port },
      domain: 'alice.members.example',
      key: { name: KEY, algorithm: 'hmac-sha256', secret: Buffer.from(b.secret, 'base64') },
      tls: { ca: await readFile(join(b.dir, 'tls.crt')) },
    },
  )
  const pub = new Publisher({ clock, log, sink: client })
  t.after(() => pub.stop())
  pub.set('members.example', hostRecords(input))
  await pub.settled()
  assert.equal(pub.state.kind, 'published', JSON.stringify(pub.status()))
  assert.equal(pub.status().via, `tls:127.0.0.1:${b.tlsPort}`)

  assert.deepEqual(await dig(b, target, 'AAAA'), [`${target} 60 IN AAAA ${input.ula}`])
  assert.deepEqual(await dig(b, target, 'A'), [`${target} 60 IN A 203.0.113.11`])
  assert.deepEqual(await dig(b, `_autotunnel._udp.desktop.alice.members.example.`, 'SRV'), [
    `_autotunnel._udp.desktop.alice.members.example. 60 IN SRV 0 0 4500 ${target}`,
  ])
  const txt = (await dig(b, target, 'TXT'))[0] ?? ''
  assert.match(txt, /"txtvers=1" "host=desktop" "nat=pcp"/)
  assert.deepEqual(await dig(b, '_ssh._tcp.alice.members.example.', 'PTR'), [
    '_ssh._tcp.alice.members.example. 60 IN PTR desktop._ssh._tcp.alice.members.example.',
  ])

  pub.set('members.example', hostRecords({ ...input, endpoint: { address: '198.51.100.7', port: 40001 } }))
  await pub.settled()
  assert.deepEqual(await dig(b, target, 'A'), [`${target} 60 IN A 198.51.100.7`])
  assert.deepEqual(await dig(b, `_autotunnel._udp.desktop.alice.members.example.`, 'SRV'), [
    `_autotunnel._udp.desktop.alice.members.example. 60 IN SRV 0 0 40001 ${target}`,
  ])

  const signed = await client.query(target, 1)
  assert.equal(signed.answers[0]?.type, 1, 'a TSIG-signed query verifies BIND’s signed answer')

  await pub.withdraw()
  for (const [n, ty] of [
    [target, 'AAAA'],
    [target, 'A'],
    [target, 'TXT'],
    ['_autotunnel._udp.desktop.alice.members.example.', 'SRV'],
    ['desktop.alice.members.example.', 'AAAA'],
    ['_ssh._tcp.alice.members.example.', 'PTR'],
  ] as const)
    assert.deepEqual(await dig(b, n, ty), [], `${n} ${ty} is gone`)
  assert.equal(client.badResponses, 0)
})

test('without TLS the client uses the plain _dns-update._udp server; a wrong key gets NOTAUTH', async (t) => {
  const b = await startBind(t)
  const clock = new SystemClock()
  const mk = (secret: Buffer): UpdateClient =>
    new UpdateClient(
      { clock, log: new MemoryLogger() },
      {
        bootstrap: { host: '127.0.0.1', port: b.port },
        domain: 'alice.members.example',
        key: { name: KEY, algorithm: 'hmac-sha256', secret },
      },
    )
  const good = mk(Buffer.from(b.secret, 'base64'))
  const add = { name: `${target}`, type: 1, class: 1, ttl: 60, data: { address: '192.0.2.99' } }
  const r = await good.update({ zone: 'members.example', updates: [add], leaseSec: 3600 })
  assert.equal(r.via, `udp:127.0.0.1:${b.port}`)
  assert.equal(r.leaseSec, undefined, 'BIND does not echo the lease option')
  assert.deepEqual(await dig(b, target, 'A'), [`${target} 60 IN A 192.0.2.99`])

  const bad = mk(randomBytes(32))
  await assert.rejects(
    bad.update({ zone: 'members.example', updates: [{ ...add, data: { address: '192.0.2.100' } }] }),
    (e: UpdateError) => e.code === 9,
  )
  assert.deepEqual(await dig(b, target, 'A'), [`${target} 60 IN A 192.0.2.99`])
})
