import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import dgram from 'node:dgram'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { UdpSocket } from '../io/datagram.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { nullLogger } from '../io/log.js'
import { LocalDns } from './local-dns.js'
import { LocalResolver } from './resolver.js'

failOnLeakedResources()

const D = 'alice.members.example'
const run = promisify(execFile)
const isRoot = process.getuid?.() === 0
/** A random loopback address of this test's own, so two runs (or a real resolver on 127.0.0.1) never meet. */
const loopback = (): string =>
  `127.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`

async function tempDir(t: import('node:test').TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'at-localdns-'))
  t.after(() => rm(d, { recursive: true, force: true }))
  return d
}

test('a resolver address that is taken (avahi on 5353): status shows why and what to do; no system change', async (t) => {
  const d = await tempDir(t)
  const squatter = dgram.createSocket('udp4')
  await new Promise<void>((r) => squatter.bind(0, '127.0.0.1', r))
  t.after(() => squatter.close())
  const port = squatter.address().port
  const conf = join(d, 'resolv.conf')
  await writeFile(conf, 'nameserver 192.0.2.53\n')
  const dns = new LocalDns(
    { log: nullLogger, socket: () => new UdpSocket() },
    {
      domain: D,
      stateDir: d,
      resolver: { address: '127.0.0.1', port },
      systemResolver: 'resolv.conf',
      tun: undefined,
      ula: 'fd00::1',
      resolvConf: conf,
    },
  )
  await dns.start(() => undefined)
  const s = dns.status()
  assert.match(s.error ?? '', new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: another program has that address`))
  assert.equal(s.system.state, 'failed')
  assert.match(s.system.detail, /the local resolver is not running/)
  assert.equal(await readFile(conf, 'utf8'), 'nameserver 192.0.2.53\n')
  await dns.stop()
})

test('resolv.conf mode end to end: dig through the system resolver file, forwarding, restore on stop', {
  skip: !isRoot && 'port 53 needs root',
}, async (t) => {
  const d = await tempDir(t)
  // The machine's previous nameserver: a resolver for another domain on port 53 of its own loopback address.
  const upAddr = loopback()
  const lan = new LocalResolver(
    { log: nullLogger },
    { domain: 'lan.example', ulaOf: (h) => (h === 'nas' ? 'fd99::5' : undefined) },
  )
  await lan.listen(new UdpSocket(), upAddr, 53)
  t.after(() => lan.close())
  const conf = join(d, 'resolv.conf')
  const original = `# the machine's\nnameserver ${upAddr}\nsearch lan.example\n`
  await writeFile(conf, original)
  const ours = loopback()
  const dns = new LocalDns(
    { log: nullLogger, socket: () => new UdpSocket() },
    {
      domain: D,
      stateDir: d,
      resolver: { address: ours, port: 53 },
      systemResolver: 'resolv.conf',
      tun: undefined,
      ula: 'fd00::1',
      resolvConf: conf,
    },
  )
  await dns.start((h) => (h === 'desktop' ? 'fd00:1::d' : undefined))
  t.after(() => dns.stop())
  const s = dns.status()
  assert.equal(s.error, null)
  assert.equal(s.system.mode, 'resolv.conf')
  assert.equal(s.system.state, 'set', s.system.detail)
  const text = await readFile(conf, 'utf8')
  assert.match(
    text,
    new RegExp(
      `^nameserver ${ours.replaceAll('.', '\\.')}\\nnameserver ${upAddr.replaceAll('.', '\\.')}\\nsearch ${D} lan\\.example$`,
      'm',
    ),
  )
  const ns = /^nameserver (\S+)$/m.exec(text)?.[1] ?? ''
  const dig = async (name: string) =>
    (await run('dig', [`@${ns}`, '+short', '+time=2', '+tries=1', name, 'AAAA'])).stdout.trim()
  assert.equal(await dig('desktop'), 'fd00:1::d')
  assert.equal(await dig(`desktop.${D}`), 'fd00:1::d')
  assert.equal(await dig('nas.lan.example'), 'fd99::5', 'forwarded to the previous nameserver')
  assert.equal(s.forwarder?.forwarded ?? dns.status().forwarder?.forwarded, 1)
  await dns.stop()
  assert.equal(await readFile(conf, 'utf8'), original, 'restored byte for byte')
})
