// bench/notify: the real `autotunnel server` holding 10,000 and 100,000 live subscriptions (DNS Push over TLS,
// LLQ over UDP): server RSS and CPU to set them up and to hold them; then the time from a committed UPDATE to
// the last of 10,000 watchers of that name having the change (fanOutSpread: measured in the server, and as the
// watchers, in separate client processes, read it): LLQ (TSIG-signed events; the per-watcher signing cost is also
// timed alone, in this process) and DNS Push (10,000 DSO sessions, one per watcher, on plain TCP with
// --push-plain-tcp, or on TLS with NOTIFY_PUSH_TLS=1; --max-connections raised).
// NOTIFY_BENCH=hold|fanout runs one half; NOTIFY_FANOUT=N watchers (default 10,000); NOTIFY_FANOUT_KINDS=llq,push;
// NOTIFY_CLIENT_PROCS=K client processes for the fan-out (default 4). Profile the server with
// AUTOTUNNEL_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"; AUTOTUNNEL_FANOUT_NATIVE=0 runs it (and the
// signing figure) without the fanout addon, AUTOTUNNEL_FANOUT_HELPER=0 without its helper thread.
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
import { LlqEventWire } from '../src/server/llq-event-wire.js'
import { type AccountJson, NotifyServer, tsigKey, ZONE } from '../test/interop/notify-harness.js'

const CLK_TCK = 100
const FANOUT_WATCHERS = Number(process.env.NOTIFY_FANOUT ?? 10_000)
/** NOTIFY_ROUNDS: UPDATEs per fan-out case (round 0 finds the server's code cold, the others warm). */
const ROUNDS = Math.max(1, Number(process.env.NOTIFY_ROUNDS ?? 3))
/**
 * NOTIFY_PIN=1: the server on CPU 0, the client processes (and this one) on CPU 1 (taskset), so the watchers that
 * wake up to read do not take the server's core: the server's figure without its load generator beside it.
 */
const PIN = process.env.NOTIFY_PIN === '1'
const SERVER_CPU = 0
const CLIENT_CPU = 1
function pin(pid: number, cpu: number): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' })
  if (r.status !== 0)
    throw new Error(`taskset -a -p -c ${cpu} ${pid} failed (util-linux's taskset needed for NOTIFY_PIN=1)`)
}
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
  // What the server does now (src/server/llq-event-wire.ts): the change encoded once, each copy patched and
  // signed with one HMAC over it and TSIG variables built once per key and second.
  const fields = {
    question: { name, type: RRType.AAAA, class: RRClass.IN },
    added: [{ name, type: RRType.AAAA, class: RRClass.IN, ttl: 60, rdata: Buffer.alloc(16, 0xfd), text: 'fd00::' }],
    removed: [],
  }
  const wireRun = (): number => {
    const w = new LlqEventWire()
    const t0 = performance.now()
    for (let i = 0; i < n; i++)
      w.event(
        { ...fields, msgId: i & 0xffff, opt: { version: 1, opcode: 3, error: 0, id: BigInt(i + 1), leaseSec: 7200 } },
        key,
        1_800_000_000,
        300,
      )
    return performance.now() - t0
  }
  run(true)
  wireRun()
  const plain = run(false)
  const signed = run(true)
  const wire = wireRun()
  return (
    `llq  event signing (hmac-sha256, ${template.length}-octet event): signMessage ${(((signed - plain) * 1000) / n).toFixed(2)} µs/watcher ` +
    `(${n} copies: ${plain.toFixed(1)} ms unsigned, ${signed.toFixed(1)} ms signed); ` +
    `server's LlqEventWire (patch + sign) ${((wire * 1000) / n).toFixed(2)} µs/watcher (${wire.toFixed(1)} ms)`
  )
}

/**
 * Fan-out: one TSIG-signed UPDATE of a name that `watchers` watchers watch; the time from the commit until the
 * last watcher has the change. The watchers live in NOTIFY_CLIENT_PROCS child processes (default 4), not in this
 * one and not in the server: each child holds its share of sockets (LLQ: one UDP socket per watcher; Push: one
 * TCP or TLS connection per watcher, each a DSO session authenticated with a signed query) and stamps the
 * wall-clock time (performance.timeOrigin + now) when a socket's first octets after arming reach its 'data' or
 * 'message' handler, before any decoding; LLQ acknowledgements wait 500 ms, so they do not compete with the
 * fan-out. Two figures are reported:
 *  - server: from the server's own `notify.fanout` log line, measured in the server from the change feed's call
 *    (right after the COMMIT and the UPDATE's answer) until the last message was written (`ms`) and until every
 *    octet had left the server process (`flushedMs`: stream writes the kernel did not take at once, the sendmmsg
 *    batch of LLQ datagrams). On loopback the kernel queues a message on the watcher's socket inside the sending
 *    system call, so this is "commit until the last watcher's socket has the bytes": the issue's goal. Also the
 *    CPU time of the server's synchronous pass (`cpuMs`): on this shared 2-core machine the wall time includes
 *    waiting for a core, the CPU time is what the pass costs on a core of its own.
 *  - clients: from this process receiving the UPDATE's answer (after the commit) until the last child read its
 *    message. It adds the children's own time to wake up and read 10,000 sockets on the same two cores, so it is an
 *    upper bound of the server's latency, not the server's figure.
 */
async function fanOutSpread(kind: 'push' | 'llq', watchers: number): Promise<string> {
  const procs = Math.max(1, Number(process.env.NOTIFY_CLIENT_PROCS ?? 4))
  const perChild = Math.ceil(watchers / procs)
  if (perChild + 200 > openFilesLimit())
    return `${kind} fan-out to ${watchers}: skipped, ${perChild} sockets per client process exceed ulimit -n ${openFilesLimit()}`
  const srv = new NotifyServer([...LIMITS, '--max-connections', String(watchers + 100)])
  const acct = await srv.addAccount('bench')
  await srv.start()
  const name = `fan.bench.${ZONE}.`
  const kids: ChildProcess[] = []
  try {
    const arrived = new Array<number>(procs).fill(0)
    const reports: number[][][] = []
    for (let k = 0; k < procs; k++) {
      const count = Math.min(perChild, watchers - k * perChild)
      if (count <= 0) break
      const job: ChildJob = {
        kind,
        tls: PUSH_TLS,
        port: kind === 'push' && PUSH_TLS ? srv.tlsPort : srv.dnsPort,
        name,
        count,
        first: k * perChild,
        src: `127.0.1.${1 + k}`,
        account: acct,
      }
      const kid = fork(process.argv[1]!, [], {
        env: { ...process.env, NOTIFY_BENCH_CHILD: JSON.stringify(job), NOTIFY_BENCH_REEXEC: '1' },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      })
      kids.push(kid)
      if (PIN) pin(kid.pid!, CLIENT_CPU)
      // One child's set-up at a time: the server's accept queue and socket buffer are the bottleneck of the set-up.
      await new Promise<void>((resolve, reject) => {
        kid.on('message', (m: ChildMessage) => {
          if (m.kind === 'ready') resolve()
          else if (m.kind === 'arrived') arrived[k] = m.n
          else if (m.kind === 'report') reports.push(m.arrivals)
        })
        kid.once('exit', (code) => reject(new Error(`child ${k} exited with ${code}`)))
      })
    }
    if (PIN) pin(srv.proc!.pid!, SERVER_CPU)
    const rounds: string[] = []
    const before = procStats(srv.proc!.pid!)
    for (let round = 0; round < ROUNDS; round++) {
      arrived.fill(0)
      for (const kid of kids) kid.send({ arm: round })
      // Round 0 finds the server's fan-out code cold (never run); later rounds find it compiled, as in a server
      // that has been running. 1.5 s apart: the LLQ acknowledgements (500 ms after an event) are in first.
      await sleep(1500)
      const sent = performance.timeOrigin + performance.now()
      const committed =
        performance.timeOrigin +
        (await signedUpdate(srv.dnsPort, tsigKey(acct), name, `fd00::${(round + 1).toString(16)}`))
      const total = (): number => arrived.reduce((a, b) => a + b, 0)
      for (let t = 0; t < 2400 && total() < watchers; t++) await sleep(25)
      rounds.push(`${committed}|${sent}`)
    }
    const cpu = procStats(srv.proc!.pid!).cpuSec - before.cpuSec
    const done = kids.map((kid) => new Promise<void>((r) => kid.once('exit', () => r())))
    for (const kid of kids) kid.send('report')
    await Promise.all(done)
    await sleep(300) // the server's log line is written when its last octet left
    const fans = [
      ...srv.stderr.matchAll(
        /"delivered":(\d+),"ms":([\d.]+)(?:,"cpuMs":([\d.]+))?(?:,"sysMs":([\d.]+))?(?:,"flushedMs":([\d.]+))?/g,
      ),
    ]
    const transport = kind === 'push' ? (PUSH_TLS ? 'TLS' : 'plain TCP') : 'UDP, TSIG-signed events'
    const lines = rounds.map((r, round) => {
      const [committed, sent] = r.split('|').map(Number) as [number, number]
      const arrivals = reports.flatMap((k) => k[round] ?? []).sort((a, b) => a - b)
      const fan = fans[round]
      const last = arrivals.at(-1)
      return (
        `${kind.padEnd(4)} fan-out to ${watchers} watchers of one name (${transport}; ${kids.length} client processes` +
        `${PIN ? `, server on CPU ${SERVER_CPU}, clients on CPU ${CLIENT_CPU}` : ''}), round ${round} (${round === 0 ? 'cold' : 'warm'}): ` +
        (fan
          ? `SERVER commit -> last message written ${Number(fan[2]).toFixed(1)} ms` +
            `${fan[3] !== undefined ? ` (CPU ${Number(fan[3]).toFixed(1)} ms${fan[4] !== undefined ? `, of it in the kernel ${Number(fan[4]).toFixed(1)} ms` : ''})` : ''}, ` +
            `-> all ${fan[1]} messages out of the process ${fan[5] !== undefined ? `${Number(fan[5]).toFixed(1)} ms` : 'n/a'}; `
          : 'SERVER: no notify.fanout line; ') +
        (last === undefined
          ? 'CLIENTS: none received'
          : `CLIENTS: ${arrivals.length} received, last ${(last - committed).toFixed(1)} ms after the UPDATE answer ` +
            `(median ${(arrivals[arrivals.length >> 1]! - committed).toFixed(1)} ms; answer ${(committed - sent).toFixed(1)} ms after the send)`)
      )
    })
    lines.push(
      `${kind.padEnd(4)} ${ROUNDS} rounds: server CPU ${(cpu * 1000).toFixed(0)} ms in all (incl. the acks), RSS ${before.rssMiB.toFixed(0)} MiB`,
    )
    return lines.join('\n')
  } finally {
    for (const kid of kids) kid.kill('SIGKILL')
    // SIGTERM first: a server run with --cpu-prof (AUTOTUNNEL_SERVER_NODE_ARGS, server-harness.ts) writes its
    // profile when it exits normally.
    await srv.stop().catch(() => {})
    await srv.cleanup()
  }
}

interface ChildJob {
  readonly kind: 'push' | 'llq'
  readonly tls: boolean
  readonly port: number
  readonly name: string
  readonly count: number
  /** Index of this child's first watcher over all children (distinct authentication message IDs). */
  readonly first: number
  readonly src: string
  readonly account: AccountJson
}
type ChildMessage =
  | { readonly kind: 'ready' }
  | { readonly kind: 'arrived'; readonly n: number }
  | { readonly kind: 'report'; readonly arrivals: number[][] }

/** Push watchers of a child: one authenticated DSO session per watcher, subscribed to `job.name`. */
async function pushWatchers(job: ChildJob, onArrival: (i: number) => void): Promise<DnsStream[]> {
  const key = tsigKey(job.account)
  const streams: DnsStream[] = []
  let ok = 0
  for (let si = 0; si < job.count; si++) {
    const s = await DnsStream.connect(
      job.tls
        ? { host: '127.0.0.1', port: job.port, localAddress: job.src, tls: { rejectUnauthorized: false } }
        : { host: '127.0.0.1', port: job.port, localAddress: job.src },
      30_000,
    )
    s.onMessage((b) => {
      if (((b[2]! >> 3) & 0xf) !== Opcode.DSO) return
      // Time first; the only DSO unidirectional (QR 0) the server sends after the SUBSCRIBE answer is the PUSH.
      if ((b[2]! & 0x80) === 0) {
        onArrival(si)
        return
      }
      const m = decodeDso(b)
      if (m.rcode === 0 && m.id === 2) ok++
    })
    // A distinct ID per connection: the same signed bytes twice are a replay and bind nothing (docs/security.md).
    const auth = emptyMessage({
      id: 1 + ((job.first + si) % 0xfffe),
      questions: [{ name: `bench.${ZONE}.`, type: RRType.SOA, class: RRClass.IN }],
    })
    s.send(signMessage(auth, key).wire)
    s.send(
      encodeDso({ id: 2, qr: false, rcode: 0, tlvs: [subscribeTlv({ name: job.name, type: RRType.AAAA, class: 1 })] }),
    )
    streams.push(s)
  }
  for (let t = 0; t < 1200 && ok < job.count; t++) await sleep(50)
  if (ok !== job.count) throw new Error(`push fan-out: ${ok}/${job.count} subscribed`)
  return streams
}

/** A child of fanOutSpread: sets up its watchers, reports arrivals. */
async function fanOutChild(job: ChildJob): Promise<void> {
  const arrivals: number[][] = []
  let seen = new Uint8Array(job.count)
  let round = -1
  const onArrival = (i: number): void => {
    if (round < 0 || seen[i]) return
    seen[i] = 1
    arrivals[round]!.push(performance.timeOrigin + performance.now())
  }
  const handles: { close(): void }[] =
    job.kind === 'llq'
      ? await llqSetup(
          job.port,
          Array(job.count).fill(job.name),
          job.count,
          tsigKey(job.account),
          onArrival,
          () => job.src,
        )
      : await pushWatchers(job, onArrival)
  const send = (m: ChildMessage): void => void process.send!(m)
  const tick = setInterval(() => send({ kind: 'arrived', n: arrivals[round]?.length ?? 0 }), 50)
  process.on('message', (m) => {
    if (typeof m === 'object' && m !== null && 'arm' in m) {
      round = (m as { arm: number }).arm
      arrivals[round] = []
      seen = new Uint8Array(job.count)
    }
    if (m === 'report') {
      clearInterval(tick)
      for (const h of handles) h.close()
      process.send!({ kind: 'report', arrivals } satisfies ChildMessage, () => process.exit(0))
    }
  })
  send({ kind: 'ready' })
}

if (process.env.NOTIFY_BENCH_CHILD) {
  process.on('disconnect', () => process.exit(0))
  await fanOutChild(JSON.parse(process.env.NOTIFY_BENCH_CHILD) as ChildJob)
  await new Promise(() => {})
}

if (PIN) pin(process.pid, CLIENT_CPU)
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
if (only !== 'hold')
  console.log(
    'fan-out: SERVER = measured inside the server (its notify.fanout log line): from the change feed call after the ' +
      'COMMIT to the last message written, and to every octet out of the process (on loopback: in the watcher ' +
      "sockets); CPU = the server's CPU time for that pass. CLIENTS = watchers in separate client processes, each " +
      "socket stamped when its first octets reach the handler; includes the clients' own reading, an upper bound.",
  )
/** NOTIFY_FANOUT_KINDS=push (or llq): only those fan-outs. */
const kinds = (process.env.NOTIFY_FANOUT_KINDS ?? 'llq,push').split(',')
for (const [kind, n] of only === 'hold'
  ? []
  : (
      [
        ['llq', FANOUT_WATCHERS],
        ['push', FANOUT_WATCHERS],
      ] as const
    ).filter(([k]) => kinds.includes(k))) {
  const l = await fanOutSpread(kind, n)
  console.log(l)
  lines.push(l)
}
if (only !== 'hold') {
  const l = llqSigningCost(FANOUT_WATCHERS)
  console.log(l)
  lines.push(l)
}
