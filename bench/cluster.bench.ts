// bench/cluster: the DNS service on one SQLite node, one PostgreSQL node and three PostgreSQL nodes sharing one
// throwaway PostgreSQL 15 (scripts/pg-cluster.sh, fsync on), in one run on this machine (the nodes, PostgreSQL
// and dnsperf share its cores):
// - durable TSIG-signed updates with an update lease per second (dnsperf -u -E 2:...), the same total load spread
//   over the nodes (and once all to node 1 of three, so the others only follow the feed), rounds alternating
//   between the set-ups, each after an unmeasured warm-up run; CPU per update of the nodes (each), PostgreSQL,
//   dnsperf and the rest of the machine;
// - queries per second (dnsperf, UDP), spread the same way;
// - cross-node notification: 1,000 DNS Push sessions watching one name on node B, 100 updates through node A, then
//   100 through B: time from each UPDATE answer to the first and the last watcher's PUSH, p50 and p99;
// - failover: SIGKILL of the node a watcher and an update client use, time to both recovered on another node.
// Env: BENCH_SECONDS (per run, default 5), BENCH_ROUNDS (default 3), BENCH_PUSH_WATCHERS (default 1000),
// BENCH_PARTS, BENCH_WARMUP_SECONDS, BENCH_UPDATE_Q, BENCH_FAILOVER_REPS, BENCH_PG_STATS (see below).
import { execFile } from 'node:child_process'
import dgram from 'node:dgram'
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DnsStream } from '../src/dns/client/stream.js'
import { UpdateClient } from '../src/dns/client/update.js'
import { Watcher } from '../src/dns/client/watcher.js'
import { DsoType, encodeDso, subscribeTlv } from '../src/dns/dso.js'
import { signMessage, type TsigKey } from '../src/dns/tsig.js'
import { Opcode } from '../src/dns/wire/header.js'
import { emptyMessage } from '../src/dns/wire/message.js'
import { RRClass, RRType } from '../src/dns/wire/rr-table.js'
import { SystemClock } from '../src/io/clock.js'
import { MemoryLogger } from '../src/io/log.js'
import { NotifyServer, tsigKey } from '../test/interop/notify-harness.js'
import { PgCluster } from '../test/interop/pg-cluster.js'
import { type AccountJson, ServerProcess, ZONE } from '../test/interop/server-harness.js'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const WATCHERS = Number(process.env.BENCH_PUSH_WATCHERS ?? 1000)
/** Which parts to run (BENCH_PARTS=updates,queries,push,failover; default all). */
const PARTS = new Set((process.env.BENCH_PARTS ?? 'updates,queries,push,failover').split(','))
const FAILOVER_REPS = Number(process.env.BENCH_FAILOVER_REPS ?? 5)
/** An unmeasured dnsperf run before each measured one (BENCH_WARMUP_SECONDS, default 1; 0 = none). */
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 1)
/**
 * BENCH_PG_STATS=1: PostgreSQL loads pg_stat_statements (PGOPTS for scripts/pg-cluster.sh) and the statements
 * the nodes ran are printed after the update runs (calls, rows, time): where the database's work goes.
 */
const PG_STATS = process.env.BENCH_PG_STATS === '1'
if (PG_STATS)
  process.env.PGOPTS = `${process.env.PGOPTS ?? ''} -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all`
const LEASE_OPT = '2:00000e10' // RFC 9664 LEASE = 3600 s
/** Outstanding updates in all, whatever the number of nodes (dnsperf -q), and client threads (-c). */
const UPDATE_Q = Number(process.env.BENCH_UPDATE_Q ?? 60)
const QUERY_Q = 200
const EXTRA = [
  '--log-level',
  'warn',
  '--max-records',
  '100000000',
  '--push-plain-tcp',
  '--max-connections',
  '5000',
  '--max-connections-per-source',
  '5000',
  '--watch-limit-client',
  '100000',
  '--watch-limit-user',
  '100000',
]

/** The first TLV of a DSO message follows the 12-octet DNS header (RFC 8490 5.4). */
const DSO_TLV_OFFSET = 12
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

function sh(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (_e, stdout, stderr) =>
      resolve(`${stdout}${stderr}`),
    )
  })
}

/** /proc/PID/stat after the command name: [0] state, [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime. */
function statOf(pid: number | 'self'): string[] {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return f.slice(f.lastIndexOf(')') + 2).split(' ')
}

function cpuSec(pid: number): number {
  const rest = statOf(pid)
  return (Number(rest[11]) + Number(rest[12])) / 100
}

/** CPU seconds of the PostgreSQL cluster: the postmaster and every process it forked (backends, WAL writer...), live or reaped. */
function pgCpuSec(pg: PgCluster): number {
  const master = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0])
  // With the children it reaped (autovacuum workers, backends of closed connections come and go).
  const st = statOf(master)
  let sum = (Number(st[11]) + Number(st[12]) + Number(st[13]) + Number(st[14])) / 100
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const st = statOf(Number(d))
      if (Number(st[1]) === master) sum += (Number(st[11]) + Number(st[12])) / 100
    } catch {
      // Exited meanwhile.
    }
  }
  return sum
}

/** CPU seconds of this process's children that exited and were waited for (the dnsperf runs). */
function reapedChildrenCpuSec(): number {
  const st = statOf('self')
  return (Number(st[13]) + Number(st[14])) / 100
}

/** Busy CPU seconds of the whole machine (all cores; everything but idle and iowait). */
function machineBusySec(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const hz = 100
  return (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) / hz
}

async function dnsperf(port: number, args: string[], seconds = SECONDS): Promise<{ rate: number; codes: string }> {
  const out = await sh(
    'dnsperf',
    ['-s', '127.0.0.1', '-p', String(port), '-l', String(seconds), ...args],
    (seconds + 30) * 1000,
  )
  const m = /(Queries|Updates) per second:\s+([\d.]+)/.exec(out)
  if (!m) throw new Error(`dnsperf failed: ${out}`)
  return { rate: Number(m[2]), codes: /Response codes:\s+(.*)/.exec(out)?.[1] ?? '' }
}

interface Setup {
  readonly label: string
  readonly nodes: ServerProcess[]
  readonly key: AccountJson
  readonly pg?: PgCluster
  /** dnsperf loads only the first `loaded` nodes (the others only follow the feed); default all. */
  readonly loaded?: number
}

/** CPU cores used during one measurement, by part: the nodes, PostgreSQL, dnsperf, and everything else. */
interface Cpu {
  cpu: number
  /** Each node's cores (node 1 first). */
  perNode?: number[]
  pg: number
  gen: number
  other: number
}

/** Runs one dnsperf per node at once, the load split evenly; returns the summed rate and the nodes' CPU. */
async function spread(
  s: Setup,
  file: (i: number) => string,
  extra: string[],
  q: number,
): Promise<{ rate: number; codes: string[] } & Cpu> {
  const n = s.loaded ?? s.nodes.length
  const targets = s.nodes.slice(0, n)
  // Files i >= n: the warm-up adds other names than the measured run.
  const args = (i: number): string[] => [
    '-d',
    file(i),
    '-c',
    String(Math.max(1, Math.round(6 / n))),
    '-q',
    String(Math.round(q / n)),
    '-t',
    '2',
    ...extra,
  ]
  // Unmeasured: nodes started for this run have cold code (V8 compiles and optimizes it in the first second).
  if (WARMUP_SECONDS > 0) await Promise.all(targets.map((x, i) => dnsperf(x.ports.dns, args(i + n), WARMUP_SECONDS)))
  const c0 = s.nodes.map((x) => cpuSec(x.proc!.pid!))
  const pg0 = s.pg ? pgCpuSec(s.pg) : 0
  const gen0 = reapedChildrenCpuSec()
  const self0 = cpuSec(process.pid)
  const m0 = machineBusySec()
  const t0 = performance.now()
  const rs = await Promise.all(targets.map((x, i) => dnsperf(x.ports.dns, args(i))))
  const wall = (performance.now() - t0) / 1000
  const perNode = s.nodes.map((x, i) => cpuSec(x.proc!.pid!) - c0[i]!)
  const nodes = perNode.reduce((a, b) => a + b, 0)
  const pg = s.pg ? pgCpuSec(s.pg) - pg0 : 0
  const gen = reapedChildrenCpuSec() - gen0
  const self = cpuSec(process.pid) - self0
  const busy = machineBusySec() - m0
  return {
    rate: rs.reduce((a, r) => a + r.rate, 0),
    // Per second of the dnsperf runs (the rates are too); 'other' is the rest of the machine (other work, CI).
    cpu: nodes / SECONDS,
    perNode: perNode.map((c) => c / SECONDS),
    pg: pg / SECONDS,
    gen: gen / SECONDS,
    other: Math.max(0, busy - nodes - pg - gen - self) / wall,
    codes: rs.map((r) => r.codes),
  }
}

/** Cores (CPU seconds per second) and CPU microseconds per operation, by part. */
function cpuLine(c: Cpu & { rate: number }): string {
  const us = (x: number): string => ((x * 1e6) / c.rate).toFixed(0)
  return (
    `cores: nodes ${c.cpu.toFixed(2)} pg ${c.pg.toFixed(2)} dnsperf ${c.gen.toFixed(2)} other ${c.other.toFixed(2)}; ` +
    `us/op: nodes ${us(c.cpu)} pg ${us(c.pg)} dnsperf ${us(c.gen)}` +
    (c.perNode && c.perNode.length > 1 ? ` (per node ${c.perNode.map(us).join('/')})` : '')
  )
}

function updateFile(path: string, tag: string, n: number): string {
  const out: string[] = []
  for (let i = 0; i < n; i++)
    out.push(ZONE, `add ${tag}u${i}.bench 300 A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 'send')
  writeFileSync(path, `${out.join('\n')}\n`)
  return path
}

async function signedUpdate(port: number, key: TsigKey, name: string, addr: string, id: number): Promise<number> {
  const m = emptyMessage({
    id,
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

/**
 * 1,000 Push sessions on node B watching one name; 100 updates through node A (cross-node), then 100 through B
 * itself (the same fan-out without the feed): UPDATE answer -> first and last watcher's PUSH. The watchers count
 * PUSH messages from their header and first TLV type (RFC 8490 5.4) rather than decoding them: the bench's own
 * receive work is part of what it measures, so it is kept small.
 */
async function crossNodePush(a: ServerProcess, b: ServerProcess, acct: AccountJson): Promise<string> {
  const key = tsigKey(acct)
  const name = `fan.bench.${ZONE}.`
  let ok = 0
  let got = 0
  let firstAt = 0
  let lastAt = 0
  const streams: DnsStream[] = []
  for (let si = 0; si < WATCHERS; si++) {
    const s = await DnsStream.connect({ host: '127.0.0.1', port: b.ports.dns }, 30_000)
    s.onMessage((buf) => {
      if (buf.length < DSO_TLV_OFFSET || (buf[2]! & 0x78) >> 3 !== Opcode.DSO) return
      if (buf[2]! & 0x80) {
        if (buf.readUInt16BE(0) === 2 && (buf[3]! & 0xf) === 0) ok++
      } else if (buf.length >= DSO_TLV_OFFSET + 2 && buf.readUInt16BE(DSO_TLV_OFFSET) === DsoType.PUSH) {
        const now = performance.now()
        if (got === 0) firstAt = now
        if (++got === WATCHERS) lastAt = now
      }
    })
    const auth = emptyMessage({
      id: 1 + (si % 0xfffe),
      questions: [{ name: `bench.${ZONE}.`, type: RRType.SOA, class: RRClass.IN }],
    })
    s.send(signMessage(auth, key).wire)
    s.send(encodeDso({ id: 2, qr: false, rcode: 0, tlvs: [subscribeTlv({ name, type: RRType.AAAA, class: 1 })] }))
    streams.push(s)
  }
  for (let t = 0; t < 1200 && ok < WATCHERS; t++) await sleep(25)
  if (ok !== WATCHERS) throw new Error(`push: ${ok}/${WATCHERS} subscribed`)
  const run = async (via: ServerProcess, base: number) => {
    const first: number[] = []
    const last: number[] = []
    let lost = 0
    for (let u = 0; u < 100; u++) {
      got = 0
      lastAt = 0
      const answered = await signedUpdate(via.ports.dns, key, name, `fd00::${(base + u).toString(16)}`, base + u)
      const t0 = performance.now()
      while (got < WATCHERS && performance.now() - t0 < 5000) await sleep(2)
      if (got < WATCHERS) {
        lost++
        continue
      }
      // A PUSH read before the UPDATE answer (same node: the fan-out may start first) counts as 0.
      first.push(Math.max(0, firstAt - answered))
      last.push(Math.max(0, lastAt - answered))
      await sleep(20)
    }
    const f = (xs: number[]): string => `p50 ${pct(xs, 50).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms`
    return (
      `last watcher ${f(last)}, max ${Math.max(...last).toFixed(1)} ms; first watcher ${f(first)}` +
      (lost ? ` (${lost} updates not seen by every watcher within 5 s)` : '')
    )
  }
  try {
    const cross = await run(a, 0x100)
    const same = await run(b, 0x200)
    return (
      `Push, ${WATCHERS} watchers on node B, UPDATE answer -> PUSH read:\n` +
      `    100 updates through node A (cross-node): ${cross}\n` +
      `    100 updates through node B (same node):  ${same}`
    )
  } finally {
    for (const s of streams) s.close()
  }
}

/**
 * Failover: three nodes (TLS, each advertising its own name); an agent's watcher (DNS Push) and update client (DNS
 * over TLS, the agent's default) both use node V (their bootstrap, first in V's SRV answers); V is SIGKILLed. As the agent does (src/agent/attach.ts),
 * the watcher's onLost re-publishes through the update client. Measured from the SIGKILL: the watch re-established
 * through another node, the records refreshed (an UPDATE with its lease accepted by another node), and the later of
 * the two. V is restarted between repetitions, and each repetition kills another node.
 */
async function failoverBench(pg: PgCluster, acct: AccountJson): Promise<string> {
  const nodes = [1, 2, 3].map(
    (i) => new NotifyServer(['--log-level', 'warn', '--advertise', `ns${i}:127.0.0.1`]),
  ) as NotifyServer[]
  const watchMs: number[] = []
  const publishMs: number[] = []
  const bothMs: number[] = []
  try {
    for (const n of nodes) n.store = pg.url
    await Promise.all(nodes.map((n) => n.start()))
    const key = tsigKey(acct)
    const domain = `bench.${ZONE}`
    const srvPorts = async (n: NotifyServer): Promise<string> =>
      (await n.dig(['+short', `_dns-update._udp.${domain}.`, 'SRV'])).stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[2])
        .sort()
        .join(',')
    const allPorts = nodes
      .map((n) => String(n.dnsPort))
      .sort()
      .join(',')
    const everyNodeListed = async (): Promise<void> => {
      for (let t = 0; t < 300; t++) {
        const seen = await Promise.all(nodes.map(srvPorts))
        if (seen.every((x) => x === allPorts)) return
        await sleep(50)
      }
      throw new Error(
        `failover: the nodes do not all list each other (${allPorts}: ${await Promise.all(nodes.map(srvPorts))})`,
      )
    }
    for (let rep = 0; rep < FAILOVER_REPS; rep++) {
      await everyNodeListed()
      const victim = nodes[rep % nodes.length]!
      const name = `fo${rep}-${process.pid}.${domain}.`
      const log = new MemoryLogger()
      const w = new Watcher(
        { log },
        {
          name,
          type: RRType.AAAA,
          domain,
          server: { host: '127.0.0.1', port: victim.dnsPort },
          key,
          tls: { rejectUnauthorized: false },
          mechanisms: ['push'],
        },
      )
      const uc = new UpdateClient(
        { clock: new SystemClock(), log },
        // TLS, as the agent by default (each node has its own self-signed certificate here: not pinned).
        { bootstrap: { host: '127.0.0.1', port: victim.dnsPort }, domain, key, tls: { insecure: true } },
      )
      const viaVictim = (via: string): boolean =>
        via.endsWith(`:${victim.dnsPort}`) || via.endsWith(`:${victim.tlsPort}`)
      const publish = (addr: string) =>
        uc.update({
          zone: ZONE,
          updates: [{ name, type: RRType.AAAA, class: RRClass.IN, ttl: 60, data: { address: addr } }],
          leaseSec: 3600,
        })
      try {
        const first = await publish('fd00::1')
        if (!viaVictim(first.via)) throw new Error(`failover: published via ${first.via}`)
        if ((await w.start()) !== 'push') throw new Error('failover: no Push watch')
        const pushes = () =>
          log.entries.filter((e) => e.event === 'watch.mechanism' && e.fields.mechanism === 'push').length
        let killedAt = 0
        let published = 0
        let publishing = false
        // The agent: when a watch is lost, re-publish now (it retries until an UPDATE is accepted).
        w.onLost(() => {
          if (publishing || published) return
          publishing = true
          void (async () => {
            for (let i = 0; i < 20 && !published; i++) {
              try {
                const r = await publish('fd00::1')
                if (!viaVictim(r.via)) published = performance.now()
              } catch {
                // The dead node's timeout; the client skips it from now on.
              }
            }
          })()
        })
        await victim.stop('SIGKILL')
        killedAt = performance.now()
        let watched = 0
        while ((!watched || !published) && performance.now() - killedAt < 15_000) {
          if (!watched && pushes() >= 2) watched = performance.now()
          await sleep(5)
        }
        if (!watched || !published) throw new Error(`failover: rep ${rep} not recovered within 15 s`)
        watchMs.push(watched - killedAt)
        publishMs.push(published - killedAt)
        bothMs.push(Math.max(watched, published) - killedAt)
        console.log(
          `  failover rep=${rep + 1} killed node ${nodes.indexOf(victim) + 1}: watch re-established ${(watched - killedAt).toFixed(0)} ms, ` +
            `records refreshed ${(published - killedAt).toFixed(0)} ms`,
        )
      } finally {
        await w.close()
      }
      await victim.start()
    }
  } finally {
    await Promise.all(nodes.map((n) => n.cleanup()))
  }
  const f = (xs: number[]): string => `p50 ${median(xs).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`
  return (
    `failover (${FAILOVER_REPS} SIGKILLs of the node a watcher and an update client use): watch re-established ` +
    `${f(watchMs)}; records refreshed through another node ${f(publishMs)}; both ${f(bothMs)}`
  )
}

/** The statements of the nodes' main kinds since the last reset (warm-up included), per update at `rate`. */
async function statementsPerUpdate(pg: PgCluster, rate: number): Promise<string> {
  const rows = await pg.query<{ calls: string; ms: string; query: string }>(
    `SELECT calls::text, total_exec_time::text AS ms, query FROM pg_stat_statements`,
  )
  const kinds: [string, RegExp][] = [
    ['commit', /^\s*WITH d AS/],
    ['feed', /WITH f AS|FROM autotunnel\.change\s+WHERE \(xid, id\)/],
    ['rrsets', /FROM autotunnel\.rr WHERE \(name, type\) IN/],
    ['notify', /pg_notify/],
  ]
  const updates = rate * (SECONDS + WARMUP_SECONDS)
  const out = kinds.map(([label, re]) => {
    const hit = rows.filter((r) => re.test(r.query))
    const calls = hit.reduce((a, r) => a + Number(r.calls), 0)
    const ms = hit.reduce((a, r) => a + Number(r.ms), 0)
    return `${label} ${calls} (${(updates / Math.max(1, calls)).toFixed(1)} updates each, ${((ms * 1000) / Math.max(1, calls)).toFixed(0)} us)`
  })
  return `    statements (about ${updates.toFixed(0)} updates): ${out.join('; ')}`
}

async function pgStats(pg: PgCluster): Promise<void> {
  const rows = await pg.query<{ calls: string; rows: string; ms: string; query: string }>(
    `SELECT calls::text, rows::text, round(total_exec_time)::text AS ms, regexp_replace(query, '\\s+', ' ', 'g') AS query
     FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`,
  )
  console.log('  pg_stat_statements (all set-ups), by total time:')
  for (const r of rows) console.log(`    calls=${r.calls} rows=${r.rows} ms=${r.ms} ${r.query.slice(0, 110)}`)
}

async function main(): Promise<void> {
  const pg = await PgCluster.start()
  if (PG_STATS) await pg.query('CREATE EXTENSION pg_stat_statements')
  const all: ServerProcess[] = []
  const dir = tmpdir()
  const files: string[] = []
  try {
    const mk = (store?: string): ServerProcess => {
      const s = new ServerProcess()
      s.store = store
      all.push(s)
      return s
    }
    const sqlite = mk()
    const pgNodes = [mk(pg.url), mk(pg.url), mk(pg.url)]
    const sqlKey = await sqlite.addAccount('bench')
    const pgKey = await pgNodes[0]!.addAccount('bench')
    await sqlite.start(EXTRA, { tls: false })
    await pgNodes[0]!.start(EXTRA, { tls: false })
    const setups: Setup[] = [
      { label: 'sqlite x1', nodes: [sqlite], key: sqlKey },
      { label: 'postgres x1', nodes: [pgNodes[0]!], key: pgKey, pg },
      { label: 'postgres x3', nodes: pgNodes, key: pgKey, pg },
      // Only node 1 takes updates: nodes 2 and 3 spend what following the feed costs (the brief's question).
      { label: 'postgres x3, updates to node 1', nodes: pgNodes, key: pgKey, pg, loaded: 1 },
    ]
    // Nodes 2 and 3 run only for the three-node set-up (they would otherwise follow the feed during 'postgres x1').
    const others = pgNodes.slice(1)
    console.log(
      `cluster bench: ${ROUNDS} rounds x ${SECONDS} s; PostgreSQL 15 (fsync on, synchronous_commit on) on loopback; ` +
        `updates: TSIG hmac-sha256 + update lease, ${UPDATE_Q} outstanding in all; queries: ${QUERY_Q} outstanding; ` +
        `parts: ${[...PARTS].join(',')}`,
    )
    const ups = new Map<string, (Cpu & { rate: number })[]>()
    if (PARTS.has('updates'))
      for (let r = 1; r <= ROUNDS; r++)
        for (const s of setups) {
          const k = `hmac-sha256:${s.key.keyName}:${s.key.secret}`
          const f = (i: number): string => {
            const p = join(dir, `cluster-bench-${process.pid}-${r}-${s.label.replace(/\W/g, '')}-${i}.txt`)
            files.push(p)
            return updateFile(p, `r${r}${s.label.replace(/\W/g, '')}n${i}`, 100_000)
          }
          if (s.nodes.length > 1) await Promise.all(others.map((n) => n.start(EXTRA, { tls: false })))
          if (PG_STATS && s.pg) await s.pg.query('SELECT pg_stat_statements_reset()')
          const res = await spread(s, f, ['-u', '-y', k, '-E', LEASE_OPT], UPDATE_Q)
          if (PG_STATS && s.pg) console.log(await statementsPerUpdate(s.pg, res.rate))
          if (s.nodes.length > 1) await Promise.all(others.map((n) => n.stop()))
          ups.set(s.label, [...(ups.get(s.label) ?? []), res])
          console.log(
            `  updates round=${r} ${s.label.padEnd(12)} ups=${res.rate.toFixed(0)} ${cpuLine(res)} [${res.codes.join(' | ')}]`,
          )
        }
    const qps = new Map<string, (Cpu & { rate: number })[]>()
    if (PARTS.has('queries')) {
      const qfile = join(dir, `cluster-bench-${process.pid}-queries.txt`)
      files.push(qfile)
      writeFileSync(qfile, `${ZONE} SOA\nns.${ZONE} A\n${ZONE} NS\n`)
      await Promise.all(others.map((n) => n.start(EXTRA, { tls: false })))
      for (let r = 1; r <= ROUNDS; r++)
        for (const s of setups) {
          if (s.loaded) continue
          const res = await spread(s, () => qfile, [], QUERY_Q)
          qps.set(s.label, [...(qps.get(s.label) ?? []), res])
          console.log(`  queries round=${r} ${s.label.padEnd(12)} qps=${res.rate.toFixed(0)} ${cpuLine(res)}`)
        }
      await Promise.all(others.map((n) => n.stop()))
    }
    let push = ''
    if (PARTS.has('push')) {
      await Promise.all(others.map((n) => n.start(EXTRA, { tls: false })))
      push = await crossNodePush(pgNodes[0]!, pgNodes[1]!, pgKey)
      await Promise.all(others.map((n) => n.stop()))
    }
    if (PG_STATS) await pgStats(pg)
    let failover = ''
    if (PARTS.has('failover')) {
      // Its own three nodes (TLS, advertised names): the others would be listed in the SRV answers too.
      await Promise.all(all.map((n) => n.stop()))
      failover = await failoverBench(pg, pgKey)
    }
    console.log('\nmedians')
    const med = (rs: (Cpu & { rate: number })[]): string => {
      const m: Cpu & { rate: number } = {
        rate: median(rs.map((r) => r.rate)),
        cpu: median(rs.map((r) => r.cpu)),
        pg: median(rs.map((r) => r.pg)),
        gen: median(rs.map((r) => r.gen)),
        other: median(rs.map((r) => r.other)),
      }
      return `${m.rate.toFixed(0).padStart(6)}  ${cpuLine(m)}`
    }
    for (const [label, rs] of ups) console.log(`  durable signed updates with lease/s  ${label.padEnd(12)} ${med(rs)}`)
    for (const [label, rs] of qps) console.log(`  queries/s                            ${label.padEnd(12)} ${med(rs)}`)
    if (ups.size) {
      const rate = (l: string): number => median(ups.get(l)!.map((r) => r.rate))
      const base = rate('sqlite x1')
      console.log(
        `  ratio updates/s postgres x3 : sqlite x1 = ${(rate('postgres x3') / base).toFixed(2)}; postgres x1 : sqlite x1 = ${(rate('postgres x1') / base).toFixed(2)}`,
      )
    }
    if (push) console.log(`  ${push}`)
    if (failover) console.log(`  ${failover}`)
  } finally {
    await Promise.all(all.map((s) => s.cleanup()))
    await pg.destroy()
    for (const f of files) rmSync(f, { force: true })
  }
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
