// Change notification against the real `autotunnel server` process: DNS Push (RFC 8765) and LLQ (RFC 8764)
// watchers seeing `nsupdate` changes, lease expiry, the 3-transmission rule, privacy, a server restart, and an
// independent LLQ client written with python3-dnspython.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { after, before, test } from 'node:test'
import { LlqClient } from '../../src/dns/client/llq.js'
import { PushClient, PushClientError } from '../../src/dns/client/push.js'
import { DnsStream } from '../../src/dns/client/stream.js'
import { type WatchEvent, Watcher, type WatcherOptions } from '../../src/dns/client/watcher.js'
import { decodeDso, encodeDso, keepaliveTlv, subscribeTlv } from '../../src/dns/dso.js'
import { encodeLlq, LlqOpcode } from '../../src/dns/llq.js'
import { signMessage } from '../../src/dns/tsig.js'
import { emptyMessage, encodeMessage } from '../../src/dns/wire/message.js'
import { type AAAAData, RRType } from '../../src/dns/wire/rr-table.js'
import { FakeClock } from '../../src/io/clock.fake.js'
import { MemoryLogger } from '../../src/io/log.js'
import { type AccountJson, NotifyServer, runPython, tsigKey, waitFor, watcherOptions, ZONE } from './notify-harness.js'

const srv = new NotifyServer([
  '--llq-resend-ms',
  '200',
  '--lease-min',
  '1',
  '--lease-max',
  '2',
  '--llq-lease-min',
  '3',
  '--llq-lease-max',
  '3',
])
let alice: AccountJson
let bob: AccountJson

before(async () => {
  alice = await srv.addAccount('alice')
  bob = await srv.addAccount('bob')
  await srv.start()
})
after(() => srv.cleanup())

const hostName = (h: string): string => `${h}.alice.${ZONE}.`

function watcherOpts(name: string, mech: WatcherOptions['mechanisms']): WatcherOptions {
  return watcherOptions(srv, alice, name, { mechanisms: mech, timeoutMs: 1000 })
}

const addrs = (rrs: readonly { data: unknown }[]): string[] => rrs.map((r) => (r.data as AAAAData).address).sort()

async function changeSeenWithin(w: Watcher, name: string, addr: string): Promise<{ afterCommitMs: number }> {
  const seen = waitFor<WatchEvent, number>(
    (h) => w.onEvent(h),
    (e) => (e.kind === 'add' && addrs(e.records).includes(addr) ? performance.now() : undefined),
    5000,
    `add of ${addr}`,
  )
  const r = await srv.nsupdate(alice, [`update add ${name} 60 AAAA ${addr}`])
  const committed = performance.now()
  assert.equal(r.code, 0, r.stderr)
  const at = await seen
  return { afterCommitMs: at - committed }
}

for (const [label, mech, llqTransport] of [
  ['push', 'push', 'udp'],
  ['llq (UDP)', 'llq', 'udp'],
  ['llq (TLS)', 'llq', 'tls'],
] as const) {
  test(`${label}: a watcher sees an AAAA change made by nsupdate within 100 ms`, async (t) => {
    const name = hostName(`w-${mech}-${llqTransport}`)
    const log = new MemoryLogger()
    const w = new Watcher({ log }, { ...watcherOpts(name, [mech]), llqTransports: [llqTransport] })
    t.after(() => w.close())
    assert.equal(await w.start(), mech)
    assert.ok(log.entries.some((e) => e.event === 'watch.mechanism' && e.fields.mechanism === mech))
    const resentBefore = await srv.metric('autotunnel_llq_retransmissions_total')
    assert.ok(Number.isFinite(resentBefore), 'metric present')
    const { afterCommitMs } = await changeSeenWithin(w, name, 'fd00::1')
    await new Promise((r) => setTimeout(r, 400))
    assert.equal(await srv.metric('autotunnel_llq_retransmissions_total'), resentBefore, 'our acks are accepted')
    t.diagnostic(`${label}: event ${afterCommitMs.toFixed(1)} ms after nsupdate returned (negative: before it exited)`)
    assert.ok(afterCommitMs < 100, `event came ${afterCommitMs} ms after the commit`)
    assert.deepEqual(addrs(w.rrset), ['fd00::1'])
    const removed = waitFor<WatchEvent, readonly string[]>(
      (h) => w.onEvent(h),
      (e) => (e.kind === 'remove' ? addrs(e.rrset) : undefined),
      2000,
      'removal',
    )
    assert.equal((await srv.nsupdate(alice, [`update delete ${name} AAAA fd00::1`])).code, 0)
    assert.deepEqual(await removed, [])
  })
}

test('fallback: Push, then LLQ over TLS, then LLQ over UDP, then polling', async (t) => {
  const name = hostName('fallback')
  // A wrong certificate pin makes both TLS mechanisms fail: the watcher must end up on LLQ over UDP.
  const log = new MemoryLogger()
  const w = new Watcher(
    { log },
    { ...watcherOpts(name, ['push', 'llq', 'poll']), llqTransports: ['tls', 'udp'], fingerprint256: 'AA:BB' },
  )
  t.after(() => w.close())
  assert.equal(await w.start(), 'llq')
  const tried = log.entries.filter((e) => e.event === 'watch.mechanism_failed').map((e) => e.fields.mechanism)
  assert.deepEqual(tried, ['push'])
  const p = new Watcher({}, { ...watcherOpts(name, ['poll']), pollIntervalMs: 100 })
  t.after(() => p.close())
  assert.equal(await p.start(), 'poll')
  const it = p.events()
  const { afterCommitMs } = await changeSeenWithin(p, name, 'fd00::5')
  t.diagnostic(`polling every 100 ms: change seen ${afterCommitMs.toFixed(0)} ms after the commit`)
  const first = await it.next()
  assert.equal(first.done, false)
  assert.deepEqual([first.value?.kind, addrs(first.value?.records ?? [])], ['add', ['fd00::5']])
  await changeSeenWithin(w, name, 'fd00::6')
  await p.close()
  for (let r = await it.next(); !r.done; r = await it.next()) assert.equal(r.value.via, 'poll')
})

test('a lease expiry produces a removal event', async (t) => {
  const name = hostName('leased')
  const w = new Watcher({}, watcherOpts(name, ['push']))
  t.after(() => w.close())
  await w.start()
  const added = waitFor<WatchEvent, true>(
    (h) => w.onEvent(h),
    (e) => (e.kind === 'add' ? true : undefined),
    5000,
    'add',
  )
  const removed = waitFor<WatchEvent, number>(
    (h) => w.onEvent(h),
    (e) => (e.kind === 'remove' && addrs(e.records).includes('fd00::beef') ? performance.now() : undefined),
    8000,
    'lease removal',
  )
  // nsupdate cannot send the update-lease option (RFC 9664): dnspython does, with the user's TSIG key.
  const py = `
import dns.update, dns.query, dns.tsigkeyring, dns.edns, struct
k = dns.tsigkeyring.from_text({'${alice.keyName}': '${alice.secret}'})
u = dns.update.UpdateMessage('${ZONE}.', keyring=k, keyname='${alice.keyName}', keyalgorithm='${alice.algorithm}')
u.add('${name}', 60, 'AAAA', 'fd00::beef')
u.use_edns(0, options=[dns.edns.GenericOption(2, struct.pack('!I', 1))])
r = dns.query.udp(u, '127.0.0.1', port=${srv.dnsPort}, timeout=3)
print(r.rcode())
`
  const out = await runPython(py)
  assert.equal(out.trim(), '0')
  await added
  const t0 = performance.now()
  const at = await removed
  t.diagnostic(`removal ${(at - t0).toFixed(0)} ms after the add was seen (lease 1 s)`)
  assert.deepEqual(addrs(w.rrset), [])
})

test('an LLQ client that stops acknowledging gets exactly 3 transmissions of an event, then its LLQ is gone', async (t) => {
  const name = hostName('noack')
  const key = tsigKey(alice)
  const c = new LlqClient(
    { host: '127.0.0.1', port: srv.dnsPort },
    { name, type: RRType.AAAA, leaseSec: 3, encode: (m) => signMessage(m, key).wire, ackEvents: false, refreshAt: 100 },
  )
  const got: { msgId: number; at: number }[] = []
  c.onEvent((e) => got.push({ msgId: e.msgId, at: performance.now() }))
  t.after(() => c.close())
  await c.start()
  assert.equal((await srv.nsupdate(alice, [`update add ${name} 60 AAAA fd00::3`])).code, 0)
  // Transmissions at 0, 200 and 600 ms; the LLQ is deleted at 1400 ms. Wait well past that.
  await new Promise((r) => setTimeout(r, 2500))
  assert.equal(got.length, 3, `transmissions: ${JSON.stringify(got)}`)
  assert.equal(new Set(got.map((g) => g.msgId)).size, 1, 'the same event each time')
  const gaps = [got[1]!.at - got[0]!.at, got[2]!.at - got[1]!.at]
  t.diagnostic(`gaps between transmissions: ${gaps.map((g) => g.toFixed(0)).join(', ')} ms (configured 200, 400)`)
  assert.ok(gaps[1]! > gaps[0]! * 1.5, 'exponential back-off')
  const r = await c.refresh()
  assert.equal(r.error, 4, 'NO-SUCH-LLQ: the server deleted the LLQ')
})

test('LLQ refresh runs on the injected clock at 80% of the granted lease and keeps the LLQ alive', async (t) => {
  const name = hostName('refresh')
  const clock = new FakeClock()
  const c = new LlqClient(
    { host: '127.0.0.1', port: srv.dnsPort },
    { name, type: RRType.AAAA, leaseSec: 60, key: tsigKey(alice) },
    { clock },
  )
  const got: string[][] = []
  c.onEvent((e) => got.push(addrs(e.added)))
  t.after(() => c.close())
  await c.start()
  const setUp = performance.now()
  assert.equal(c.leaseSec, 3, 'the server clamps the lease to --llq-lease-max 3')
  assert.equal(clock.pending, 1, 'one timer: the refresh')
  clock.advance(2400 - 1)
  assert.equal(c.refreshes, 0, 'no refresh before 80% of the lease')
  // Let real time catch up with the fake clock, so the refresh reaches the server late in the first lease.
  await new Promise((r) => setTimeout(r, 2000))
  clock.advance(1)
  const t0 = performance.now()
  while (c.refreshes === 0 && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 5))
  assert.equal(c.refreshes, 1, 'the refresh went out and was accepted')
  assert.equal(clock.pending, 1, 'the next refresh is scheduled')
  // Real time now passes the lease granted at set-up (3 s): the LLQ lives on only because of the refresh.
  await new Promise((r) => setTimeout(r, Math.max(0, 3300 - (performance.now() - setUp))))
  assert.equal((await srv.nsupdate(alice, [`update add ${name} 60 AAAA fd00::7`])).code, 0)
  const t1 = performance.now()
  while (got.length === 0 && performance.now() - t1 < 2000) await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual(got, [['fd00::7']], 'an event after the original lease ran out')
})

test('LLQ privacy: events are TSIG-signed with the user’s key; forged or unsigned events are dropped', async (t) => {
  const name = hostName('forge')
  const c = new LlqClient(
    { host: '127.0.0.1', port: srv.dnsPort },
    { name, type: RRType.AAAA, leaseSec: 3, key: tsigKey(alice) },
  )
  const got: string[][] = []
  c.onEvent((e) => got.push(addrs(e.added)))
  t.after(() => c.close())
  await c.start()
  // A third party on the path sends events for this LLQ from the server's port (another loopback address):
  // unsigned, and signed with bob's key.
  const forged = (signWith?: AccountJson): Buffer => {
    const ev = emptyMessage({
      id: 4242,
      qr: true,
      aa: true,
      questions: [{ name, type: RRType.AAAA, class: 1 }],
      answers: [{ name, type: RRType.AAAA, class: 1, ttl: 60, data: { address: 'fd00::bad' } }],
      edns: {
        udpSize: 1232,
        version: 0,
        do: false,
        options: [encodeLlq({ version: 1, opcode: LlqOpcode.EVENT, error: 0, id: c.id, leaseSec: 3 })],
      },
    })
    return signWith ? signMessage(ev, tsigKey(signWith)).wire : encodeMessage(ev)
  }
  const sock = createSocket('udp4')
  t.after(() => sock.close())
  await new Promise<void>((r) => sock.bind(srv.dnsPort, '127.0.0.2', r))
  for (const w of [forged(), forged(bob)])
    await new Promise<void>((r) => sock.send(w, c.localPort!, '127.0.0.1', () => r()))
  await new Promise((r) => setTimeout(r, 100))
  assert.deepEqual(got, [], 'no forged event delivered')
  assert.equal(c.rejected, 2)
  assert.equal((await srv.nsupdate(alice, [`update add ${name} 60 AAAA fd00::5`])).code, 0)
  const t0 = performance.now()
  while (got.length === 0 && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual(got, [['fd00::5']], 'the server’s signed event is delivered')
  assert.equal(c.rejected, 2)
})

test('DNS Push only on TLS: SUBSCRIBE on the plain TCP port gets DSOTYPENI (RFC 8765 §6, RFC 8490 §5.1.1)', async (t) => {
  const s = await DnsStream.connect({ host: '127.0.0.1', port: srv.dnsPort })
  t.after(() => s.close())
  const answers = new Map<number, number>()
  s.onMessage((b) => {
    const m = decodeDso(b)
    if (m.qr) answers.set(m.id, m.rcode)
  })
  s.send(encodeDso({ id: 1, qr: false, rcode: 0, tlvs: [keepaliveTlv(0, 0)] }))
  const q = { name: `_public.${ZONE}.`, type: RRType.A, class: 1 }
  s.send(encodeDso({ id: 2, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] }))
  const t0 = performance.now()
  while (answers.size < 2 && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual([answers.get(1), answers.get(2)], [0, 11])
})

test('privacy: another user cannot watch alice’s names; public names need no key', async (t) => {
  const name = hostName('private')
  const bobKey = tsigKey(bob)
  const push = new PushClient(
    { host: '127.0.0.1', port: srv.tlsPort, tls: { rejectUnauthorized: false } },
    { name, type: RRType.AAAA, sign: (m) => signMessage(m, bobKey).wire, authName: `bob.${ZONE}.` },
  )
  t.after(() => push.close())
  await assert.rejects(push.start(), (e: unknown) => e instanceof PushClientError && e.rcode === 5)
  const unsigned = new LlqClient({ host: '127.0.0.1', port: srv.dnsPort }, { name, type: RRType.AAAA, attempts: 1 })
  t.after(() => unsigned.close())
  await assert.rejects(unsigned.start(), /RCODE 5/)
  const pub = new PushClient(
    { host: '127.0.0.1', port: srv.tlsPort, tls: { rejectUnauthorized: false } },
    { name: `_public.${ZONE}.`, type: RRType.A },
  )
  t.after(() => pub.close())
  assert.deepEqual(await pub.start(), [])
})

test('an independent LLQ client (python3-dnspython, option built by hand) completes the handshake and gets a signed event', async () => {
  const name = hostName('py')
  const py = `
import dns.message, dns.flags, dns.edns, dns.tsigkeyring, dns.rdatatype, struct, socket, sys, json
K = dns.tsigkeyring.from_text({'${alice.keyName}': '${alice.secret}'})
def llq(opcode, llqid, lease, err=0):
    # RFC 8764 section 3.2: VERSION, OPCODE, ERROR (u16), LLQ-ID (u64), LEASE (u32)
    return dns.edns.GenericOption(1, struct.pack('!HHHQI', 1, opcode, err, llqid, lease))
def opt_of(m):
    for o in m.options:
        if o.otype == 1:
            return struct.unpack('!HHHQI', o.data)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); s.settimeout(5)
def ask(llqid):
    q = dns.message.make_query('${name}', 'AAAA', use_edns=0, options=[llq(1, llqid, 3)])
    q.use_tsig(K, keyname='${alice.keyName}', algorithm='${alice.algorithm}')
    s.sendto(q.to_wire(), ('127.0.0.1', ${srv.dnsPort}))
    return dns.message.from_wire(s.recv(65535), keyring=K, request_mac=q.mac)
c = opt_of(ask(0))
assert c[1] == 1 and c[2] == 0 and c[3] != 0, c
a = opt_of(ask(c[3]))
assert a[3] == c[3], (a, c)
print(json.dumps({'step': 'established', 'id': str(a[3]), 'lease': a[4]})); sys.stdout.flush()
# The event is TSIG-signed with alice's key, unchained (seed 002 section 7.2): from_wire verifies it or raises.
ev = dns.message.from_wire(s.recv(65535), keyring=K)
assert ev.had_tsig, 'event not signed'
o = opt_of(ev)
assert o[1] == 3 and o[3] == c[3], o
# The acknowledgement (RFC 8764 section 6.3): a response with the event's ID and the LLQ option echoed.
ack = dns.message.Message(ev.id)
ack.flags = dns.flags.QR
ack.question = list(ev.question)
ack.use_edns(0, options=[llq(3, o[3], 0)])
ack.use_tsig(K, keyname='${alice.keyName}', algorithm='${alice.algorithm}')
s.sendto(ack.to_wire(), ('127.0.0.1', ${srv.dnsPort}))
# Acknowledged: no retransmission may follow (the server resends after 200 ms here).
s.settimeout(1.0)
try:
    s.recv(65535); again = True
except socket.timeout:
    again = False
print(json.dumps({'step': 'event', 'answers': [r.to_text() for rr in ev.answer for r in rr], 'ttl': [rr.ttl for rr in ev.answer], 'retransmitted': again}))
`
  const proc = spawn('/usr/bin/python3', ['-c', py], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stderr.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)))
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`python: no handshake: ${err}`)), 8000)
      proc.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('"established"')) {
          clearTimeout(timer)
          resolve()
        }
      })
      proc.once('exit', () => reject(new Error(`python exited: ${out} ${err}`)))
    })
    assert.equal((await srv.nsupdate(alice, [`update add ${name} 60 AAAA fd00::77`])).code, 0)
    assert.equal(await exited, 0, err)
    const ev = JSON.parse(out.trim().split('\n').at(-1)!) as unknown
    assert.deepEqual(ev, { step: 'event', answers: ['fd00::77'], ttl: [60], retransmitted: false })
  } finally {
    proc.kill('SIGKILL')
  }
})

test('watchers (Push and LLQ) survive a server restart and see changes made after it', async (t) => {
  const push = new Watcher({}, watcherOpts(hostName('restart'), ['push']))
  const llq = new Watcher({}, watcherOpts(hostName('restart'), ['llq']))
  t.after(() => push.close())
  t.after(() => llq.close())
  await push.start()
  await llq.start()
  await srv.stop()
  await srv.start()
  // Both waits start before the change: a watcher that re-subscribes after it reports the record from its fresh
  // answer, possibly while the other watcher's wait is still running (a wait begun later missed that event).
  const seen = [push, llq].map((w) =>
    waitFor<WatchEvent, WatchEvent>(
      (h) => w.onEvent(h),
      (e) => (e.kind === 'add' && addrs(e.records).includes('fd00::99') ? e : undefined),
      10_000,
      `change after restart (${w === push ? 'push' : 'llq'})`,
    ),
  )
  assert.equal((await srv.nsupdate(alice, [`update add ${hostName('restart')} 60 AAAA fd00::99`])).code, 0)
  for (const e of await Promise.all(seen)) assert.deepEqual(addrs(e.rrset), ['fd00::99'])
  assert.equal(push.mechanism, 'push')
  assert.equal(llq.mechanism, 'llq')
})
