// bench/idle-peers: what an idle agent with TWO peers costs (issue 17: at most 64 MiB RSS and 0.1 % of a core), per
// --tunnel-threads mode and V8 options (bench/idle.bench.ts: two agents, one peer each, then light traffic), beside the
// server. The lab's server, desktop (home), laptop (cafe) and hotel-guest (hotel) run `autotunnel up` with the TUN
// device; the desktop's tunnels to both peers are brought up (a ping each), then nothing is sent for
// IDLE_SECONDS (60). Measured from /proc, every second: the RSS of the node process (VmRSS) and, over the whole
// window, its CPU time (utime + stime of all its threads, the tunnel's worker threads included) as a share of one
// core; the agent's `ip monitor` child is reported apart. Per --tunnel-threads mode (IDLE_MODES, default on,off; an
// entry MODE:OPTS also gives the agents NODE_OPTIONS=OPTS, e.g. "on:--max-semi-space-size=1").
// Per thread (and per child process), CPU time and wake-ups over the window (proc-threads.ts). BENCH_AGENT_WRAP (a
// command prefix for the agents) and BENCH_MARK_SIGNAL (sent to the agent at the start and end of the window) let a
// tracer be attached to attribute wake-ups, e.g. a wrapper running node with --cpu-prof, or an --import preload
// that dumps its counters on SIGUSR2 (docs/commands.md "Idle cost").
// Needs root. Prints one JSON line per process and mode, then a table.
import { readFile } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { Lab } from '../lab/index.js'
import { type LabServer, startServer } from '../test/lab/agent-helpers.js'
import { startTunnelAgent, type TunnelAgent, waitPeer, waitPing } from '../test/lab/tunnel-helpers.js'
import { formatDeltas, threadDeltas, threadSnapshot } from './proc-threads.js'

const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 60)
const MODES = (process.env.IDLE_MODES ?? 'on,off').split(',')
const CLK_TCK = 100
/** A command prefix for the agents, e.g. "env NODE_OPTIONS=--import=/tmp/tracer.mjs" to attribute wake-ups. */
const AGENT_WRAP = (process.env.BENCH_AGENT_WRAP ?? '').split(' ').filter(Boolean)
/** A signal sent to the agents at the start and the end of the window (for such a tracer to dump), e.g. SIGUSR2. */
const MARK_SIGNAL = process.env.BENCH_MARK_SIGNAL as NodeJS.Signals | undefined
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** utime + stime (clock ticks) of a process, all threads (proc(5) fields 14 and 15). */
async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12])
}

async function rssKiB(pid: number): Promise<number> {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0)
}

/**
 * Where the RSS is (proc(5) smaps): the node binary's pages, the malloc heap ([heap] plus the anonymous arenas of
 * other threads, which smaps cannot tell from V8's), V8's anonymous mappings, and shared libraries, in MiB.
 */
async function rssByMapping(pid: number): Promise<string> {
  const sum = new Map<string, number>()
  const maps: { what: string; rss: number }[] = []
  let name = ''
  for (const line of (await readFile(`/proc/${pid}/smaps`, 'utf8')).split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line)
    if (head) {
      const path = head[4] ?? ''
      name = path === '' ? 'anonymous' : path.startsWith('[') ? path : path.endsWith('/node') ? 'node binary' : 'files'
      const kib = (Number.parseInt(head[2] ?? '0', 16) - Number.parseInt(head[1] ?? '0', 16)) / 1024
      maps.push({ what: `${kib} KiB ${head[3]} ${path || 'anonymous'}`, rss: 0 })
      continue
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line)
    if (rss) {
      sum.set(name, (sum.get(name) ?? 0) + Number(rss[1]))
      const last = maps[maps.length - 1]
      if (last) last.rss = Number(rss[1])
    }
  }
  // IDLE_SMAPS=N: also the N mappings with the most resident pages.
  const top = Number(process.env.IDLE_SMAPS ?? 0)
  const detail = maps
    .sort((a, b) => b.rss - a.rss)
    .slice(0, top)
    .map((m) => `\n    ${String(m.rss).padStart(7)} KiB resident of ${m.what}`)
    .join('')
  return `${[...sum]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${(v / 1024).toFixed(1)}`)
    .join(', ')}${detail}`
}

/** The node process behind a lab process (the spawned pid may be a wrapper that exec'd or forked it). */
async function nodePid(pid: number): Promise<number> {
  const comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim()
  if (comm === 'node' || comm.startsWith('node')) return pid
  const kids = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).map(Number)
  for (const k of kids) if (k) return nodePid(k)
  throw new Error(`no node process under ${pid}`)
}

async function children(pid: number): Promise<number[]> {
  const out: number[] = []
  for (const t of await import('node:fs/promises').then((f) => f.readdir(`/proc/${pid}/task`)))
    for (const c of (await readFile(`/proc/${pid}/task/${t}/children`, 'utf8')).trim().split(/\s+/))
      if (c) out.push(Number(c))
  return out
}

interface Sample {
  who: string
  mode: string
  rssMiBMax: number
  rssMiBEnd: number
  cpuPercent: number
  threads: number
  childRssMiB: number
}

async function measure(pids: { who: string; pid: number }[], mode: string): Promise<Sample[]> {
  const t0 = performance.now()
  const c0 = await Promise.all(pids.map((p) => cpuTicks(p.pid)))
  const th0 = await Promise.all(pids.map((p) => threadSnapshot(p.pid)))
  const load0 = loadavg()
  if (MARK_SIGNAL) for (const p of pids.slice(0, -1)) process.kill(p.pid, MARK_SIGNAL)
  const max = pids.map(() => 0)
  for (let s = 0; s < IDLE_SECONDS; s++) {
    await sleep(1000)
    const r = await Promise.all(pids.map((p) => rssKiB(p.pid)))
    r.forEach((v, i) => {
      max[i] = Math.max(max[i] ?? 0, v)
    })
  }
  const secs = (performance.now() - t0) / 1000
  const c1 = await Promise.all(pids.map((p) => cpuTicks(p.pid)))
  const th1 = await Promise.all(pids.map((p) => threadSnapshot(p.pid)))
  if (MARK_SIGNAL) for (const p of pids.slice(0, -1)) process.kill(p.pid, MARK_SIGNAL)
  const load1 = loadavg()
  process.stdout.write(
    `load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at end ${load1.map((x) => x.toFixed(2)).join(' ')}\n`,
  )
  pids.forEach((p, i) => {
    process.stdout.write(`${formatDeltas(`${p.who} [${mode}]`, threadDeltas(th0[i]!, th1[i]!, secs))}\n`)
  })
  for (const p of pids) process.stdout.write(`${p.who} [${mode}] RSS by mapping: ${await rssByMapping(p.pid)}\n`)
  return Promise.all(
    pids.map(async (p, i) => {
      const threads = Number(/^Threads:\s+(\d+)/m.exec(await readFile(`/proc/${p.pid}/status`, 'utf8'))?.[1])
      let childRss = 0
      for (const c of await children(p.pid)) childRss += await rssKiB(c).catch(() => 0)
      return {
        who: p.who,
        mode,
        rssMiBMax: Math.round(((max[i] ?? 0) / 1024) * 10) / 10,
        rssMiBEnd: Math.round(((await rssKiB(p.pid)) / 1024) * 10) / 10,
        cpuPercent: Math.round((((c1[i] ?? 0) - (c0[i] ?? 0)) / CLK_TCK / secs) * 100 * 1000) / 1000,
        threads,
        childRssMiB: Math.round((childRss / 1024) * 10) / 10,
      }
    }),
  )
}

async function main(): Promise<void> {
  const lab = await Lab.up({ sites: ['home', 'cafe', 'hotel'] })
  let srv: LabServer | undefined
  const results: Sample[] = []
  try {
    // STUN in the core (SRV _stun._udp): the hotel guest (EIM NAT, no mapping protocol) is reached by punching.
    srv = await startServer(lab, { leaseMin: 30, extra: ['--stun', '192.0.2.1:3478'] })
    for (const entry of MODES) {
      const [mode = 'on', nodeOptions] = entry.split(/:(.*)/s)
      const agents: TunnelAgent[] = []
      try {
        // Spawned agents inherit this process's environment (the server was started before: unaffected).
        if (nodeOptions) process.env.NODE_OPTIONS = nodeOptions
        else delete process.env.NODE_OPTIONS
        for (const h of ['desktop', 'laptop', 'hotel-guest'])
          agents.push(
            await startTunnelAgent(
              lab,
              srv,
              h,
              ['--tunnel-threads', mode, '--log-level', 'warn'],
              undefined,
              AGENT_WRAP,
            ),
          )
        const [desktop, laptop, guest] = agents as [TunnelAgent, TunnelAgent, TunnelAgent]
        await waitPeer(desktop, 'laptop', laptop.ula, 30_000)
        await waitPeer(desktop, 'hotel-guest', guest.ula, 30_000)
        await waitPing(lab, 'desktop', laptop.ula, 30_000)
        await waitPing(lab, 'desktop', guest.ula, 30_000)
        // Let start-up work (JIT, first renewals, GC) settle before the window.
        await sleep(5000)
        const s = await measure(
          [
            { who: 'agent (desktop)', pid: await nodePid(desktop.proc.pid) },
            { who: 'server', pid: await nodePid(srv.proc.pid) },
          ],
          entry,
        )
        for (const x of s) process.stdout.write(`${JSON.stringify({ idleSeconds: IDLE_SECONDS, ...x })}\n`)
        results.push(...s)
      } finally {
        await Promise.allSettled(agents.map((a) => a.stop()))
      }
    }
  } finally {
    await srv?.stop()
    await lab.down()
  }
  process.stdout.write(`\nidle ${IDLE_SECONDS} s, two peers, tunnels up\n`)
  process.stdout.write(
    'process           threads-mode  RSS max MiB  RSS end MiB  CPU % of a core  threads  child RSS MiB\n',
  )
  for (const r of results)
    process.stdout.write(
      `${r.who.padEnd(18)}${r.mode.padEnd(14)}${String(r.rssMiBMax).padStart(11)}${String(r.rssMiBEnd).padStart(13)}` +
        `${r.cpuPercent.toFixed(3).padStart(17)}${String(r.threads).padStart(9)}${String(r.childRssMiB).padStart(15)}\n`,
    )
}

await main()
