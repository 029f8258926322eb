// The soak driver (issue 14, docs/soak.md): in a lab with a server and two tunnel agents (desktop at home, laptop
// at the cafe, a third UPnP site to move to), a ping every 50 ms each way between the ULAs and a TCP stream from
// laptop to desktop run while faults come one after another at seeded random intervals. After each fault the
// driver waits until both pings answer again, both hosts' records at the server are right (`dig -y` against the
// lab's ground truth) and the stream delivers again, and records how long each took. Process figures (RSS, open
// descriptors, ref'd timers and handles) are sampled at the start, around every restart and at the end.
import { readdirSync, readFileSync } from 'node:fs'
import { type Lab, type LabProcess, standardTopology, type Topology } from '../../lab/index.js'
import { pidAlive } from '../../lab/sh.js'
import { dig, type LabServer, SERVER_ADDR, serverArgv, startServer, waitFor, ZONE } from '../lab/agent-helpers.js'
import { startTunnelAgent, type TunnelAgent, waitPeer } from '../lab/tunnel-helpers.js'
import { CUT_MS, FAULT_KINDS, type FaultKind, LOSS_MS, LOSS_PERCENT, pick, schedule, seededRandom } from './faults.js'
import { PingMonitor, StreamMonitor } from './monitors.js'

export const DOMAIN = `alice.${ZONE}`
const HOSTS = ['desktop', 'laptop'] as const
type Host = (typeof HOSTS)[number]
/** Only the laptop is killed, so the desktop's agent lives through the whole run and its figures span it. */
const KILLED: Host = 'laptop'
const WITNESS: Host = 'desktop'
/** The whole-run agent is sampled this often too, so its RSS shows a trend and not only two points. */
const PERIODIC_SAMPLE_MS = 60_000
const LEASE_MIN_SEC = 30
const METRICS = `${SERVER_ADDR}:9153`
/** Public addresses handed out by the public-ip fault, in turn (RFC 5737, unused by the topology). */
const SPARE_IPS = Array.from({ length: 40 }, (_, i) => `203.0.113.${100 + i}`)
const POLL_MS = 250

/** The standard topology cut to what the soak needs, plus a third UPnP site for the laptop to move to. */
export function soakTopology(): Topology {
  const std = standardTopology()
  return {
    ...std,
    sites: [
      ...std.sites.filter((s) => s.name === 'home' || s.name === 'cafe'),
      { name: 'library', nat: 'upnp', wan: '203.0.113.16', lan: '10.50.0.0/24', hosts: [] },
    ],
  }
}

export interface SoakOptions {
  /** Faults start until this many seconds have passed (the last one runs to its end). */
  readonly seconds: number
  readonly seed: number
  /** One fault of each kind (in seeded order), then stop: the short version in `make test`. */
  readonly once?: boolean
  /** Pause before each fault, drawn uniformly from [min, max] ms. */
  readonly quietMs?: readonly [number, number]
  /** How long after a fault ends the driver waits for recovery before calling it a failure. */
  readonly recoveryTimeoutMs?: number
  readonly log?: (line: string) => void
}

export type TcpOutcome = 'survived' | 'ended by design' | 'broken'

export interface FaultResult {
  readonly n: number
  readonly kind: FaultKind
  readonly target: string
  /** Seconds from the start of the run. */
  readonly atSec: number
  /** How long the fault was in place (the lab operation, or the loss/cut period; for kills: until gone). */
  readonly injectMs: number
  /** Longest time without an echo reply, either direction, from the fault's start to recovery. */
  readonly pingGapMs: number
  /** From the fault's end to the first reply in both directions (null: none within the timeout). */
  readonly pingResumeMs: number | null
  /** From the fault's end until both hosts' records at the server were right (null: not within the timeout). */
  readonly recordsRightMs: number | null
  readonly tcp: TcpOutcome
  /** Longest time the stream's receiver counted no new bytes, from the fault's start to recovery. */
  readonly tcpStallMs: number
  readonly recovered: boolean
  readonly notes: string[]
}

export interface ProcSample {
  readonly who: 'server' | Host
  readonly pid: number
  readonly when: string
  readonly atSec: number
  readonly rssBytes: number
  readonly openFds: number
  readonly timers: number | null
  readonly handles: number | null
  readonly heapUsedBytes: number | null
}

export interface SoakReport {
  readonly seed: number
  readonly seconds: number
  readonly faults: FaultResult[]
  readonly samples: ProcSample[]
  /** Lines of agent and server logs that show an uncaught exception, an unhandled rejection or a crash. */
  readonly crashLines: string[]
  /** Error-level (pino 50/60) log lines, by log file. */
  readonly errorLines: Record<string, number>
  readonly labDir: string
}

interface AgentSlot {
  agent: TunnelAgent
  label: string
  udpPort: number
}

interface FaultRun {
  kind: FaultKind
  target: string
  start: number
  end: number
  notes: string[]
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (pidAlive(pid)) {
    if (Date.now() > deadline) return false
    await sleep(10)
  }
  return true
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig)
  } catch {
    try {
      process.kill(pid, sig)
    } catch {
      // already gone
    }
  }
}

export class Soak {
  readonly #lab: Lab
  readonly #o: Required<Omit<SoakOptions, 'log'>> & { log: (line: string) => void }
  readonly #rand: () => number
  #srv!: LabServer
  #serverProc!: LabProcess
  readonly #agents = new Map<Host, AgentSlot>()
  readonly #ping: Record<Host, PingMonitor>
  readonly #stream: StreamMonitor
  readonly #samples: ProcSample[] = []
  readonly #faults: FaultResult[] = []
  #spare = 0
  #t0 = Date.now()

  constructor(lab: Lab, o: SoakOptions) {
    this.#lab = lab
    this.#o = {
      once: false,
      quietMs: [2000, 8000],
      recoveryTimeoutMs: 90_000,
      log: () => {},
      ...o,
    }
    this.#rand = seededRandom(o.seed)
    this.#ping = { desktop: new PingMonitor(lab, 'desktop'), laptop: new PingMonitor(lab, 'laptop') }
    this.#stream = new StreamMonitor(lab, 'laptop', 'desktop')
  }

  #ula(h: Host): string {
    return this.#agents.get(h)!.agent.ula
  }

  #sec(t = Date.now()): number {
    return Math.round((t - this.#t0) / 100) / 10
  }

  /** Runs the whole soak; everything it started is stopped, also on failure (the lab removes the rest). */
  async run(): Promise<SoakReport> {
    try {
      await this.#setUp()
      await sleep(3000)
      this.#t0 = Date.now()
      for (const w of ['server', ...HOSTS] as const) await this.#sample(w, 'start')
      let lastPeriodic = Date.now()
      const kinds = schedule(this.#rand)
      const done = new Set<FaultKind>()
      for (let n = 1; ; n++) {
        if (this.#o.once ? done.size === FAULT_KINDS.length : Date.now() - this.#t0 >= this.#o.seconds * 1000) break
        let kind = kinds.next().value as FaultKind
        while (this.#o.once && done.has(kind)) kind = kinds.next().value as FaultKind
        done.add(kind)
        const [lo, hi] = this.#o.quietMs
        await sleep(lo + this.#rand() * (hi - lo))
        const f = await this.#inject(kind)
        const r = await this.#recover(n, f)
        this.#faults.push(r)
        this.#o.log(formatFault(r))
        if (Date.now() - lastPeriodic >= PERIODIC_SAMPLE_MS) {
          lastPeriodic = Date.now()
          await this.#sample(WITNESS, 'periodic')
        }
      }
      await sleep(3000)
      for (const w of ['server', ...HOSTS] as const) await this.#sample(w, 'end')
      const seconds = Math.round((Date.now() - this.#t0) / 1000)
      return {
        seed: this.#o.seed,
        seconds,
        faults: this.#faults,
        samples: this.#samples,
        ...scanLogs(this.#lab.dir),
        labDir: this.#lab.dir,
      }
    } finally {
      for (const h of HOSTS) this.#ping[h].stop()
      this.#stream.stop()
      for (const slot of this.#agents.values()) await slot.agent.stop()
      if (this.#srv) {
        this.#serverProc.stop()
        await this.#srv.stop()
      }
    }
  }

  async #setUp(): Promise<void> {
    this.#srv = await startServer(this.#lab, { leaseMin: LEASE_MIN_SEC, extra: ['--metrics', METRICS] })
    this.#serverProc = this.#srv.proc
    for (const h of HOSTS) await this.#startAgent(h)
    await waitPeer(this.#agents.get('desktop')!.agent, 'laptop', this.#ula('laptop'), 30_000)
    await waitPeer(this.#agents.get('laptop')!.agent, 'desktop', this.#ula('desktop'), 30_000)
    this.#ping.desktop.start(this.#ula('laptop'))
    this.#ping.laptop.start(this.#ula('desktop'))
    const t = Date.now()
    await waitFor('pings both ways', async () => this.#pingsSince(t), 30_000, POLL_MS)
    await this.#stream.start(this.#ula('desktop'))
    await waitFor('the TCP stream', async () => this.#stream.bytes > 0, 30_000, POLL_MS)
    await waitFor(
      'records right',
      async () => {
        const wrong = await this.#recordsWrong()
        if (wrong) throw new Error(wrong)
        return true
      },
      30_000,
      POLL_MS,
    )
    this.#o.log(`set up: desktop ${this.#ula('desktop')}, laptop ${this.#ula('laptop')}`)
  }

  async #startAgent(h: Host, reuseState?: string): Promise<void> {
    const agent = await startTunnelAgent(this.#lab, this.#srv, h, [], reuseState)
    const s = (await agent.status()) as unknown as { identity: { label: string }; udp: { port: number } }
    this.#agents.set(h, { agent, label: s.identity.label, udpPort: s.udp.port })
  }

  #pingsSince(t: number): boolean {
    return HOSTS.every((h) => this.#ping[h].firstAfter(t) !== undefined)
  }

  // --- faults -------------------------------------------------------------------------------------------------

  #siteOf(h: Host): string {
    return this.#lab.siteOf(h)!
  }

  async #inject(kind: FaultKind): Promise<FaultRun> {
    const lab = this.#lab
    const notes: string[] = []
    const links = ['desktop', 'laptop', 'home', this.#siteOf('laptop'), 'server']
    const sites = ['home', this.#siteOf('laptop')]
    const start = Date.now()
    let target = ''
    switch (kind) {
      case 'move': {
        target = 'laptop'
        const to = this.#siteOf('laptop') === 'cafe' ? 'library' : 'cafe'
        await lab.move('laptop', to)
        notes.push(`to ${to}`)
        break
      }
      case 'gateway-restart':
        target = pick(this.#rand, sites)
        await lab.restartGateway(target)
        break
      case 'public-ip': {
        target = pick(this.#rand, sites)
        const inUse = new Set(lab.sites().map((x) => lab.publicIpOf(x)))
        let addr = SPARE_IPS[this.#spare++ % SPARE_IPS.length]!
        while (inUse.has(addr)) addr = SPARE_IPS[this.#spare++ % SPARE_IPS.length]!
        await lab.setPublicIp(target, addr)
        notes.push(`now ${addr}`)
        break
      }
      case 'loss':
        target = pick(this.#rand, links)
        await lab.loss(target, LOSS_PERCENT)
        await sleep(LOSS_MS)
        await lab.loss(target, 0)
        break
      case 'cut':
        target = pick(this.#rand, links)
        await lab.cut(target)
        await sleep(CUT_MS)
        await lab.restore(target)
        break
      case 'server-term':
      case 'server-kill': {
        target = 'server'
        await this.#sample('server', 'before restart')
        const pid = this.#serverProc.pid
        killGroup(pid, kind === 'server-term' ? 'SIGTERM' : 'SIGKILL')
        const t = Date.now()
        if (!(await waitGone(pid, 10_000))) {
          notes.push('still running 10 s after SIGTERM: SIGKILL')
          killGroup(pid, 'SIGKILL')
          await waitGone(pid, 5000)
        } else if (kind === 'server-term') notes.push(`exited ${Date.now() - t} ms after SIGTERM`)
        this.#serverProc = lab.spawn(
          'server',
          serverArgv(this.#srv.data, { leaseMin: LEASE_MIN_SEC, extra: ['--metrics', METRICS] }),
          { logName: 'autotunnel-server' },
        )
        break
      }
      case 'agent-kill': {
        target = KILLED
        const slot = this.#agents.get(KILLED)!
        await this.#sample(KILLED, 'before kill')
        killGroup(slot.agent.proc.pid, 'SIGKILL')
        await waitGone(slot.agent.proc.pid, 5000)
        break
      }
    }
    return { kind, target, start, end: Date.now(), notes }
  }

  /** After a restarted agent is up: pings towards and from its new ULA, and a new stream once the path works. */
  async #afterAgentRestart(): Promise<void> {
    const old = this.#agents.get(KILLED)!
    await this.#startAgent(KILLED, old.agent.state)
    this.#ping.desktop.start(this.#ula('laptop'))
    this.#ping.laptop.start(this.#ula('desktop'))
  }

  async #recover(n: number, f: FaultRun): Promise<FaultResult> {
    const deadline = f.end + this.#o.recoveryTimeoutMs
    const notes = [...f.notes]
    let tcp: TcpOutcome = 'survived'
    let recordsAt: number | undefined
    let streamOk = false
    let restarted = false
    const generation = this.#stream.generation
    if (f.kind === 'agent-kill') {
      tcp = 'ended by design'
      try {
        await this.#afterAgentRestart()
        restarted = true
      } catch (e) {
        notes.push(`agent restart: ${(e as Error).message.split('\n')[0]}`)
      }
    }
    for (;;) {
      const now = Date.now()
      const pingOk = this.#pingsSince(f.end)
      if (recordsAt === undefined) {
        const wrong = await this.#recordsWrong().catch((e: Error) => e.message)
        if (wrong === null) recordsAt = Date.now()
        else if (now > deadline) notes.push(`records: ${wrong}`)
      }
      if (f.kind === 'agent-kill') {
        if (restarted && this.#stream.generation === generation && pingOk)
          await this.#stream.start(this.#ula('desktop'))
        streamOk = this.#stream.generation !== generation && this.#stream.bytes > 0
      } else {
        if (this.#stream.closed && this.#stream.generation === generation) {
          tcp = 'broken'
          const c = this.#stream.closes.at(-1)
          notes.push(`stream closed: ${c?.side} ${c?.reason}`)
          if (pingOk) await this.#stream.start(this.#ula('desktop'))
        }
        streamOk = !this.#stream.closed && this.#stream.grewSince(f.end)
      }
      if (pingOk && recordsAt !== undefined && streamOk) break
      if (now > deadline) {
        if (!pingOk) notes.push('ping did not resume')
        if (!streamOk) notes.push('stream did not deliver')
        break
      }
      await sleep(POLL_MS)
    }
    const until = Date.now()
    const resumes = HOSTS.map((h) => this.#ping[h].firstAfter(f.end))
    const recovered = resumes.every((r) => r !== undefined) && recordsAt !== undefined && streamOk
    if (f.kind === 'server-term' || f.kind === 'server-kill') await this.#sample('server', 'after restart')
    if (f.kind === 'agent-kill' && restarted) await this.#sample(KILLED, 'after restart')
    return {
      n,
      kind: f.kind,
      target: f.target,
      atSec: this.#sec(f.start),
      injectMs: f.end - f.start,
      pingGapMs: Math.max(...HOSTS.map((h) => this.#ping[h].longestGap(f.start, until))),
      pingResumeMs: resumes.every((r) => r !== undefined) ? Math.max(...resumes.map((r) => r! - f.end)) : null,
      recordsRightMs: recordsAt === undefined ? null : recordsAt - f.end,
      tcp,
      tcpStallMs: this.#stream.longestStall(f.start, until),
      recovered,
      notes,
    }
  }

  // --- records ------------------------------------------------------------------------------------------------

  /** null when both hosts' records at the server match the lab, else what is wrong. */
  async #recordsWrong(): Promise<string | null> {
    for (const h of HOSTS) {
      const w = await this.#hostRecordsWrong(h)
      if (w) return `${h}: ${w}`
    }
    return null
  }

  /**
   * A host's records are right when its name has its current ULA, its SRV target's A record is its site's public
   * address, and the SRV port is one its site's gateway forwards (miniupnpd's DNAT rule) to the host's address and
   * the agent's UDP port.
   */
  async #hostRecordsWrong(h: Host): Promise<string | null> {
    const lab = this.#lab
    const slot = this.#agents.get(h)!
    const target = `${slot.label}.${DOMAIN}`.toLowerCase()
    const aaaa = await dig(lab, this.#srv, `${h}.${DOMAIN}`, 'AAAA')
    if (aaaa.join() !== `${h}.${DOMAIN}. IN AAAA ${slot.agent.ula}`) return `AAAA ${aaaa.join() || 'none'}`
    const site = this.#siteOf(h)
    const ip = lab.publicIpOf(site)
    const a = await dig(lab, this.#srv, target, 'A')
    if (a.join() !== `${target}. IN A ${ip}`) return `A ${a.join() || 'none'} (want ${ip})`
    const srv = await dig(lab, this.#srv, `_autotunnel._udp.${h}.${DOMAIN}`, 'SRV')
    const m = new RegExp(`^\\S+ IN SRV 0 0 (\\d+) ${target.replace(/\./g, '\\.')}\\.$`).exec(srv.join())
    if (!m) return `SRV ${srv.join() || 'none'}`
    const rules = await lab.exec(site, ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd'])
    const to = `dnat ip to ${lab.addressOf(h)}:${slot.udpPort}`
    const lines = rules.stdout.split('\n')
    if (!lines.some((l) => l.includes(`dport ${m[1]} `) && l.trimEnd().endsWith(to)))
      return `SRV port ${m[1]} not forwarded (${to}) by ${site}: ${
        lines
          .filter((l) => l.includes('dnat'))
          .join(' | ')
          .trim() || 'no rules'
      }`
    return null
  }

  // --- process figures ----------------------------------------------------------------------------------------

  async #sample(who: 'server' | Host, when: string): Promise<void> {
    try {
      let pid: number
      let timers: number | null = null
      let handles: number | null = null
      let heapUsedBytes: number | null = null
      if (who === 'server') {
        pid = this.#serverProc.pid
        const r = await this.#lab.exec('server', ['curl', '-s', '-m', '2', `http://${METRICS}/metrics`])
        const metric = (name: string) => {
          const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(r.stdout)
          return m ? Number(m[1]) : null
        }
        timers = metric('nodejs_active_timers')
        handles = metric('nodejs_active_resources')
        heapUsedBytes = metric('nodejs_heap_used_bytes')
      } else {
        const s = (await this.#agents.get(who)!.agent.status()) as unknown as {
          pid: number
          process: { activeResources: Record<string, number>; heapUsedBytes: number }
        }
        pid = s.pid
        heapUsedBytes = s.process.heapUsedBytes
        timers = s.process.activeResources.Timeout ?? 0
        handles = Object.values(s.process.activeResources).reduce((a, b) => a + b, 0)
      }
      const status = readFileSync(`/proc/${pid}/status`, 'utf8')
      const rssKb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0)
      this.#samples.push({
        who,
        pid,
        when,
        atSec: this.#sec(),
        rssBytes: rssKb * 1024,
        openFds: readdirSync(`/proc/${pid}/fd`).length,
        timers,
        handles,
        heapUsedBytes,
      })
    } catch (e) {
      this.#o.log(`sample ${who} ${when}: ${(e as Error).message}`)
    }
  }
}

/** Markers Node prints for an uncaught exception or unhandled rejection, and its closing version line. */
const CRASH = /Uncaught|triggerUncaughtException|UnhandledPromiseRejection|unhandled rejection|^Node\.js v\d+/im

export function scanLogs(dir: string): { crashLines: string[]; errorLines: Record<string, number> } {
  const crashLines: string[] = []
  const errorLines: Record<string, number> = {}
  for (const f of readdirSync(dir).filter((x) => /^(agent-|autotunnel-server).*\.log$/.test(x))) {
    const text = readFileSync(`${dir}/${f}`, 'utf8')
    for (const l of text.split('\n')) {
      if (CRASH.test(l)) crashLines.push(`${f}: ${l.slice(0, 300)}`)
      if (/"level":(50|60)\b/.test(l)) errorLines[f] = (errorLines[f] ?? 0) + 1
    }
  }
  return { crashLines, errorLines }
}

export function formatFault(r: FaultResult): string {
  const ms = (x: number | null) => (x === null ? 'never' : `${(x / 1000).toFixed(1)} s`)
  return [
    `#${r.n} ${r.kind} ${r.target} at ${r.atSec} s:`,
    `ping gap ${ms(r.pingGapMs)}, resumed ${ms(r.pingResumeMs)},`,
    `records right ${ms(r.recordsRightMs)}, tcp ${r.tcp} (stall ${ms(r.tcpStallMs)})`,
    r.recovered ? '' : 'NOT RECOVERED',
    r.notes.length ? `[${r.notes.join('; ')}]` : '',
  ]
    .filter(Boolean)
    .join(' ')
}
