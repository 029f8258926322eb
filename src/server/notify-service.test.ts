import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import {
  DsoType,
  decodeDso,
  decodeKeepaliveTlv,
  decodePushTlv,
  encodeDso,
  keepaliveTlv,
  subscribeTlv,
  unsubscribeTlv,
} from '../dns/dso.js'
import { EdnsOptionCode, findOption } from '../dns/edns.js'
import { decodeLlq, encodeLlq, LlqOpcode } from '../dns/llq.js'
import { type TsigKey, verifyMessage } from '../dns/tsig.js'
import { Opcode } from '../dns/wire/header.js'
import { decodeMessage, emptyMessage, type Message } from '../dns/wire/message.js'
import { FakeClock } from '../io/clock.fake.js'
import { failOnLeakedResources } from '../io/leak-check.js'
import { type Logger, MemoryLogger } from '../io/log.js'
import { FakeRandom } from '../io/random.fake.js'
import { NotifyService } from './notify-service.js'
import type { RRsetChange } from './notify-types.js'
import type { DnsRequest } from './service.js'
import type { InboundContext, StreamConnection } from './transport.js'
import type { ZoneRR } from './zone-index.js'

failOnLeakedResources()

const ZONE = 'members.example.'
const ALICE_KEY: TsigKey = { name: `alice.${ZONE}`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 7) }
const aaaa = (name: string, last: number): ZoneRR => {
  const rdata = Buffer.alloc(16)
  rdata[0] = 0xfd
  rdata[15] = last
  return { name, type: 28, class: 1, ttl: 60, rdata, text: `fd00::${last}` }
}

function setup(opts: { pushPlainTcp?: boolean; log?: Logger } = {}) {
  const clock = new FakeClock()
  const zone = new Map<string, ZoneRR[]>([[`pub.${ZONE}|28`, [aaaa(`pub.${ZONE}`, 1)]]])
  let listener: (c: RRsetChange<ZoneRR>[]) => void = () => {}
  const host = {
    lookup: (name: string, type: number) => zone.get(`${name.toLowerCase()}|${type}`) ?? [],
    canWatch: (q: { name: string }, user: string | undefined) =>
      !q.name.toLowerCase().endsWith(ZONE)
        ? 'notauth'
        : q.name.includes('.alice.') && user !== 'alice'
          ? 'refused'
          : 'ok',
    store: {
      onChange: (fn: (c: RRsetChange<ZoneRR>[]) => void) => {
        listener = fn
        return () => {}
      },
    },
    tsigKey: (user: string) => (user === 'alice' ? ALICE_KEY : undefined),
    cfg: { fudgeSec: 300 },
  } as const
  const notify = new NotifyService(
    { host, clock, random: new FakeRandom(7), ...(opts.log ? { log: opts.log } : {}) },
    { llq: { resendMs: 100 }, pushPlainTcp: opts.pushPlainTcp ?? false },
  )
  const change = (c: RRsetChange<ZoneRR>[]): void => {
    for (const x of c) zone.set(`${x.name}|${x.type}`, [...x.added])
    listener(c)
  }
  return { clock, notify, change, zone }
}

const connIds = { next: 1 }
function connection(transport: 'tls' | 'tcp' = 'tls') {
  const sent: Buffer[] = []
  const replies: (Buffer | undefined)[] = []
  const closers: (() => void)[] = []
  let closed = false
  const conn: StreamConnection = {
    id: connIds.next++,
    peer: { transport, address: '192.0.2.1', port: 4000, local: '127.0.0.1:853' },
    state: new Map(),
    send: (b) => {
      sent.push(b)
      return !closed
    },
    setIdleTimeout: () => {},
    close: () => {
      if (closed) return
      closed = true
      for (const c of closers) c()
    },
    onClose: (fn) => closers.push(fn),
    get closed() {
      return closed
    },
  }
  const ctx: InboundContext = {
    peer: conn.peer,
    reply: (b?: Buffer) => replies.push(b),
    send: (b) => sent.push(b),
    connection: conn,
  } as InboundContext
  return { conn, ctx, sent, replies }
}

test('DNS Push over the glue: keepalive, SUBSCRIBE with the initial PUSH, a change, UNSUBSCRIBE, close', () => {
  const s = setup()
  const c = connection()
  s.notify.handleDso(encodeDso({ id: 1, qr: false, rcode: 0, tlvs: [keepaliveTlv(0, 0)] }), c.ctx)
  const ka = decodeDso(c.replies.shift()!)
  assert.equal(ka.rcode, 0)
  assert.equal(ka.tlvs[0]!.type, DsoType.KEEPALIVE)
  assert.equal(decodeKeepaliveTlv(ka.tlvs[0]!.data).keepaliveMs, 60_000)
  const q = { name: `PUB.${ZONE}`, type: 28, class: 1 }
  s.notify.handleDso(encodeDso({ id: 2, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] }), c.ctx)
  assert.deepEqual(decodeDso(c.replies.shift()!), { id: 2, qr: true, rcode: 0, tlvs: [] })
  const initial = decodePushTlv(decodeDso(c.sent.shift()!).tlvs[0]!.data)
  assert.deepEqual(
    initial.map((r) => [r.ttl, r.rdata[15]]),
    [[60, 1]],
  )
  s.change([{ name: `pub.${ZONE}`, type: 28, added: [aaaa(`pub.${ZONE}`, 2)], removed: [aaaa(`pub.${ZONE}`, 1)] }])
  const pushed = decodePushTlv(decodeDso(c.sent.shift()!).tlvs[0]!.data)
  assert.deepEqual(
    pushed.map((r) => [r.ttl, r.rdata[15]]),
    [
      [0xffffffff, 1],
      [60, 2],
    ],
  )
  s.notify.handleDso(encodeDso({ id: 0, qr: false, rcode: 0, tlvs: [unsubscribeTlv(2)] }), c.ctx)
  assert.deepEqual(c.replies, [undefined], 'a unidirectional message is answered with nothing')
  assert.equal(s.notify.index.size, 0)
  s.notify.handleDso(encodeDso({ id: 3, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] }), c.ctx)
  assert.equal(s.notify.index.size, 1)
  c.conn.close()
  assert.equal(s.notify.index.size, 0)
  assert.equal(s.notify.sessions, 0)
  s.notify.close()
  assert.equal(s.clock.pending, 0)
})

test('DNS Push privacy: the connection’s TSIG user decides; other users’ names are REFUSED', () => {
  const s = setup()
  const c = connection()
  const q = { name: `h.alice.${ZONE}`, type: 28, class: 1 }
  s.notify.handleDso(encodeDso({ id: 5, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] }), c.ctx)
  assert.equal(decodeDso(c.replies.shift()!).rcode, 5)
  c.conn.state.set('tsig.user', 'bob')
  s.notify.handleDso(encodeDso({ id: 6, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] }), c.ctx)
  assert.equal(decodeDso(c.replies.shift()!).rcode, 5)
  c.conn.state.set('tsig.user', 'alice')
  s.notify.handleDso(encodeDso({ id: 7, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] }), c.ctx)
  assert.equal(decodeDso(c.replies.shift()!).rcode, 0)
  c.conn.close()
  s.notify.close()
})

test('arbitrary DSO bytes never throw, and each message is answered exactly once', () => {
  const s = setup()
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), fc.integer({ min: 0, max: 0xffff }), fc.boolean(), (body, id, qr) => {
      const c = connection()
      const head = Buffer.alloc(12)
      head.writeUInt16BE(id, 0)
      head.writeUInt16BE((qr ? 0x8000 : 0) | (Opcode.DSO << 11), 2)
      s.notify.handleDso(Buffer.concat([head, Buffer.from(body)]), c.ctx)
      s.notify.handleDso(Buffer.from(body), c.ctx)
      assert.equal(c.replies.length, 2)
      c.conn.close()
    }),
    { numRuns: 2000 },
  )
  assert.equal(s.notify.index.size, 0)
  s.notify.close()
})

function llqRequest(ctx: InboundContext, msg: Message, out: Buffer[] | Message[], user?: string): DnsRequest {
  return {
    raw: Buffer.alloc(0),
    msg,
    ctx,
    signer: user === undefined ? undefined : ({ user } as DnsRequest['signer']),
    respond: (res) => (out as Message[]).push(res),
    drop: () => {},
    encode: () => Buffer.alloc(0),
  }
}

test('LLQ over the glue: two LLQs of one name get the same event with their own IDs; acks stop resends', () => {
  const s = setup()
  const sent: Buffer[][] = [[], []]
  const ctxs = [0, 1].map(
    (i) =>
      ({
        peer: { transport: 'udp', address: '192.0.2.9', port: 5000 + i, local: '127.0.0.1:53' },
        reply: () => {},
        send: (b: Buffer) => sent[i]!.push(b),
      }) as unknown as InboundContext,
  )
  const ids: bigint[] = []
  for (const ctx of ctxs) {
    let llqId = 0n
    for (let step = 0; step < 2; step++) {
      const out: Message[] = []
      const msg = emptyMessage({
        id: 100 + step,
        questions: [{ name: `pub.${ZONE}`, type: 28, class: 1 }],
        edns: {
          udpSize: 1232,
          version: 0,
          do: false,
          options: [encodeLlq({ version: 1, opcode: LlqOpcode.SETUP, error: 0, id: llqId, leaseSec: 3600 })],
        },
      })
      assert.ok(s.notify.handler(llqRequest(ctx, msg, out)))
      const res = out[0]!
      llqId = decodeLlq(findOption(res.edns, EdnsOptionCode.LLQ)!.data).id
      if (step === 1) assert.equal(res.answers.length, 1)
    }
    ids.push(llqId)
  }
  s.change([{ name: `pub.${ZONE}`, type: 28, added: [aaaa(`pub.${ZONE}`, 3)], removed: [aaaa(`pub.${ZONE}`, 1)] }])
  const events = sent.map((l) => decodeMessage(l[0]!))
  for (const [i, ev] of events.entries()) {
    const o = decodeLlq(findOption(ev.edns, EdnsOptionCode.LLQ)!.data)
    assert.equal(o.opcode, LlqOpcode.EVENT)
    assert.equal(o.id, ids[i])
    assert.deepEqual(
      ev.answers.map((a) => [a.ttl, (a.data as { address: string }).address]),
      [
        [0xffffffff, 'fd00::1'],
        [60, 'fd00::3'],
      ],
    )
  }
  assert.notEqual(events[0]!.id, events[1]!.id, 'each LLQ gets its own event message ID')
  // Only the first LLQ acknowledges.
  const ack = emptyMessage({
    id: events[0]!.id,
    qr: true,
    questions: events[0]!.questions,
    edns: { ...events[0]!.edns!, options: [findOption(events[0]!.edns, EdnsOptionCode.LLQ)!] },
  })
  assert.ok(s.notify.handler(llqRequest(ctxs[0]!, ack, [])))
  s.clock.advance(1000)
  assert.equal(sent[0]!.length, 1)
  assert.equal(sent[1]!.length, 3, 'the silent one got 3 transmissions')
  assert.equal(s.notify.llq.size, 1)
  s.notify.close()
  assert.equal(s.clock.pending, 0)
})

test('LLQ privacy: events of an LLQ set up with TSIG are signed with the user’s key; acks must be signed by that user', () => {
  const s = setup()
  const sent: Buffer[] = []
  const ctx = {
    peer: { transport: 'udp', address: '192.0.2.9', port: 5100, local: '127.0.0.1:53' },
    reply: () => {},
    send: (b: Buffer) => sent.push(b),
  } as unknown as InboundContext
  const name = `h.alice.${ZONE}`
  s.zone.set(`${name}|28`, [aaaa(name, 1)])
  const setupLlq = (user: string | undefined, qname: string): bigint => {
    let llqId = 0n
    for (let step = 0; step < 2; step++) {
      const out: Message[] = []
      const msg = emptyMessage({
        id: 200 + step,
        questions: [{ name: qname, type: 28, class: 1 }],
        edns: {
          udpSize: 1232,
          version: 0,
          do: false,
          options: [encodeLlq({ version: 1, opcode: LlqOpcode.SETUP, error: 0, id: llqId, leaseSec: 3600 })],
        },
      })
      assert.ok(s.notify.handler(llqRequest(ctx, msg, out, user)))
      llqId = decodeLlq(findOption(out[0]!.edns, EdnsOptionCode.LLQ)!.data).id
    }
    return llqId
  }
  const id = setupLlq('alice', name)
  s.change([{ name, type: 28, added: [aaaa(name, 2)], removed: [] }])
  assert.equal(sent.length, 1)
  const keys = (n: string): TsigKey | undefined => (n.toLowerCase() === ALICE_KEY.name ? ALICE_KEY : undefined)
  const v = verifyMessage(sent[0]!, keys, { now: Math.floor(s.clock.now() / 1000) })
  assert.ok(v.ok, `event verifies with alice's key: ${JSON.stringify(v.ok ? '' : v.error)}`)
  const ev = v.msg
  assert.equal(decodeLlq(findOption(ev.edns, EdnsOptionCode.LLQ)!.data).id, id)
  const ackMsg = emptyMessage({
    id: ev.id,
    qr: true,
    questions: ev.questions,
    edns: { ...ev.edns!, options: [findOption(ev.edns, EdnsOptionCode.LLQ)!] },
  })
  // An unsigned (or other user's) acknowledgement does not stop the resends; alice's does.
  assert.ok(s.notify.handler(llqRequest(ctx, ackMsg, [])))
  assert.ok(s.notify.handler(llqRequest(ctx, ackMsg, [], 'bob')))
  assert.equal(s.notify.stats.llqAcksRefused, 2)
  s.clock.advance(150)
  assert.equal(sent.length, 2, 'retransmitted: the forged acks were ignored')
  assert.ok(verifyMessage(sent[1]!, keys, { now: Math.floor(s.clock.now() / 1000) }).ok, 'the resend is signed too')
  assert.ok(s.notify.handler(llqRequest(ctx, ackMsg, [], 'alice')))
  assert.equal(s.notify.stats.llqAcks, 1)
  s.clock.advance(1000)
  assert.equal(sent.length, 2)
  // A public-name LLQ set up without TSIG gets unsigned events.
  setupLlq(undefined, `pub.${ZONE}`)
  s.change([{ name: `pub.${ZONE}`, type: 28, added: [aaaa(`pub.${ZONE}`, 4)], removed: [] }])
  assert.equal(sent.length, 3)
  assert.equal(decodeMessage(sent[2]!).tsig, undefined)
  s.notify.close()
})

test('DNS Push is TLS only (RFC 8765 §6): on plain TCP, Keepalive works and SUBSCRIBE gets DSOTYPENI unless opted in', () => {
  const q = { name: `pub.${ZONE}`, type: 28, class: 1 }
  for (const plain of [false, true]) {
    const s = setup({ pushPlainTcp: plain })
    const c = connection('tcp')
    s.notify.handleDso(encodeDso({ id: 1, qr: false, rcode: 0, tlvs: [keepaliveTlv(0, 0)] }), c.ctx)
    assert.equal(decodeDso(c.replies.shift()!).rcode, 0, 'the DSO session itself is fine on TCP')
    s.notify.handleDso(encodeDso({ id: 2, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] }), c.ctx)
    assert.equal(decodeDso(c.replies.shift()!).rcode, plain ? 0 : 11, plain ? '--push-plain-tcp' : 'DSOTYPENI')
    assert.equal(s.notify.index.size, plain ? 1 : 0)
    assert.equal(c.sent.length, plain ? 1 : 0, 'the initial PUSH only when subscribed')
    assert.equal(c.conn.closed, false)
    c.conn.close()
    s.notify.close()
  }
})

test('a Push fan-out writes one shared framed Buffer to every session and logs when the last octets left', async () => {
  const log = new MemoryLogger()
  const s = setup({ log })
  const frames: Buffer[] = []
  let held = 3
  const conns = Array.from({ length: 1000 }, (_, i) => {
    const c = connection()
    c.conn.sendFramed = (f) => {
      frames.push(f)
      return true
    }
    // The first connection's write is not taken by the kernel at once: the log waits for it.
    Object.defineProperty(c.conn, 'queued', { get: () => (i === 0 && held-- > 0 ? 60 : 0) })
    s.notify.handleDso(
      encodeDso({ id: 1, qr: false, rcode: 0, tlvs: [subscribeTlv({ name: `pub.${ZONE}`, type: 28, class: 1 })] }),
      c.ctx,
    )
    return c
  })
  s.change([{ name: `pub.${ZONE}`, type: 28, added: [aaaa(`pub.${ZONE}`, 2)], removed: [aaaa(`pub.${ZONE}`, 1)] }])
  assert.equal(frames.length, 1000)
  assert.ok(
    frames.every((f) => f === frames[0]),
    'one Buffer for every session',
  )
  const msg = frames[0]!.subarray(2)
  assert.equal(frames[0]!.readUInt16BE(0), msg.length, 'length-prefixed (RFC 1035 4.2.2)')
  assert.deepEqual(
    decodePushTlv(decodeDso(msg).tlvs[0]!.data).map((r) => [r.ttl, r.rdata[15]]),
    [
      [0xffffffff, 1],
      [60, 2],
    ],
  )
  for (let t = 0; t < 200 && !log.entries.some((e) => e.event === 'notify.fanout'); t++)
    await new Promise((r) => setImmediate(r))
  const entry = log.entries.find((e) => e.event === 'notify.fanout')
  assert.ok(entry, 'the fan-out is logged')
  assert.equal(entry.level, 'info')
  assert.equal(entry.fields.delivered, 1000)
  assert.equal(entry.fields.queuedConnections, 1)
  assert.equal(typeof entry.fields.flushedMs, 'number')
  assert.ok((entry.fields.flushedMs as number) >= (entry.fields.ms as number))
  for (const c of conns) c.conn.close()
  s.notify.close()
  assert.equal(s.clock.pending, 0)
})
