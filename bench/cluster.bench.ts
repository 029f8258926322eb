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
// BENCH_PARTS, BENCH_SETUPS, BENCH_WARMUP_SECONDS, BENCH_UPDATE_Q, BENCH_FAILOVER_REPS, BENCH_PG_STATS,
// BENCH_PG_SOCKET, BENCH_NODE_ARGS (see below).
import { execFile } from 'node:child_process'
import dgram from 'node:dgram'
import { rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DnsStream } from '../src/dns/client/stream.js'
import { DsoType, encodeDso, subscribeTlv } from '../src/dns/dso.js'
import { signMessage, type TsigKey } from '../src/dns/tsig.js'
import { Opcode } from '../src/dns/wire/header.js'
import { emptyMessage } from '../src/dns/wire/message.js'
import { RRClass, RRType } from '../src/dns/wire/rr-table.js'
import { tsigKey } from '../test/interop/notify-harness.js'
import { PgCluster } from '../test/interop/pg-cluster.js'
import { type AccountJson, ServerProcess, ZONE } from '../test/interop/server-harness.js'
import {
  type Cpu,
  cpuLine,
  cpuSec,
  machineBusySec,
  median,
  pgCpuByRole,
  pgCpuSec,
  pgProcCpu,
  pgStats,
  reapedChildrenCpuSec,
  statementsPerUpdate,
} from './cluster-accounting.js'
import { failoverBench } from './cluster-failover.js'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const WATCHERS = Number(process.env.BENCH_PUSH_WATCHERS ?? 1000)
/** Which parts to run (BENCH_PARTS=updates,queries,push,failover; default all). */
const PARTS = new Set((process.env.BENCH_PARTS ?? 'updates,queries,push,failover').split(','))
const FAILOVER_REPS = Number(process.env.BENCH_FAILOVER_REPS ?? 5)
/**
 * An unmeasured dnsperf run before each measured one (BENCH_WARMUP_SECONDS, default 3; 0 = none). Nodes 2 and 3
 * start for each three-node run: after a 1 s warm-up V8 was still compiling (a quarter of the nodes' CPU samples in
 * `perf` were TurboFan), after 3 s 7 %.
 */
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 3)
/**
 * BENCH_PG_STATS=1: PostgreSQL loads pg_stat_statements (PGOPTS for scripts/pg-cluster.sh) and the statements
 * the nodes ran are printed after the update runs (calls, rows, time): where the database's work goes.
 */
const PG_STATS = process.env.BENCH_PG_STATS === '1'
/** BENCH_SETUPS='sqlite x1+postgres x3': only these update set-ups, by their label (default all). */
const SETUPS = process.env.BENCH_SETUPS?.split('+')
/** BENCH_NODE_ARGS: options for node running each server (e.g. `--cpu-prof --cpu-prof-dir=DIR`; stopped cleanly). */
const NODE_ARGS = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []
/** BENCH_PG_SOCKET=1: the nodes reach PostgreSQL through its unix socket rather than TCP on 127.0.0.1. */
const PG_SOCKET = process.env.BENCH_PG_SOCKET === '1'
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
  const pgProcs0 = s.pg ? pgProcCpu(s.pg) : undefined
  const gen0 = reapedChildrenCpuSec()
  const self0 = cpuSec(process.pid)
  const m0 = machineBusySec()
  const t0 = performance.now()
  const rs = await Promise.all(targets.map((x, i) => dnsperf(x.ports.dns, args(i))))
  const wall = (performance.now() - t0) / 1000
  const perNode = s.nodes.map((x, i) => cpuSec(x.proc!.pid!) - c0[i]!)
  const nodes = perNode.reduce((a, b) => a + b, 0)
  const pg = s.pg ? pgCpuSec(s.pg) - pg0 : 0
  const rate = rs.reduce((a, r) => a + r.rate, 0)
  if (PG_STATS && s.pg && pgProcs0) console.log(await pgCpuByRole(s.pg, pgProcs0, pg, rate * SECONDS))
  const gen = reapedChildrenCpuSec() - gen0
  const self = cpuSec(process.pid) - self0
  const busy = machineBusySec() - m0
  return {
    rate,
    // Per second of the dnsperf runs (the rates are too); 'other' is the rest of the machine (other work, CI).
    cpu: nodes / SECONDS,
    perNode: perNode.map((c) => c / SECONDS),
    pg: pg / SECONDS,
    gen: gen / SECONDS,
    other: Math.max(0, busy - nodes - pg - gen - self) / wall,
    codes: rs.map((r) => r.codes),
  }
}

/** The URL of `pg` through its unix socket (same password and port). */
function socketUrl(pg: PgCluster): string {
  const u = new URL(pg.url)
  return `postgres://${u.username}:${u.password}@/postgres?host=${encodeURIComponent(join(pg.dir, 'sock'))}&port=${u.port}`
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
      s.nodeArgs = NODE_ARGS
      all.push(s)
      return s
    }
    const sqlite = mk()
    const pgUrl = PG_SOCKET ? socketUrl(pg) : pg.url
    const pgNodes = [mk(pgUrl), mk(pgUrl), mk(pgUrl)]
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
    ].filter((s) => !SETUPS || SETUPS.includes(s.label))
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
          if (PG_STATS && s.pg) console.log(await statementsPerUpdate(s.pg, res.rate * (SECONDS + WARMUP_SECONDS)))
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
      failover = await failoverBench(pg, pgKey, FAILOVER_REPS)
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
    if (ups.has('sqlite x1') && ups.has('postgres x3') && ups.has('postgres x1')) {
      const rate = (l: string): number => median(ups.get(l)!.map((r) => r.rate))
      const base = rate('sqlite x1')
      console.log(
        `  ratio updates/s postgres x3 : sqlite x1 = ${(rate('postgres x3') / base).toFixed(2)}; postgres x1 : sqlite x1 = ${(rate('postgres x1') / base).toFixed(2)}`,
      )
    }
    if (push) console.log(`  ${push}`)
    if (failover) console.log(`  ${failover}`)
  } finally {
    // A clean stop first: node writes its --cpu-prof profile on exit.
    if (NODE_ARGS.length) await Promise.all(all.map((s) => s.stop()))
    await Promise.all(all.map((s) => s.cleanup()))
    await pg.destroy()
    for (const f of files) rmSync(f, { force: true })
  }
}

main().catch((e) => {
  console.error(e)
  process.exitCode = 1
})
