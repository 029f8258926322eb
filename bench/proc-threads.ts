// Per-thread CPU time and wake-ups of a process and its children, from /proc (proc(5)), for the idle benchmarks
// (issue 17). A thread that blocks (epoll_wait, futex) and is woken counts one voluntary context switch, so the
// voluntary switches over a window are its wake-ups, whatever woke it: a timer, a datagram, a worker's message.
import { readdir, readFile } from 'node:fs/promises'

/** USER_HZ: /proc/PID/stat counts CPU time in clock ticks of 1/100 s on Linux. */
export const CLK_TCK = 100

export interface ThreadFigures {
  /** "node", "libuv-worker", a worker's name, or "child NAME" for a child process (all its threads). */
  readonly name: string
  readonly ticks: number
  readonly wakeups: number
}

async function taskFigures(dir: string): Promise<{ comm: string; ticks: number; wakeups: number }> {
  const stat = await readFile(`${dir}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const status = await readFile(`${dir}/status`, 'utf8')
  return {
    comm: (await readFile(`${dir}/comm`, 'utf8')).trim(),
    ticks: Number(f[11]) + Number(f[12]),
    wakeups: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0),
  }
}

/** Every thread of `pid` by TID (the main thread's TID is the PID), and each child process summed by PID. */
export async function threadSnapshot(pid: number): Promise<Map<string, ThreadFigures>> {
  const out = new Map<string, ThreadFigures>()
  const tids = await readdir(`/proc/${pid}/task`)
  for (const tid of tids) {
    const t = await taskFigures(`/proc/${pid}/task/${tid}`).catch(() => undefined)
    if (t) out.set(tid, { name: tid === String(pid) ? `main (${t.comm})` : t.comm, ticks: t.ticks, wakeups: t.wakeups })
    const kids = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '')
    for (const c of kids.trim().split(/\s+/).filter(Boolean)) {
      let ticks = 0
      let wakeups = 0
      let comm = '?'
      for (const ct of await readdir(`/proc/${c}/task`).catch(() => [] as string[])) {
        const x = await taskFigures(`/proc/${c}/task/${ct}`).catch(() => undefined)
        if (!x) continue
        ticks += x.ticks
        wakeups += x.wakeups
        comm = x.comm
      }
      out.set(`child ${c}`, { name: `child ${comm}`, ticks, wakeups })
    }
  }
  return out
}

export interface ThreadDelta {
  readonly name: string
  readonly cpuPercent: number
  readonly wakeupsPerMin: number
}

/** What each thread (present at both ends) did between two snapshots `seconds` apart, busiest first. */
export function threadDeltas(a: Map<string, ThreadFigures>, b: Map<string, ThreadFigures>, seconds: number) {
  const out: ThreadDelta[] = []
  for (const [id, y] of b) {
    const x = a.get(id)
    if (!x) continue
    out.push({
      name: y.name,
      cpuPercent: ((y.ticks - x.ticks) / CLK_TCK / seconds) * 100,
      wakeupsPerMin: ((y.wakeups - x.wakeups) / seconds) * 60,
    })
  }
  return out.sort((p, q) => q.cpuPercent - p.cpuPercent || q.wakeupsPerMin - p.wakeupsPerMin)
}

/** One line per thread that did anything: "name  CPU %  wake-ups/min". */
export function formatDeltas(who: string, ds: readonly ThreadDelta[]): string {
  const busy = ds.filter((d) => d.cpuPercent > 0 || d.wakeupsPerMin > 0)
  const total = ds.reduce((s, d) => s + d.wakeupsPerMin, 0)
  return [
    `${who}: ${ds.length} threads/children, ${total.toFixed(1)} wake-ups/min in all`,
    ...busy.map(
      (d) =>
        `  ${d.name.padEnd(22)} ${d.cpuPercent.toFixed(3).padStart(7)} %  ${d.wakeupsPerMin.toFixed(1).padStart(7)} wake-ups/min`,
    ),
  ].join('\n')
}
