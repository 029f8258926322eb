// bench/agent-tunnel: the tunnel's thread modes inside the real two-agent setup (issue 7), not the manual-keyed
// netns bench: the lab (server, desktop at home and laptop at the cafe behind miniupnpd routers), `autotunnel up`
// on both keyed by IKEv2, and per mode, alternating per round:
//   - ping RTT laptop -> desktop ULA (200 pings 10 ms apart after a warm-up, then 25 pings 200 ms apart)
//   - iperf3 TCP laptop -> desktop over the ULAs (BENCH_SECONDS)
//   - roaming: the laptop moves cafe -> hotel 3 s into an `iperf3 -R -i 0.1 -b 20M` run and a 10 ms ping stream
//     from the desktop; the interruption is the longest run of lost echoes (x 10 ms) and the longest run of
//     zero-byte 0.1 s iperf3 intervals.
// The agents are restarted for each mode with --tunnel-threads MODE. Needs root.
// Environment: BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_MODES (off,send,on: the --tunnel-threads values).
import { Lab } from '../lab/index.js'
import { type LabServer, startServer } from '../test/lab/agent-helpers.js'
import {
  parseIperf,
  roamDuringTransfer,
  startIperfServer,
  startTunnelAgent,
  type TunnelAgent,
  waitPeer,
  waitPing,
} from '../test/lab/tunnel-helpers.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const MODES = (process.env.BENCH_MODES ?? 'off,send,on').split(',')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface Result {
  mode: string
  round: number
  rttAvg: number
  rttMax: number
  /** 25 pings 200 ms apart: the threads sleep between them */
  rttIdle: number
  tcpMbps: number
  roamPingMs: number
  roamIperfMs: number
  roamMbps: number
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y)
  const m = Math.floor(s.length / 2)
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

async function one(lab: Lab, srv: LabServer, mode: string, round: number): Promise<Result> {
  const agents: TunnelAgent[] = []
  try {
    const desktop = await startTunnelAgent(lab, srv, 'desktop', ['--tunnel-threads', mode])
    agents.push(desktop)
    const laptop = await startTunnelAgent(lab, srv, 'laptop', ['--tunnel-threads', mode])
    agents.push(laptop)
    await waitPeer(laptop, 'desktop', desktop.ula)
    await waitPeer(desktop, 'laptop', laptop.ula)
    await waitPing(lab, 'laptop', desktop.ula)
    await lab.exec('laptop', ['ping', '-6', '-q', '-c', '20', '-i', '0.01', desktop.ula])
    const p = await lab.exec('laptop', ['ping', '-6', '-q', '-c', '200', '-i', '0.01', '-W', '1', desktop.ula], {
      timeoutMs: 30_000,
    })
    const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(p.stdout)
    const pi = await lab.exec('laptop', ['ping', '-6', '-q', '-c', '25', '-i', '0.2', '-W', '1', desktop.ula], {
      timeoutMs: 30_000,
    })
    const mi = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(pi.stdout)
    const srv1 = await startIperfServer(lab, 'desktop', desktop.ula)
    const ip = await lab.exec('laptop', ['iperf3', '-6', '-c', desktop.ula, '-t', String(SECONDS), '-J'], {
      timeoutMs: 60_000,
    })
    srv1.stop()
    const tcp = parseIperf(ip.stdout)
    await sleep(300)
    const {
      roam: r,
      stall,
      ping,
    } = await roamDuringTransfer(lab, {
      fixed: 'desktop',
      fixedUla: desktop.ula,
      roamer: 'laptop',
      roamerUla: laptop.ula,
      site: 'hotel',
      seconds: 8,
      pings: 500,
      moveAfterMs: 3000,
    })
    const gap = ping.answered === 0 ? 500 : ping.gap
    return {
      mode,
      round,
      rttAvg: m ? Number(m[2]) : Number.NaN,
      rttMax: m ? Number(m[3]) : Number.NaN,
      rttIdle: mi ? Number(mi[2]) : Number.NaN,
      tcpMbps: tcp.receivedBps / 1e6,
      roamPingMs: gap * 10,
      roamIperfMs: Math.round(stall.seconds * 1000),
      roamMbps: r.receivedBps / 1e6,
    }
  } finally {
    for (const a of agents) await a.stop()
    await sleep(500)
    await lab.move('laptop', 'cafe').catch(() => {})
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('agent-tunnel.bench: skipped (needs root for the lab)')
    return
  }
  const lab = await Lab.up({ sites: ['home', 'cafe', 'hotel'] })
  let srv: LabServer | undefined
  let ok = false
  try {
    srv = await startServer(lab, { leaseMin: 30 })
    const results: Result[] = []
    for (let round = 1; round <= ROUNDS; round++)
      for (const mode of round % 2 ? MODES : [...MODES].reverse()) {
        const res = await one(lab, srv, mode, round)
        results.push(res)
        console.log(`agent ${JSON.stringify(res)}`)
      }
    console.log(`\nmedians over ${ROUNDS} rounds (two agents in the lab, IKEv2-keyed, NAT on both sides)`)
    console.log('mode   RTT -i 0.01 avg/max ms  RTT -i 0.2 ms  TCP Mbit/s  roam: ping loss ms  iperf3 stall ms')
    const summary: Record<string, Record<string, number>> = {}
    for (const mode of MODES) {
      const xs = results.filter((x) => x.mode === mode)
      const s = {
        rttAvg: median(xs.map((x) => x.rttAvg)),
        rttMax: median(xs.map((x) => x.rttMax)),
        rttIdle: median(xs.map((x) => x.rttIdle)),
        tcpMbps: median(xs.map((x) => x.tcpMbps)),
        roamPingMs: median(xs.map((x) => x.roamPingMs)),
        roamPingMsMax: Math.max(...xs.map((x) => x.roamPingMs)),
        roamIperfMs: median(xs.map((x) => x.roamIperfMs)),
      }
      summary[mode] = s
      console.log(
        `${mode.padEnd(6)} ${`${s.rttAvg.toFixed(2)}/${s.rttMax.toFixed(2)}`.padStart(22)}  ${s.rttIdle.toFixed(2).padStart(13)}  ${s.tcpMbps.toFixed(0).padStart(10)}   ${`${s.roamPingMs} (max ${s.roamPingMsMax})`.padStart(18)}  ${String(s.roamIperfMs).padStart(15)}`,
      )
    }
    const base = summary.off?.tcpMbps
    if (base)
      for (const mode of MODES) console.log(`ratio ${mode}/off TCP ${(summary[mode]!.tcpMbps! / base).toFixed(3)}`)
    console.log(JSON.stringify({ bench: 'agent-tunnel', rounds: ROUNDS, seconds: SECONDS, summary }))
    ok = true
  } finally {
    await srv?.stop()
    await lab.down({ keepLogs: !ok })
    if (!ok) console.error(`lab logs kept in ${lab.dir}`)
  }
}

try {
  await main()
} catch (e) {
  console.error(`agent-tunnel.bench failed: ${(e as Error).message}`)
  process.exitCode = 1
}
