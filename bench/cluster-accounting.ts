// bench/cluster's accounting: CPU seconds by part (the nodes, the PostgreSQL cluster, dnsperf, the rest of the
// machine) from /proc, and the statements the nodes ran from pg_stat_statements.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { PgCluster } from '../test/interop/pg-cluster.js'

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** /proc/PID/stat after the command name: [0] state, [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime. */
function statOf(pid: number | 'self'): string[] {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return f.slice(f.lastIndexOf(')') + 2).split(' ')
}

export function cpuSec(pid: number): number {
  const rest = statOf(pid)
  return (Number(rest[11]) + Number(rest[12])) / 100
}

/** CPU seconds of the PostgreSQL cluster: the postmaster and every process it forked (backends, WAL writer...), live or reaped. */
export function pgCpuSec(pg: PgCluster): number {
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
export function reapedChildrenCpuSec(): number {
  const st = statOf('self')
  return (Number(st[13]) + Number(st[14])) / 100
}

/** Busy CPU seconds of the whole machine (all cores; everything but idle and iowait). */
export function machineBusySec(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const hz = 100
  return (f.reduce((a, b) => a + b, 0) - f[3]! - f[4]!) / hz
}

/** CPU cores used during one measurement, by part: the nodes, PostgreSQL, dnsperf, and everything else. */
export interface Cpu {
  cpu: number
  /** Each node's cores (node 1 first). */
  perNode?: number[]
  pg: number
  gen: number
  other: number
}

/** Cores (CPU seconds per second) and CPU microseconds per operation, by part. */
export function cpuLine(c: Cpu & { rate: number }): string {
  const us = (x: number): string => ((x * 1e6) / c.rate).toFixed(0)
  return (
    `cores: nodes ${c.cpu.toFixed(2)} pg ${c.pg.toFixed(2)} dnsperf ${c.gen.toFixed(2)} other ${c.other.toFixed(2)}; ` +
    `us/op: nodes ${us(c.cpu)} pg ${us(c.pg)} dnsperf ${us(c.gen)}` +
    (c.perNode && c.perNode.length > 1 ? ` (per node ${c.perNode.map(us).join('/')})` : '')
  )
}

/** The statements of the nodes' main kinds since the last reset (warm-up included), `updates` the updates they served. */
export async function statementsPerUpdate(pg: PgCluster, updates: number): Promise<string> {
  const rows = await pg.query<{ calls: string; rows: string; ms: string; query: string }>(
    `SELECT calls::text, rows::text, total_exec_time::text AS ms, query FROM pg_stat_statements`,
  )
  const kinds: [string, RegExp][] = [
    // The commit statement reads the feed too (COMMIT_FEED_SQL); 'feed' are the reads on their own.
    ['commit', /^\s*WITH\s+(lk|d) AS/],
    ['feed', /^\s*WITH f AS/],
    ['rrsets', /FROM autotunnel\.rr WHERE \(name, type\) IN/],
    ['notify', /pg_notify/],
  ]
  const out = kinds.map(([label, re]) => {
    const hit = rows.filter((r) => re.test(r.query))
    const calls = hit.reduce((a, r) => a + Number(r.calls), 0)
    const ms = hit.reduce((a, r) => a + Number(r.ms), 0)
    const rs = hit.reduce((a, r) => a + Number(r.rows), 0)
    return `${label} ${calls} (${(updates / Math.max(1, calls)).toFixed(1)} updates each, ${((ms * 1000) / Math.max(1, calls)).toFixed(0)} us, ${(rs / Math.max(1, calls)).toFixed(0)} rows)`
  })
  return `    statements (about ${updates.toFixed(0)} updates): ${out.join('; ')}`
}

export async function pgStats(pg: PgCluster): Promise<void> {
  const rows = await pg.query<{ calls: string; rows: string; ms: string; query: string }>(
    `SELECT calls::text, rows::text, round(total_exec_time)::text AS ms, regexp_replace(query, '\\s+', ' ', 'g') AS query
     FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`,
  )
  console.log('  pg_stat_statements (all set-ups), by total time:')
  for (const r of rows) console.log(`    calls=${r.calls} rows=${r.rows} ms=${r.ms} ${r.query.slice(0, 110)}`)
}

/** CPU seconds of each live process of the PostgreSQL cluster (the postmaster's children), by pid. */
export function pgProcCpu(pg: PgCluster): Map<number, number> {
  const master = Number(readFileSync(join(pg.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0])
  const out = new Map<number, number>()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const st = statOf(Number(d))
      if (Number(st[1]) === master) out.set(Number(d), (Number(st[11]) + Number(st[12])) / 100)
    } catch {
      // Exited meanwhile.
    }
  }
  return out
}

/**
 * Where PostgreSQL's CPU went between two pgProcCpu samples, by role: the nodes' pool connections (commits and feed
 * reads), their doorbell (NOTIFY) and LISTEN connections, and the server's own processes (WAL writer, autovacuum...),
 * as microseconds per update. Processes gone by the end (autovacuum workers) are 'exited or new'.
 */
export async function pgCpuByRole(
  pg: PgCluster,
  before: Map<number, number>,
  totalSec: number,
  updates: number,
): Promise<string> {
  const after = pgProcCpu(pg)
  const rows = await pg.query<{ pid: number; backend_type: string; query: string; app: string }>(
    `SELECT pid, backend_type, coalesce(application_name, '') AS app, left(query, 40) AS query FROM pg_stat_activity`,
  )
  const role = new Map<number, string>()
  for (const r of rows) {
    if (r.backend_type !== 'client backend') role.set(r.pid, r.backend_type)
    else if (/^LISTEN/.test(r.query)) role.set(r.pid, 'listen')
    else if (/pg_notify/.test(r.query)) role.set(r.pid, 'doorbell')
    else if (/^autotunnel /.test(r.app)) role.set(r.pid, 'pool (commit, feed)')
    else role.set(r.pid, 'other client')
  }
  const by = new Map<string, number>()
  let seen = 0
  for (const [pid, c] of after) {
    const d = c - (before.get(pid) ?? 0)
    seen += d
    const k = role.get(pid) ?? 'unknown'
    by.set(k, (by.get(k) ?? 0) + d)
  }
  by.set('exited or new', Math.max(0, totalSec - seen))
  const us = (s: number): string => ((s * 1e6) / updates).toFixed(0)
  return `    postgres CPU us/update by role: ${[...by]
    .filter(([, s]) => s > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([k, s]) => `${k} ${us(s)}`)
    .join(', ')}`
}
