// bench/cluster: the DNS service on one SQLite node, one PostgreSQL node and three PostgreSQL nodes sharing one
// throwaway PostgreSQL 15 (scripts/pg-cluster.sh, fsync on), in one run on this machine (the nodes, PostgreSQL
// and dnsperf share its cores):
// - durable TSIG-signed updates with an update lease per second (dnsperf -u -E 2:...), the same total load spread
//   over the nodes, rounds alternating between the set-ups;
// - queries per second (dnsperf, UDP), spread the same way;
// - cross-node notification: 1,000 DNS Push sessions watching one name on node B, 100 updates through node A:
//   time from each UPDATE answer to the last watcher's PUSH, p50 and p99.
// Env: BENCH_SECONDS (per run, default 5), BENCH_ROUNDS (default 3), BENCH_PUSH_WATCHERS (default 1000).
import { execFile } from 'node:child_process'
import dgram from 'node:dgram'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DnsStream } from '../src/dns/client/stream.js'
import { DsoType, decodeDso, encodeDso, subscribeTlv } from '../src/dns/dso.js'
import { signMessage, type TsigKey } from '../src/dns/tsig.js'
import { Opcode } from '../src/dns/wire/header.js'
import { emptyMessage } from '../src/dns/wire/message.js'
import { RRClass, RRType } from '../src/dns/wire/rr-table.js'
import { tsigKey } from '../test/interop/notify-harness.js'
import { PgCluster } from '../test/interop/pg-cluster.js'
import { type AccountJson, ServerProcess, ZONE } from '../test/interop/server-harness.js'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const WATCHERS = Number(process.env.BENCH_PUSH_WATCHERS ?? 1000)
const LEASE_OPT = '2:00000e10' // RFC 9664 LEASE = 3600 s
/** Outstanding updates in all, whatever the number of nodes (dnsperf -q), and client threads (-c). */
const UPDATE_Q = 60
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

function cpuSec(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return (Number(rest[11]) + Number(rest[12])) / 100
}

async function dnsperf(port: number, args: string[]): Promise<{ rate: number; codes: string }> {
  const out = await sh(
    'dnsperf',
    ['-s', '127.0.0.1', '-p', String(port), '-l', String(SECONDS), ...args],
    (SECONDS + 30) * 1000,
  )
  const m = /(Queries|Updates) per second:\s+([\d.]+)/.exec(out)
  if (!m) throw new Error(`dnsperf failed: ${out}`)
  return { rate: Number(m[2]), codes: /Response codes:\s+(.*)/.exec(out)?.[1] ?? '' }
}

interface Setup {
  readonly label: string
  readonly nodes: ServerProcess[]
  readonly key: AccountJson
}

/** Runs one dnsperf per node at once, the load split evenly; returns the summed rate and the nodes' CPU. */
async function spread(
  s: Setup,
  file: (i: number) => string,
  extra: string[],
  q: number,
): Promise<{ rate: number; cpu: number; codes: string[] }> {
  const n = s.nodes.length
  const c0 = s.nodes.map((x) => cpuSec(x.proc!.pid!))
  const rs = await Promise.all(
    s.nodes.map((x, i) =>
      dnsperf(x.ports.dns, [
        '-d',
        file(i),
        '-c',
        String(Math.max(1, Math.round(6 / n))),
        '-q',
        String(Math.round(q / n)),
        '-t',
        '2',
        ...extra,
      ]),
    ),
  )
  const cpu = s.nodes.reduce((sum, x, i) => sum + cpuSec(x.proc!.pid!) - c0[i]!, 0) / SECONDS
  return { rate: rs.reduce((a, r) => a + r.rate, 0), cpu, codes: rs.map((r) => r.codes) }
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

/** 1,000 Push sessions on node B watching one name; 100 updates through node A; answer -> last PUSH. */
async function crossNodePush(a: ServerProcess, b: ServerProcess, acct: AccountJson): Promise<string> {
  const key = tsigKey(acct)
  const name = `fan.bench.${ZONE}.`
  let ok = 0
  let got = 0
  const streams: DnsStream[] = []
  for (let si = 0; si < WATCHERS; si++) {
    const s = await DnsStream.connect({ host: '127.0.0.1', port: b.ports.dns }, 30_000)
    s.onMessage((buf) => {
      if ((buf[2]! & 0x78) >> 3 !== Opcode.DSO) return
      const m = decodeDso(buf)
      if (m.qr && m.rcode === 0 && m.id === 2) ok++
      if (!m.qr && m.tlvs[0]?.type === DsoType.PUSH) got++
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
  const lat: number[] = []
  let lost = 0
  try {
    for (let u = 0; u < 100; u++) {
      got = 0
      const answered = await signedUpdate(a.ports.dns, key, name, `fd00::${(u + 1).toString(16)}`, 100 + u)
      const t0 = performance.now()
      while (got < WATCHERS && performance.now() - t0 < 5000) await sleep(1)
      if (got < WATCHERS) lost++
      lat.push(performance.now() - answered)
      await sleep(20)
    }
  } finally {
    for (const s of streams) s.close()
  }
  return (
    `cross-node Push: ${WATCHERS} watchers on node B, 100 updates through node A: UPDATE answer -> last watcher ` +
    `p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms` +
    (lost ? ` (${lost} updates not seen by every watcher within 5 s)` : '')
  )
}

async function main(): Promise<void> {
  const pg = await PgCluster.start()
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
      { label: 'postgres x1', nodes: [pgNodes[0]!], key: pgKey },
      { label: 'postgres x3', nodes: pgNodes, key: pgKey },
    ]
    // Nodes 2 and 3 run only for the three-node set-up (they would otherwise follow the feed during 'postgres x1').
    const others = pgNodes.slice(1)
    console.log(
      `cluster bench: ${ROUNDS} rounds x ${SECONDS} s; PostgreSQL 15 (fsync on, synchronous_commit on) on loopback; ` +
        `updates: TSIG hmac-sha256 + update lease, ${UPDATE_Q} outstanding in all; queries: ${QUERY_Q} outstanding`,
    )
    const ups = new Map<string, { rate: number[]; cpu: number[] }>()
    for (let r = 1; r <= ROUNDS; r++)
      for (const s of setups) {
        const k = `hmac-sha256:${s.key.keyName}:${s.key.secret}`
        const f = (i: number): string => {
          const p = join(dir, `cluster-bench-${process.pid}-${r}-${s.label.replace(/\W/g, '')}-${i}.txt`)
          files.push(p)
          return updateFile(p, `r${r}${s.label.replace(/\W/g, '')}n${i}`, 100_000)
        }
        if (s.nodes.length > 1) await Promise.all(others.map((n) => n.start(EXTRA, { tls: false })))
        const res = await spread(s, f, ['-u', '-y', k, '-E', LEASE_OPT], UPDATE_Q)
        if (s.nodes.length > 1) await Promise.all(others.map((n) => n.stop()))
        const e = ups.get(s.label) ?? { rate: [], cpu: [] }
        e.rate.push(res.rate)
        e.cpu.push(res.cpu)
        ups.set(s.label, e)
        console.log(
          `  updates round=${r} ${s.label.padEnd(12)} ups=${res.rate.toFixed(0)} nodes_cpu_cores=${res.cpu.toFixed(2)} [${res.codes.join(' | ')}]`,
        )
      }
    const qfile = join(dir, `cluster-bench-${process.pid}-queries.txt`)
    files.push(qfile)
    writeFileSync(qfile, `${ZONE} SOA\nns.${ZONE} A\n${ZONE} NS\n`)
    await Promise.all(others.map((n) => n.start(EXTRA, { tls: false })))
    const qps = new Map<string, { rate: number[]; cpu: number[] }>()
    for (let r = 1; r <= ROUNDS; r++)
      for (const s of setups) {
        const res = await spread(s, () => qfile, [], QUERY_Q)
        const e = qps.get(s.label) ?? { rate: [], cpu: [] }
        e.rate.push(res.rate)
        e.cpu.push(res.cpu)
        qps.set(s.label, e)
        console.log(
          `  queries round=${r} ${s.label.padEnd(12)} qps=${res.rate.toFixed(0)} nodes_cpu_cores=${res.cpu.toFixed(2)}`,
        )
      }
    const push = await crossNodePush(pgNodes[0]!, pgNodes[1]!, pgKey)
    console.log('\nmedians')
    for (const [label, e] of ups)
      console.log(
        `  durable signed updates with lease/s  ${label.padEnd(12)} ${median(e.rate).toFixed(0).padStart(6)}  nodes CPU ${median(e.cpu).toFixed(2)} cores`,
      )
    for (const [label, e] of qps)
      console.log(
        `  queries/s                            ${label.padEnd(12)} ${median(e.rate).toFixed(0).padStart(6)}  nodes CPU ${median(e.cpu).toFixed(2)} cores`,
      )
    const base = median(ups.get('sqlite x1')!.rate)
    console.log(
      `  ratio updates/s postgres x3 : sqlite x1 = ${(median(ups.get('postgres x3')!.rate) / base).toFixed(2)}; postgres x1 : sqlite x1 = ${(median(ups.get('postgres x1')!.rate) / base).toFixed(2)}`,
    )
    console.log(`  ${push}`)
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
