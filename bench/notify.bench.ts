// bench/notify: the real `autotunnel server` holding 10,000 and 100,000 live subscriptions (DNS Push over TLS,
// LLQ over UDP): server RSS and CPU to set them up and to hold them; then the time from a committed UPDATE to
// the last of 10,000 watchers of that name receiving the change: LLQ (TSIG-signed events; the per-watcher signing
// cost is also timed alone, in this process) and DNS Push (10,000 DSO sessions, one per watcher,
// on plain TCP with --push-plain-tcp so that TLS set-up does not dominate the run, or on TLS with NOTIFY_PUSH_TLS=1;
// --max-connections raised).
// Each connection is a file descriptor in this process and in the server: `ulimit -n` must exceed the watchers.
// Drives the protocols with raw messages (no per-watcher client objects) so the load generator stays light.
import { type ChildProcess, fork, spawnSync } from 'node:child_process'
import dgram from 'node:dgram'
import { readFileSync } from 'node:fs'
import { DnsStream } from '../src/dns/client/stream.js'
import { DsoType, decodeDso, encodeDso, keepaliveTlv, subscribeTlv } from '../src/dns/dso.js'
import { EdnsOptionCode, findOption } from '../src/dns/edns.js'
import { decodeLlq, encodeLlq, LlqOpcode } from '../src/dns/llq.js'
import { signMessage, type TsigKey } from '../src/dns/tsig.js'
import { Opcode } from '../src/dns/wire/header.js'
import { decodeMessage, emptyMessage, encodeMessage, type Message } from '../src/dns/wire/message.js'
import { RRClass, RRType } from '../src/dns/wire/rr-table.js'
import { type AccountJson, NotifyServer, tsigKey, ZONE } from '../test/interop/notify-harness.js'

const CLK_TCK = 100
const FANOUT_WATCHERS = Number(process.env.NOTIFY_FANOUT ?? 10_000)
/** NOTIFY_PUSH_TLS=1: the Push fan-out sessions use the TLS listener, as real clients must (RFC 8765 §6). */
const PUSH_TLS = process.env.NOTIFY_PUSH_TLS === '1'
/** Loopback source addresses per this many sockets: one ephemeral port range (32768-60999) each. */
const SOCKETS_PER_SOURCE = 20_000
const srcAddr = (i: number): string => `127.0.0.${1 + Math.floor(i / SOCKETS_PER_SOURCE)}`
const FDS_NEEDED = FANOUT_WATCHERS + 1000

// Every watcher is a socket here and in the server: raise the open-files limit (root with CAP_SYS_RESOURCE may) by
// re-running this script under `ulimit -n`, which the server processes inherit; if that is refused, fan-outs
// larger than the limit are reported as skipped.
if (openFilesLimit() < FDS_NEEDED && !process.env.NOTIFY_BENCH_REEXEC) {
  const r = spawnSync(
    'bash',
    [
      '-c',
      `ulimit -n ${FDS_NEEDED} 2>/dev/null; exec "$0" "$@"`,
      process.execPath,
      ...process.execArgv,
      ...process.argv.slice(1),
    ],
    { stdio: 'inherit', env: { ...process.env, NOTIFY_BENCH_REEXEC: '1' } },
  )
  process.exit(r.status ?? 1)
}

/** The soft limit on open files of this process (the server inherits it). */
function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  return m?.[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m?.[1] ?? 1024)
}
// The push fan-out runs on plain TCP (the server's fan-out, not TLS, is measured): opt in.
const LIMITS = [
  '--watch-limit-client',
  '300000',
  '--watch-limit-user',
  '300000',
  '--watch-limit-anonymous',
  '300000',
  '--watch-limit-total',
  '300000',
  '--push-plain-tcp',
  '--max-connections-per-source',
  '300000',
]

function procStats(pid: number): { rssMiB: number; cpuSec: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { rssMiB: rssKb / 1024, cpuSec: (Number(f[11]) + Number(f[12])) / CLK_TCK }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function llqQuery(id: number, name: string, llqId: bigint, key?: TsigKey): Buffer {
  const m = emptyMessage({
    id,
    opcode: Opcode.QUERY,
    questions: [{ name, type: RRType.AAAA, class: RRClass.IN }],
    edns: {
      udpSize: 4096,
      version: 0,
      do: false,
      options: [encodeLlq({ version: 1, opcode: LlqOpcode.SETUP, error: 0, id: llqId, leaseSec: 7200 })],
    },
  })
  return key ? signMessage(m, key).wire : encodeMessage(m)
}

/** LLQ handshakes for `names` spread over `sockets`: returns the sockets (for events) once all are established. */
async function llqSetup(
  port: number,
  names: string[],
  socketCount: number,
  key?: TsigKey,
  onArrival?: (sock: number) => void,
  src: (i: number) => string = srcAddr,
): Promise<dgram.Socket[]> {
  const socks: dgram.Socket[] = []
  for (let i = 0; i < socketCount; i++) {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: socketCount > 100 ? 1 << 16 : 1 << 22 })
    await new Promise<void>((r) => s.bind(0, src(i), () => r()))
    socks.push(s)
  }
  // Per socket: message ID -> index of the name; state per name: challenge id or done.
  const state = names.map(() => ({ llqId: 0n, done: false }))
  const pending = socks.map(() => new Map<number, number>())
  const acks: (() => void)[] = []
  socks.forEach((s, si) => {
    s.on('message', (b) => {
      // Time first: decoding and signing the acknowledgement wait, so 10,000 arrivals are stamped as they come.
      if (onArrival && (b[2]! & 0x80) !== 0) onArrival(si)
      let m: Message
      try {
        m = decodeMessage(b)
      } catch {
        return
      }
      const o = findOption(m.edns, EdnsOptionCode.LLQ)
      if (!o) return
      const llq = decodeLlq(o.data)
      if (llq.opcode === LlqOpcode.EVENT) {
        const ack = emptyMessage({ id: m.id, qr: true, questions: m.questions, edns: { ...m.edns!, options: [o] } })
        acks.push(() => s.send(key ? signMessage(ack, key).wire : encodeMessage(ack), port, '127.0.0.1'))
        if (acks.length === 1)
          setTimeout(() => {
            for (const a of acks.splice(0))
              try {
                a()
              } catch {
                // the socket was closed: the bench is over
              }
          }, 500)
        return
      }
      const ni = pending[si]!.get(m.id)
      if (ni === undefined) return
      pending[si]!.delete(m.id)
      const st = state[ni]!
      if (st.llqId === 0n) st.llqId = llq.id
      else st.done = true
    })
  })
  const WINDOW = 2000
  // Rounds retry what got no answer (a busy server drops datagrams); up to about a minute in all.
  for (let round = 0; round < 300; round++) {
    const todo = names.map((_, i) => i).filter((i) => !state[i]!.done)
    if (todo.length === 0) break
    for (let k = 0; k < todo.length; k += WINDOW) {
      for (const i of todo.slice(k, k + WINDOW)) {
        const si = i % socks.length
        const id = 1 + ((i / socks.length) | 0) * 2 + (state[i]!.llqId === 0n ? 0 : 1)
        pending[si]!.set(id & 0xffff, i)
        socks[si]!.send(llqQuery(id & 0xffff, names[i]!, state[i]!.llqId, key), port, '127.0.0.1')
      }
      await sleep(20)
    }
    await sleep(200)
  }
  const missing = state.filter((s) => !s.done).length
  if (missing) throw new Error(`${missing} LLQs not established`)
  return socks
}

/** DNS Push: one DSO session per `sessions`, names spread over them; resolves when every SUBSCRIBE succeeded. */
async function pushSetup(
  port: number,
  tls: boolean,
  names: string[],
  sessions: number,
  onPush?: (s: number) => void,
): Promise<DnsStream[]> {
  const streams: DnsStream[] = []
  let ok = 0
  let failed = 0
  for (let si = 0; si < sessions; si++) {
    const s = await DnsStream.connect({
      host: '127.0.0.1',
      port,
      ...(tls ? { tls: { rejectUnauthorized: false } } : {}),
    })
    s.onMessage((b) => {
      const m = decodeDso(b)
      if (m.qr) {
        if (m.rcode === 0) ok++
        else failed++
      } else if (m.tlvs[0]?.type === DsoType.PUSH) onPush?.(si)
    })
    s.send(encodeDso({ id: 0xffff, qr: false, rcode: 0, tlvs: [keepaliveTlv(0, 0)] }))
    streams.push(s)
  }
  for (let i = 0; i < names.length; i++) {
    const si = i % sessions
    const id = 1 + ((i / sessions) | 0)
    const q = { name: names[i]!, type: RRType.AAAA, class: RRClass.IN }
    streams[si]!.send(encodeDso({ id, qr: false, rcode: 0, tlvs: [subscribeTlv(q)] }))
    if (i % 5000 === 4999) await sleep(5)
  }
  const want = names.length + sessions
  for (let t = 0; t < 600 && ok + failed < want; t++) await sleep(50)
  if (ok !== want) throw new Error(`push: ${ok} ok, ${failed} failed of ${want}`)
  return streams
}

async function signedUpdate(port: number, key: TsigKey, name: string, addr: string): Promise<number> {
  const m = emptyMessage({
    id: 4242,
    opcode: Opcode.UPDATE,
    questions: [{ name: `${ZONE}.`, type: RRType.SOA, class: RRClass.IN }],
    authorities: [{ name, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: addr } }],
  })
  const s = dgram.createSocket('udp4')
  const answered = new Promise<number>((resolve) => s.on('message', () => resolve(performance.now())))
  s.send(signMessage(m, key).wire, port, '127.0.0.1')
  const t = await answered
  s.close()
  return t
}

async function holdingFigures(kind: 'push' | 'llq', n: number): Promise<string> {
  const srv = new NotifyServer(LIMITS)
  await srv.start()
  try {
    const pid = srv.proc!.pid!
    await sleep(300)
    const base = procStats(pid)
    const names = Array.from({ length: n }, (_, i) => `_n${i}.${ZONE}.`)
    const t0 = performance.now()
    const handles =
      kind === 'push' ? await pushSetup(srv.tlsPort, true, names, 10) : await llqSetup(srv.dnsPort, names, 10)
    const setupMs = performance.now() - t0
    await sleep(500)
    const held = procStats(pid)
    await sleep(5000)
    const idle = procStats(pid)
    for (const h of handles) h.close()
    const per = ((held.rssMiB - base.rssMiB) * 1024 * 1024) / n
    return (
      `${kind.padEnd(4)} ${String(n).padStart(6)} subscriptions: setup ${(setupMs / 1000).toFixed(1)} s, ` +
      `server RSS ${base.rssMiB.toFixed(0)} -> ${held.rssMiB.toFixed(0)} MiB (${per.toFixed(0)} B/subscription), ` +
      `server CPU for setup ${(held.cpuSec - base.cpuSec).toFixed(2)} s (${(((held.cpuSec - base.cpuSec) * 1e6) / n).toFixed(0)} µs/subscription), ` +
      `CPU while holding ${(((idle.cpuSec - held.cpuSec) / 5) * 100).toFixed(1)} %`
    )
  } finally {
    await srv.cleanup()
  }
}

/** What signing costs per LLQ event: copy the encoded event, patch ID and LLQ-ID, HMAC-SHA256 it (as the server). */
function llqSigningCost(n: number): string {
  const key: TsigKey = { name: `bench.${ZONE}.`, algorithm: 'hmac-sha256', secret: Buffer.alloc(32, 1) }
  const name = `fan.bench.${ZONE}.`
  const template = encodeMessage(
    emptyMessage({
      id: 1,
      qr: true,
      aa: true,
      questions: [{ name, type: RRType.AAAA, class: RRClass.IN }],
      answers: [{ name, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: 'fd00::f' } }],
      edns: {
        udpSize: 1232,
        version: 0,
        do: false,
        options: [encodeLlq({ version: 1, opcode: LlqOpcode.EVENT, error: 0, id: 1n, leaseSec: 7200 })],
      },
    }),
  )
  const run = (sign: boolean): number => {
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const w = Buffer.from(template)
      w.writeUInt16BE(i & 0xffff, 0)
      w.writeBigUInt64BE(BigInt(i), w.length - 12)
      if (sign) signMessage(w, key, { timeSigned: 1_800_000_000 })
    }
    return performance.now() - t0
  }
  run(true)
  const plain = run(false)
  const signed = run(true)
  return (
    `llq  event signing (hmac-sha256, ${template.length}-octet event): ${(((signed - plain) * 1000) / n).toFixed(2)} µs/watcher ` +
    `(${n} copies: ${plain.toFixed(1)} ms unsigned, ${signed.toFixed(1)} ms signed)`
  )
}

async function fanOut(kind: 'push' | 'llq', watchers: number): Promise<string> {
  if (openFilesLimit() < watchers + 200)
    return `${kind} fan-out to ${watchers}: skipped, ulimit -n is ${openFilesLimit()} (run as root or with ulimit -n ${watchers + 1000})`
  const srv = new NotifyServer([...LIMITS, '--max-connections', String(watchers + 100)])
  const acct = await srv.addAccount('bench')
  await srv.start()
  const key = tsigKey(acct)
  const name = `fan.bench.${ZONE}.`
  try {
    const arrivals: number[] = []
    const seen = new Set<number>()
    let armed = false
    const record = (i: number): void => {
      if (!armed || seen.has(i)) return
      seen.add(i)
      arrivals.push(performance.now())
    }
    let handles: { close(): void }[]
    if (kind !== 'push') {
      handles = await llqSetup(srv.dnsPort, Array(watchers).fill(name), watchers, key, (i) => record(i))
    } else {
      // The watched name is the user's: each session authenticates with one TSIG-signed query first.
      const streams: DnsStream[] = []
      let ok = 0
      for (let si = 0; si < watchers; si++) {
        const s = await DnsStream.connect(
          PUSH_TLS
            ? { host: '127.0.0.1', port: srv.tlsPort, localAddress: srcAddr(si), tls: { rejectUnauthorized: false } }
            : { host: '127.0.0.1', port: srv.dnsPort, localAddress: srcAddr(si) },
          30_000,
        )
        s.onMessage((b) => {
          if ((b[2]! & 0x78) >> 3 !== Opcode.DSO) return
          const m = decodeDso(b)
          if (m.qr && m.rcode === 0 && m.id === 2) ok++
          if (!m.qr && m.tlvs[0]?.type === DsoType.PUSH) record(si)
        })
        // A distinct ID per connection: the same signed bytes twice are a replay and bind nothing (docs/security.md).
        const auth = emptyMessage({
          id: 1 + (si % 0xfffe),
          questions: [{ name: `bench.${ZONE}.`, type: RRType.SOA, class: RRClass.IN }],
        })
        s.send(signMessage(auth, key).wire)
        s.send(encodeDso({ id: 2, qr: false, rcode: 0, tlvs: [subscribeTlv({ name, type: RRType.AAAA, class: 1 })] }))
        streams.push(s)
      }
      for (let t = 0; t < 1200 && ok < watchers; t++) await sleep(50)
      if (ok !== watchers) throw new Error(`push fan-out: ${ok}/${watchers} subscribed`)
      handles = streams
    }
    await sleep(500)
    armed = true
    const before = procStats(srv.proc!.pid!)
    const cpu0 = before.cpuSec
    const sent = performance.now()
    const committed = await signedUpdate(srv.dnsPort, key, name, 'fd00::f')
    for (let t = 0; t < 2400 && arrivals.length < watchers; t++) await sleep(25)
    const cpu = procStats(srv.proc!.pid!).cpuSec - cpu0
    for (const h of handles) h.close()
    if (arrivals.length === 0) return `${kind}: no watcher received the change`
    await sleep(300) // the server's log line may still be on its way
    const fan = /"delivered":(\d+),"ms":([\d.]+)/.exec(srv.stderr)
    arrivals.sort((a, b) => a - b)
    const last = arrivals.at(-1)!
    const p50 = arrivals[arrivals.length >> 1]!
    return (
      `${kind.padEnd(4)} fan-out to ${watchers} watchers of one name${kind === 'push' ? (PUSH_TLS ? ' (TLS)' : ' (plain TCP)') : ''}: ${arrivals.length} received; ` +
      `UPDATE answered ${(committed - sent).toFixed(1)} ms after it was sent; ` +
      `last watcher ${(last - committed).toFixed(1)} ms after the answer (${(last - sent).toFixed(1)} ms after the send), ` +
      `median ${(p50 - sent).toFixed(1)} ms after send; server CPU ${(cpu * 1000).toFixed(0)} ms (incl. the acks), ` +
      `server RSS ${before.rssMiB.toFixed(0)} MiB holding them` +
      (fan ? `; server side: ${fan[1]} events handed to the kernel ${fan[2]} ms after the commit` : '')
    )
  } finally {
    await srv.cleanup()
  }
}

/**
 * LLQ fan-out beyond one process's open-files limit: the watchers' UDP sockets are spread over child processes
 * (each with its own limit and its own loopback source address); the server needs one socket whatever the count.
 * Arrival times are wall-clock (performance.timeOrigin + now), comparable across processes on one machine.
 */
async function llqFanOutSpread(watchers: number): Promise<string> {
  const perChild = Math.min(SOCKETS_PER_SOURCE, openFilesLimit() - 500)
  const children = Math.ceil(watchers / perChild)
  const srv = new NotifyServer(LIMITS)
  const acct = await srv.addAccount('bench')
  await srv.start()
  const name = `fan.bench.${ZONE}.`
  const kids: ChildProcess[] = []
  try {
    const arrived = new Array<number>(children).fill(0)
    const reports: number[][] = []
    const ready: Promise<void>[] = []
    for (let k = 0; k < children; k++) {
      const count = Math.min(perChild, watchers - k * perChild)
      const job: ChildJob = { port: srv.dnsPort, name, count, src: `127.0.1.${1 + k}`, account: acct }
      const kid = fork(process.argv[1]!, [], {
        env: { ...process.env, NOTIFY_BENCH_CHILD: JSON.stringify(job), NOTIFY_BENCH_REEXEC: '1' },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      kids.push(kid)
      ready.push(
        new Promise((resolve, reject) => {
          kid.on('message', (m: ChildMessage) => {
            if (m.kind === 'ready') resolve()
            else if (m.kind === 'arrived') arrived[k] = m.n
            else if (m.kind === 'report') reports.push(m.arrivals)
          })
          kid.once('exit', (code) => reject(new Error(`child ${k} exited with ${code}`)))
        }),
      )
      // One child's handshakes at a time: the server's socket buffer is the bottleneck of the set-up.
      await ready[k]
    }
    await Promise.all(ready)
    for (const kid of kids) kid.send('arm')
    await sleep(500)
    const before = procStats(srv.proc!.pid!)
    const sent = performance.timeOrigin + performance.now()
    const committed = performance.timeOrigin + (await signedUpdate(srv.dnsPort, tsigKey(acct), name, 'fd00::f'))
    const total = (): number => arrived.reduce((a, b) => a + b, 0)
    for (let t = 0; t < 2400 && total() < watchers; t++) await sleep(25)
    const cpu = procStats(srv.proc!.pid!).cpuSec - before.cpuSec
    const done = kids.map((kid) => new Promise<void>((r) => kid.once('exit', () => r())))
    for (const kid of kids) kid.send('report')
    await Promise.all(done)
    const arrivals = reports.flat().sort((a, b) => a - b)
    if (arrivals.length === 0) return `llq fan-out to ${watchers}: no watcher received the change`
    await sleep(300)
    const fan = /"delivered":(\d+),"ms":([\d.]+)/.exec(srv.stderr)
    const last = arrivals.at(-1)!
    return (
      `llq  fan-out to ${watchers} watchers of one name (${children} client processes): ${arrivals.length} received; ` +
      `UPDATE answered ${(committed - sent).toFixed(1)} ms after it was sent; ` +
      `last watcher ${(last - committed).toFixed(1)} ms after the answer, median ${(arrivals[arrivals.length >> 1]! - sent).toFixed(1)} ms after send; ` +
      `server CPU ${(cpu * 1000).toFixed(0)} ms (incl. the acks), server RSS ${before.rssMiB.toFixed(0)} MiB holding them` +
      (fan ? `; server side: ${fan[1]} events handed to the kernel ${fan[2]} ms after the commit` : '')
    )
  } finally {
    for (const kid of kids) kid.kill('SIGKILL')
    await srv.cleanup()
  }
}

interface ChildJob {
  readonly port: number
  readonly name: string
  readonly count: number
  readonly src: string
  readonly account: AccountJson
}
type ChildMessage =
  | { readonly kind: 'ready' }
  | { readonly kind: 'arrived'; readonly n: number }
  | { readonly kind: 'report'; readonly arrivals: number[] }

/** A child of llqFanOutSpread: sets up its LLQs, reports arrivals. */
async function llqChild(job: ChildJob): Promise<void> {
  const arrivals: number[] = []
  const seen = new Set<number>()
  let armed = false
  const socks = await llqSetup(
    job.port,
    Array(job.count).fill(job.name),
    job.count,
    tsigKey(job.account),
    (i) => {
      if (!armed || seen.has(i)) return
      seen.add(i)
      arrivals.push(performance.timeOrigin + performance.now())
    },
    () => job.src,
  )
  const send = (m: ChildMessage): void => void process.send!(m)
  const tick = setInterval(() => send({ kind: 'arrived', n: arrivals.length }), 100)
  process.on('message', (m) => {
    if (m === 'arm') armed = true
    if (m === 'report') {
      clearInterval(tick)
      for (const s of socks) s.close()
      process.send!({ kind: 'report', arrivals } satisfies ChildMessage, () => process.exit(0))
    }
  })
  send({ kind: 'ready' })
}

if (process.env.NOTIFY_BENCH_CHILD) {
  process.on('disconnect', () => process.exit(0))
  await llqChild(JSON.parse(process.env.NOTIFY_BENCH_CHILD) as ChildJob)
  await new Promise(() => {})
}

const only = process.env.NOTIFY_BENCH ?? 'all'
const lines: string[] = []
for (const [kind, n] of only === 'fanout'
  ? []
  : ([
      ['push', 10_000],
      ['push', 100_000],
      ['llq', 10_000],
      ['llq', 100_000],
    ] as const)) {
  const l = await holdingFigures(kind, n)
  console.log(l)
  lines.push(l)
}
for (const [kind, n] of only === 'hold'
  ? []
  : ([
      ['llq', FANOUT_WATCHERS],
      ['push', FANOUT_WATCHERS],
    ] as const)) {
  const l = kind === 'llq' && openFilesLimit() < n + 200 ? await llqFanOutSpread(n) : await fanOut(kind, n)
  console.log(l)
  lines.push(l)
}
if (only !== 'hold') {
  const l = llqSigningCost(FANOUT_WATCHERS)
  console.log(l)
  lines.push(l)
}
