// A minimal signed DNS client for the server tests: builds UPDATEs and queries with the wire library, signs
// them (TSIG) and matches answers by ID over one UDP socket, with a bounded number in flight.
import { createSocket } from 'node:dgram'
import { signMessage, type TsigKey, verifyMessage } from '../../src/dns/tsig.js'
import { Opcode, Rcode } from '../../src/dns/wire/header.js'
import { decodeMessage, emptyMessage, type Message } from '../../src/dns/wire/message.js'
import { type RR, RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import type { AccountJson } from './server-harness.js'

export function keyOf(a: AccountJson): TsigKey {
  return { name: a.keyName, algorithm: a.algorithm, secret: Buffer.from(a.secret, 'base64') }
}

export function updateMessage(id: number, zone: string, updates: RR[]): Message {
  return emptyMessage({
    id,
    opcode: Opcode.UPDATE,
    questions: [{ name: zone, type: RRType.SOA, class: RRClass.IN }],
    authorities: updates,
  })
}

export function queryMessage(id: number, name: string, type: number): Message {
  return emptyMessage({ id, opcode: Opcode.QUERY, questions: [{ name, type, class: RRClass.IN }] })
}

export interface Outcome {
  readonly index: number
  readonly rcode: number | undefined
  readonly msg?: Message
}

/**
 * Sends `msgs` (signed with `key`) to 127.0.0.1:port over UDP with at most `window` unanswered; each message
 * gets `timeoutMs` and no retransmission (a lost answer is rcode undefined). `onAnswer` may call stop().
 */
export async function sendAll(
  port: number,
  key: TsigKey,
  msgs: Message[],
  opts: { window?: number; timeoutMs?: number; onAnswer?: (o: Outcome, stop: () => void) => void } = {},
): Promise<Outcome[]> {
  const window = opts.window ?? 20
  const timeoutMs = opts.timeoutMs ?? 2000
  const sock = createSocket('udp4')
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r))
  const results: Outcome[] = new Array(msgs.length)
  const inflight = new Map<number, { index: number; mac: Buffer; timer: NodeJS.Timeout }>()
  let next = 0
  let stopped = false
  let finish: () => void = () => {}
  const done = new Promise<void>((r) => (finish = r))
  const settle = (id: number, o: Omit<Outcome, 'index'>): void => {
    const f = inflight.get(id)
    if (!f) return
    clearTimeout(f.timer)
    inflight.delete(id)
    const out: Outcome = { index: f.index, ...o }
    results[f.index] = out
    opts.onAnswer?.(out, () => {
      stopped = true
    })
    pump()
  }
  const pump = (): void => {
    while (!stopped && inflight.size < window && next < msgs.length) {
      const index = next++
      const m = msgs[index]!
      const s = signMessage(m, key)
      const timer = setTimeout(() => settle(m.id, { rcode: undefined }), timeoutMs)
      inflight.set(m.id, { index, mac: s.mac, timer })
      sock.send(s.wire, port, '127.0.0.1')
    }
    if (inflight.size === 0 && (stopped || next >= msgs.length)) finish()
  }
  sock.on('message', (buf) => {
    if (buf.length < 2) return
    const id = buf.readUInt16BE(0)
    const f = inflight.get(id)
    if (!f) return
    const v = verifyMessage(buf, (n) => (n.toLowerCase() === key.name.toLowerCase() ? key : undefined), {
      requestMac: f.mac,
    })
    const msg = v.ok ? v.msg : decodeMessage(buf)
    settle(id, { rcode: v.ok ? msg.rcode : -1, msg })
  })
  sock.on('error', () => {})
  pump()
  await done
  sock.close()
  return results
}

/**
 * Which of `names` (by index) the server on `port` does not answer with exactly one TXT and one A record: the
 * storm tests' check that every acknowledged update is there.
 */
export async function missingOn(port: number, key: TsigKey, names: string[]): Promise<number[]> {
  const bad = new Set<number>()
  for (const type of [RRType.TXT, RRType.A]) {
    const rs = await sendAll(
      port,
      key,
      names.map((n, j) => queryMessage((j % 60000) + 1, n, type)),
      { window: 64, timeoutMs: 3000 },
    )
    for (const r of rs) if (r.rcode !== Rcode.NOERROR || r.msg?.answers.length !== 1) bad.add(r.index)
  }
  return [...bad].sort((x, y) => x - y)
}

/** Waits (up to `ms`) until the server on `port` has every one of `names`; returns what is still missing. */
export async function eventually(port: number, key: TsigKey, names: string[], ms = 5000): Promise<number[]> {
  const t0 = performance.now()
  for (;;) {
    const m = await missingOn(port, key, names)
    if (m.length === 0 || performance.now() - t0 > ms) return m
    await new Promise((r) => setTimeout(r, 100))
  }
}
