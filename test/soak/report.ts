// The soak run's summary: per fault kind the worst figures, per process its first and last sample, as a table for
// people and as JSON for the issue note (docs/soak.md explains each column).

import type { FaultResult, ProcSample, SoakReport } from './driver.js'
import { FAULT_KINDS, type FaultKind } from './faults.js'

/**
 * Growth allowed from the run's first sample of a role (server, desktop, laptop) to its last: the stated bound of
 * docs/soak.md. Both are taken after 3 s without faults. A process sampled right after its restart is not compared:
 * its clients (DNS Push sessions, each with a socket and timers) have not all come back yet.
 */
export const BOUNDS = { rssBytes: 64 * 1024 * 1024, openFds: 16, timers: 16, handles: 32 } as const

export interface KindSummary {
  kind: FaultKind
  count: number
  recovered: number
  maxPingGapMs: number
  maxPingResumeMs: number | null
  maxRecordsRightMs: number | null
  tcpSurvived: number
  tcpEndedByDesign: number
  tcpBroken: number
  maxTcpStallMs: number
}

export interface ProcSummary {
  who: string
  first: ProcSample
  last: ProcSample
  /** The longest-lived process of this role: its first and last sample (same pid). */
  longest: { first: ProcSample; last: ProcSample; seconds: number } | null
  /** Lowest and highest value over the samples taken before a restart or at the start and end (not right after a restart). */
  range: { rssBytes: [number, number]; openFds: [number, number]; timers: [number, number]; handles: [number, number] }
  /** Growth from first to last beyond BOUNDS, as text. */
  overBound: string[]
}

export interface SoakSummary {
  seed: number
  seconds: number
  faults: number
  byKind: KindSummary[]
  processes: ProcSummary[]
  crashLines: string[]
  errorLines: Record<string, number>
  ok: boolean
}

function maxOrNull(xs: (number | null)[]): number | null {
  return xs.some((x) => x === null) ? null : Math.max(0, ...(xs as number[]))
}

export function summarize(r: SoakReport): SoakSummary {
  const byKind = FAULT_KINDS.map((kind): KindSummary => {
    const fs = r.faults.filter((f) => f.kind === kind)
    return {
      kind,
      count: fs.length,
      recovered: fs.filter((f) => f.recovered).length,
      maxPingGapMs: Math.max(0, ...fs.map((f) => f.pingGapMs)),
      maxPingResumeMs: maxOrNull(fs.map((f) => f.pingResumeMs)),
      maxRecordsRightMs: maxOrNull(fs.map((f) => f.recordsRightMs)),
      tcpSurvived: fs.filter((f) => f.tcp === 'survived').length,
      tcpEndedByDesign: fs.filter((f) => f.tcp === 'ended by design').length,
      tcpBroken: fs.filter((f) => f.tcp === 'broken').length,
      maxTcpStallMs: Math.max(0, ...fs.map((f) => f.tcpStallMs)),
    }
  })
  const processes: ProcSummary[] = []
  for (const who of ['server', 'desktop', 'laptop']) {
    const ss = r.samples.filter((s) => s.who === who)
    if (!ss.length) continue
    let longest: ProcSummary['longest'] = null
    for (const pid of new Set(ss.map((s) => s.pid))) {
      const mine = ss.filter((s) => s.pid === pid)
      const first = mine[0]!
      const last = mine.at(-1)!
      const seconds = last.atSec - first.atSec
      if (!longest || seconds > longest.seconds) longest = { first, last, seconds }
    }
    const steady = ss.filter((s) => s.when !== 'after restart')
    const span = (f: (s: ProcSample) => number | null): [number, number] => {
      const xs = steady.map(f).filter((x): x is number => x !== null)
      return [Math.min(...xs), Math.max(...xs)]
    }
    const range = {
      rssBytes: span((s) => s.rssBytes),
      openFds: span((s) => s.openFds),
      timers: span((s) => s.timers),
      handles: span((s) => s.handles),
    }
    processes.push({ who, first: ss[0]!, last: ss.at(-1)!, longest, range, overBound: growth(ss[0]!, ss.at(-1)!) })
  }
  return {
    seed: r.seed,
    seconds: r.seconds,
    faults: r.faults.length,
    byKind,
    processes,
    crashLines: r.crashLines,
    errorLines: r.errorLines,
    ok:
      r.faults.every((f) => f.recovered) &&
      r.crashLines.length === 0 &&
      processes.every((p) => p.overBound.length === 0),
  }
}

/** Growth from sample `a` to sample `b` beyond BOUNDS. */
export function growth(a: ProcSample, b: ProcSample): string[] {
  const out: string[] = []
  const check = (what: keyof typeof BOUNDS, x: number | null, y: number | null) => {
    if (x !== null && y !== null && y - x > BOUNDS[what]) out.push(`${a.who} ${what} ${x} -> ${y}`)
  }
  check('rssBytes', a.rssBytes, b.rssBytes)
  check('openFds', a.openFds, b.openFds)
  check('timers', a.timers, b.timers)
  check('handles', a.handles, b.handles)
  return out
}

const sec = (ms: number | null) => (ms === null ? 'never' : (ms / 1000).toFixed(1))
const mib = (b: number) => (b / 1048576).toFixed(1)

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n')
}

function sampleText(s: ProcSample): string {
  const heap = s.heapUsedBytes === null ? '' : ` (heap ${mib(s.heapUsedBytes)})`
  return `${mib(s.rssBytes)} MiB${heap}, ${s.openFds} fds, ${s.timers ?? '?'} timers, ${s.handles ?? '?'} handles`
}

export function formatSummary(s: SoakSummary, faults: readonly FaultResult[]): string {
  const kinds = table([
    [
      'fault',
      'count',
      'recovered',
      'max ping gap s',
      'max resume s',
      'max records s',
      'tcp kept/ended/broken',
      'max tcp stall s',
    ],
    ...s.byKind.map((k) => [
      k.kind,
      String(k.count),
      `${k.recovered}/${k.count}`,
      sec(k.maxPingGapMs),
      sec(k.maxPingResumeMs),
      sec(k.maxRecordsRightMs),
      `${k.tcpSurvived}/${k.tcpEndedByDesign}/${k.tcpBroken}`,
      sec(k.maxTcpStallMs),
    ]),
  ])
  const procs = s.processes.flatMap((p) => [
    `${p.who}: run start ${sampleText(p.first)} (pid ${p.first.pid}) -> run end ${sampleText(p.last)} (pid ${p.last.pid})`,
    p.longest
      ? `  longest-lived pid ${p.longest.first.pid} over ${p.longest.seconds.toFixed(0)} s: ${sampleText(p.longest.first)} -> ${sampleText(p.longest.last)}`
      : '',
    `  range (start, before each restart, end): RSS ${mib(p.range.rssBytes[0])}-${mib(p.range.rssBytes[1])} MiB, fds ${p.range.openFds.join('-')}, timers ${p.range.timers.join('-')}, handles ${p.range.handles.join('-')}`,
    ...p.overBound.map((x) => `  OVER BOUND: ${x}`),
  ])
  const failed = faults.filter((f) => !f.recovered)
  return [
    `soak: seed ${s.seed}, ${s.seconds} s, ${s.faults} faults`,
    '',
    kinds,
    '',
    ...procs.filter(Boolean),
    `bounds, run start to run end per role: RSS +${mib(BOUNDS.rssBytes)} MiB, fds +${BOUNDS.openFds}, timers +${BOUNDS.timers}, handles +${BOUNDS.handles}`,
    `uncaught exceptions / unhandled rejections in logs: ${s.crashLines.length}`,
    ...s.crashLines.map((l) => `  ${l}`),
    `error-level log lines: ${JSON.stringify(s.errorLines)}`,
    ...failed.map((f) => `NOT RECOVERED: #${f.n} ${f.kind} ${f.target} at ${f.atSec} s: ${f.notes.join('; ')}`),
    s.ok ? 'soak: OK' : 'soak: FAILED',
  ].join('\n')
}
