// bench/idle: what an idle agent costs (issue 17: at most 64 MiB RSS and 0.1 % of a core), side by side with the
// server. The lab (server, desktop at home, laptop at the cafe behind miniupnpd routers), `autotunnel up` on both
// with the tunnel keyed by IKEv2, each knowing the other (two peers: each other and, for the desktop, nothing else;
// the watch of the user's domain, the port mapping, the lease and the SAs all live). After a warm-up, nothing is sent
// for BENCH_IDLE_SECONDS; over that window we read each process's CPU time (/proc/PID/stat utime + stime) and its
// RSS (every sample, from /proc) and heap and handles (the agent's `status --json` process field, at the start and the
// end only: asking every sample woke the agent we measure), and per thread its CPU time and wake-ups (proc-threads.ts).
// Then BENCH_BUSY_SECONDS of a ping every 50 ms through the tunnel, to see what steady light traffic adds and
// whether the heap settles (it should not keep growing from one sample to the next).
// Environment: BENCH_IDLE_SECONDS (60), BENCH_BUSY_SECONDS (60), BENCH_SAMPLE_SECONDS (10), BENCH_AGENT_ARGS (extra
// `up` arguments for both agents, e.g. "--tunnel-threads off"). Needs root.
import { readdirSync, readFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { Lab } from '../lab/index.js'
import { type LabServer, startServer } from '../test/lab/agent-helpers.js'
import { startTunnelAgent, type TunnelAgent, waitPeer, waitPing } from '../test/lab/tunnel-helpers.js'
import { formatDeltas, threadDeltas, threadSnapshot } from './proc-threads.js'

const IDLE_S = Number(process.env.BENCH_IDLE_SECONDS ?? 60)
const BUSY_S = Number(process.env.BENCH_BUSY_SECONDS ?? 60)
const SAMPLE_S = Number(process.env.BENCH_SAMPLE_SECONDS ?? 10)
/** Extra `autotunnel up` arguments for both agents, e.g. `--tunnel-threads off`. */
const AGENT_ARGS = (process.env.BENCH_AGENT_ARGS ?? '').split(' ').filter(Boolean)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const MiB = 1024 * 1024
/** USER_HZ: /proc/PID/stat counts CPU time in clock ticks of 1/100 s on Linux. */
const TICKS_PER_S = 100

interface Sample {
  readonly atMs: number
  readonly cpuTicks: number
  readonly rssMiB: number
  readonly heapMiB: number | null
  readonly fds: number | null
}

function procSample(pid: number): Omit<Sample, 'heapMiB'> {
  // Fields after the command name (which may hold spaces and is in parentheses): utime is 14th, stime 15th overall.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN)
  const fds = readdirSync(`/proc/${pid}/fd`).length
  return { atMs: Date.now(), cpuTicks: Number(f[11]) + Number(f[12]), rssMiB: rssKb / 1024, fds }
}

async function agentSample(a: TunnelAgent): Promise<Sample> {
  const p = procSample(a.proc.pid)
  const s = (await a.status()) as unknown as { process?: { heapUsedBytes: number; openFds: number | null } }
  return { ...p, heapMiB: s.process ? s.process.heapUsedBytes / MiB : null, fds: s.process?.openFds ?? null }
}

function serverSample(srv: LabServer): Sample {
  return { ...procSample(srv.proc.pid), heapMiB: null }
}

const cpuPercent = (a: Sample, b: Sample): number =>
  ((b.cpuTicks - a.cpuTicks) / TICKS_PER_S / ((b.atMs - a.atMs) / 1000)) * 100

async function watch(
  what: string,
  seconds: number,
  procs: Record<string, { pid: number; full: () => Promise<Sample> | Sample }>,
): Promise<Record<string, Sample[]>> {
  const out: Record<string, Sample[]> = {}
  const take = async (full: boolean): Promise<void> => {
    for (const [name, p] of Object.entries(procs))
      (out[name] ??= []).push(full ? await p.full() : { ...procSample(p.pid), heapMiB: null })
  }
  const load0 = loadavg()
  await take(true)
  const th0 = await Promise.all(Object.values(procs).map((p) => threadSnapshot(p.pid)))
  const t0 = performance.now()
  const end = Date.now() + seconds * 1000
  while (Date.now() < end) {
    await sleep(Math.min(SAMPLE_S * 1000, end - Date.now()))
    if (Date.now() < end) await take(false)
  }
  const th1 = await Promise.all(Object.values(procs).map((p) => threadSnapshot(p.pid)))
  const secs = (performance.now() - t0) / 1000
  await take(true)
  const load1 = loadavg()
  console.log(`\n${what}: ${seconds} s`)
  console.log(
    `load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at end ${load1.map((x) => x.toFixed(2)).join(' ')}`,
  )
  console.log('process   CPU % of a core   RSS MiB start -> end (max)   heap MiB start -> end')
  for (const [name, xs] of Object.entries(out)) {
    const first = xs[0]!
    const last = xs.at(-1)!
    const heap = (x: Sample): string => (x.heapMiB === null ? '-' : x.heapMiB.toFixed(1))
    console.log(
      `${name.padEnd(9)} ${cpuPercent(first, last).toFixed(3).padStart(15)}   ${`${first.rssMiB.toFixed(1)} -> ${last.rssMiB.toFixed(1)} (${Math.max(...xs.map((x) => x.rssMiB)).toFixed(1)})`.padStart(27)}   ${heap(first)} -> ${heap(last)}`,
    )
  }
  Object.keys(procs).forEach((name, i) => {
    console.log(formatDeltas(name, threadDeltas(th0[i]!, th1[i]!, secs)))
  })
  return out
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('idle.bench: skipped (needs root for the lab)')
    return
  }
  const lab = await Lab.up({ sites: ['home', 'cafe'] })
  let srv: LabServer | undefined
  const agents: TunnelAgent[] = []
  let ok = false
  try {
    srv = await startServer(lab)
    const desktop = await startTunnelAgent(lab, srv, 'desktop', AGENT_ARGS)
    agents.push(desktop)
    const laptop = await startTunnelAgent(lab, srv, 'laptop', AGENT_ARGS)
    agents.push(laptop)
    await waitPeer(laptop, 'desktop', desktop.ula)
    await waitPeer(desktop, 'laptop', laptop.ula)
    await waitPing(lab, 'laptop', desktop.ula)
    await waitPing(lab, 'desktop', laptop.ula)
    // Warm-up: let start-up work (JIT, first renewals, the watch's initial answers) pass before measuring.
    await sleep(10_000)
    const s = srv
    const procs = {
      desktop: { pid: desktop.proc.pid, full: () => agentSample(desktop) },
      laptop: { pid: laptop.proc.pid, full: () => agentSample(laptop) },
      server: { pid: s.proc.pid, full: () => serverSample(s) },
    }
    const idle = await watch('idle (nothing sent through the tunnel)', IDLE_S, procs)
    const ping = lab.spawn('laptop', ['ping', '-6', '-q', '-i', '0.05', desktop.ula], { logName: 'idle-bench-ping' })
    let busy: Record<string, Sample[]>
    try {
      busy = await watch('light traffic (a ping every 50 ms, laptop -> desktop)', BUSY_S, procs)
    } finally {
      ping.stop()
    }
    const summary: Record<string, Record<string, number>> = {}
    for (const name of Object.keys(procs)) {
      const i = idle[name]!
      const b = busy[name]!
      summary[name] = {
        idleCpuPercent: Number(cpuPercent(i[0]!, i.at(-1)!).toFixed(3)),
        idleRssMiB: Number(i.at(-1)!.rssMiB.toFixed(1)),
        busyCpuPercent: Number(cpuPercent(b[0]!, b.at(-1)!).toFixed(3)),
        busyRssMiB: Number(b.at(-1)!.rssMiB.toFixed(1)),
      }
    }
    console.log(`\nidle ${JSON.stringify(summary)}`)
    console.log('goal (issue 17): an idle agent at most 64 MiB RSS and 0.1 % of a core')
    ok = true
  } finally {
    for (const a of agents) await a.stop()
    await srv?.stop()
    await lab.down()
    if (!ok) process.exitCode = 1
  }
}

await main()
