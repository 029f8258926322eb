import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { advertisedFor, hostOfLocal, isLoopback } from './advertise.js'
import { ensureSelfSigned } from './tls-cert.js'

const peer = (address: string, local: string) => ({ transport: 'udp' as const, address, port: 4000, local })
const cfg = { nsAddrs: ['198.51.100.10', '192.0.2.7', '127.0.0.1'], advertiseLocal: true }

test('advertisedFor: the address the query arrived on; loopback only to loopback peers', () => {
  assert.deepEqual(advertisedFor(peer('203.0.113.5', '198.51.100.10:53'), cfg), ['198.51.100.10'])
  assert.deepEqual(advertisedFor(peer('127.0.0.1', '127.0.0.1:53'), cfg), ['127.0.0.1'])
  // A non-loopback peer on a loopback socket (cannot happen, but must not leak 127.0.0.1) and the wildcard socket:
  // the machine's other addresses.
  assert.deepEqual(advertisedFor(peer('203.0.113.5', '127.0.0.1:53'), cfg), ['198.51.100.10', '192.0.2.7'])
  assert.deepEqual(advertisedFor(peer('203.0.113.5', '0.0.0.0:53'), cfg), ['198.51.100.10', '192.0.2.7'])
  assert.deepEqual(advertisedFor(peer('127.0.0.1', '0.0.0.0:53'), cfg), cfg.nsAddrs)
  // TCP on a dual-stack socket: v4-mapped local address.
  assert.deepEqual(
    advertisedFor({ ...peer('::ffff:203.0.113.5', '[::ffff:198.51.100.10]:53'), transport: 'tcp' }, cfg),
    ['198.51.100.10'],
  )
  // --advertise (no advertiseLocal): as configured, whoever asks.
  assert.deepEqual(advertisedFor(peer('203.0.113.5', '0.0.0.0:53'), { nsAddrs: ['127.0.0.1'] }), ['127.0.0.1'])
  assert.equal(hostOfLocal('[2001:db8::1]:853'), '2001:db8::1')
  assert.ok(isLoopback('::1') && isLoopback('127.0.0.53') && isLoopback('::ffff:127.0.0.1') && !isLoopback('10.0.0.1'))
})

test('ensureSelfSigned: kept while it covers the names, remade (old fingerprint reported) when it does not', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'at-cert-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const a = ensureSelfSigned(dir, 'ns.members.example.', ['127.0.0.1'])
  assert.equal(a.created, true)
  assert.equal(a.replaced, undefined)
  const same = ensureSelfSigned(dir, 'ns.members.example.', ['127.0.0.1'])
  assert.equal(same.created, false)
  assert.equal(same.fingerprint256, a.fingerprint256)
  const b = ensureSelfSigned(dir, 'ns.members.example.', ['198.51.100.10', '127.0.0.1', '2001:db8::53'])
  assert.equal(b.created, true)
  assert.equal(b.replaced, a.fingerprint256)
  assert.notEqual(b.fingerprint256, a.fingerprint256)
  const x = new X509Certificate(readFileSync(join(dir, 'tls.crt')))
  for (const ip of ['198.51.100.10', '127.0.0.1', '2001:db8::53']) assert.ok(x.checkIP(ip), ip)
  assert.ok(x.checkHost('ns.members.example'))
  // A subset of what it covers: kept. Another server name: remade.
  assert.equal(ensureSelfSigned(dir, 'ns.members.example.', ['198.51.100.10']).created, false)
  assert.equal(ensureSelfSigned(dir, 'ns2.members.example.', ['198.51.100.10']).replaced, b.fingerprint256)
})
