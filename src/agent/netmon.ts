// Network change monitor (RFC 6281 section 5.1): the agent must learn within a second that an interface, an address
// or a route changed, because each change can mean a new NAT gateway, a new external address or a new port mapping.
//
// Events come from `ip -o monitor link address route` (rtnetlink, via iproute2: no native addon needed). Each event
// only schedules a snapshot (getifaddrs(3) and /proc/net/route; `ip -j` where there is no /proc) after a short debounce, so a burst of netlink
// messages from one move costs one snapshot; listeners hear only when the snapshot differs from the previous one.
// A slow periodic snapshot covers a monitor that died or missed something; the monitor is restarted with back-off.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os'
import { promisify } from 'node:util'
import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'

const execFileP = promisify(execFile)

export interface NetAddress {
  readonly ifname: string
  readonly family: 'inet' | 'inet6'
  readonly address: string
  readonly prefixLen: number
}

export interface PrimaryInterface {
  readonly ifname: string
  readonly mac: string
  /** The interface's first global IPv4 address, if any. */
  readonly ipv4: string | undefined
  /** The default IPv4 route's next hop (the NAT gateway to ask for a mapping), if any. */
  readonly gateway: string | undefined
}

export interface NetState {
  /** The interface of the IPv4 default route, else the first up interface with a global address. */
  readonly primary: PrimaryInterface | undefined
  /** Global-scope addresses of every interface except loopback and the agent's own TUN. */
  readonly addrs: readonly NetAddress[]
}

export type NetReader = () => Promise<NetState>

/** A source of "something changed" pings; the real one runs `ip monitor`. */
export interface NetEventSource {
  start(onEvent: () => void): void
  stop(): void
}

const RFC1918 = [
  [0x0a000000, 8],
  [0xac100000, 12],
  [0xc0a80000, 16],
] as const

function ipv4ToInt(a: string): number | undefined {
  const p = a.split('.')
  if (p.length !== 4) return undefined
  let n = 0
  for (const x of p) {
    if (!/^\d{1,3}$/.test(x) || Number(x) > 255) return undefined
    n = n * 256 + Number(x)
  }
  return n >>> 0
}

/** RFC 1918 private IPv4 (the test RFC 6281 section 4.1 uses to decide whether to ask for a mapping). */
export function isRfc1918(address: string): boolean {
  const n = ipv4ToInt(address)
  if (n === undefined) return false
  return RFC1918.some(([net, len]) => (n & (~0 << (32 - len))) >>> 0 === net)
}

export interface IpAddrJson {
  ifname?: string
  flags?: string[]
  link_type?: string
  address?: string
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[]
}
export interface IpRouteJson {
  dst?: string
  gateway?: string
  dev?: string
  metric?: number
}

/** Builds a NetState from `ip -j addr` and `ip -j -4 route show default` output (exported for tests). */
export function parseNetState(addrJson: string, routeJson: string, ignore: readonly string[] = []): NetState {
  return netState(JSON.parse(addrJson || '[]') as IpAddrJson[], JSON.parse(routeJson || '[]') as IpRouteJson[], ignore)
}

function netState(all: readonly IpAddrJson[], allRoutes: readonly IpRouteJson[], ignore: readonly string[]): NetState {
  const links = all.filter((l) => l.ifname && l.link_type !== 'loopback' && !ignore.includes(l.ifname))
  const addrs: NetAddress[] = []
  for (const l of links) {
    if (!l.flags?.includes('UP')) continue
    for (const a of l.addr_info ?? []) {
      if (a.scope !== 'global' || !a.local || (a.family !== 'inet' && a.family !== 'inet6')) continue
      addrs.push({ ifname: l.ifname!, family: a.family, address: a.local, prefixLen: a.prefixlen ?? 0 })
    }
  }
  const routes = allRoutes
    .filter((r) => r.dst === 'default' && r.dev && !ignore.includes(r.dev))
    .sort((a, b) => (a.metric ?? 0) - (b.metric ?? 0))
  const route = routes[0]
  const ifname = route?.dev ?? addrs.find((a) => a.family === 'inet')?.ifname ?? addrs[0]?.ifname
  const link = links.find((l) => l.ifname === ifname)
  const primary: PrimaryInterface | undefined =
    ifname && link
      ? {
          ifname,
          mac: link.address ?? '',
          ipv4: addrs.find((a) => a.ifname === ifname && a.family === 'inet')?.address,
          gateway: route?.gateway,
        }
      : undefined
  return { primary, addrs }
}

/** Reads the current state with iproute2 (inside whatever network namespace the agent runs in). */
export function ipReader(ignore: readonly string[] = []): NetReader {
  return async () => {
    const [addr, route] = await Promise.all([
      execFileP('ip', ['-j', 'addr', 'show']),
      execFileP('ip', ['-j', '-4', 'route', 'show', 'default']),
    ])
    return parseNetState(addr.stdout, route.stdout, ignore)
  }
}

/**
 * The scope the kernel gives an address configured without one, as `ip addr` reports it: host for 127/8 and ::1,
 * link for fe80::/10, global otherwise (ULAs included).
 */
function scopeOf(i: NetworkInterfaceInfo): string {
  if (i.family === 'IPv4') return i.address.startsWith('127.') ? 'host' : 'global'
  if (i.address === '::1') return 'host'
  return /^fe[89ab]/i.test(i.address) ? 'link' : 'global'
}

/**
 * The interfaces as `ip -j addr` shows them, from getifaddrs(3) (os.networkInterfaces()). libuv lists only
 * interfaces that are up and running, and only those with an address, which is all a NetState uses.
 */
export function linksFromInterfaces(ifs: NodeJS.Dict<NetworkInterfaceInfo[]>): IpAddrJson[] {
  return Object.entries(ifs).map(([ifname, list = []]) => ({
    ifname,
    flags: ['UP'],
    link_type: list.some((i) => i.internal) ? 'loopback' : 'ether',
    address: list.find((i) => i.family === 'IPv4')?.mac ?? list[0]?.mac,
    addr_info: list.map((i) => ({
      family: i.family === 'IPv4' ? 'inet' : 'inet6',
      local: i.address,
      prefixlen: Number(i.cidr?.split('/')[1] ?? 0),
      scope: scopeOf(i),
    })),
  }))
}

/** A little-endian hex IPv4 address from /proc/net/route ("010200C0") in dotted form ("192.0.2.1"). */
function procRouteAddr(hex: string): string {
  const n = Number.parseInt(hex, 16)
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join('.')
}

const RTF_UP = 0x1
const RTF_GATEWAY = 0x2

/** The IPv4 default routes of the main table, as `ip -j -4 route show default` shows them, from /proc/net/route. */
export function routesFromProc(text: string): IpRouteJson[] {
  const out: IpRouteJson[] = []
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f.length < 8) continue
    const [dev, dst, gw, flags, , , metric, mask] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ]
    const fl = Number.parseInt(flags, 16)
    if (dst !== '00000000' || mask !== '00000000' || !(fl & RTF_UP)) continue
    out.push({
      dst: 'default',
      dev,
      metric: Number(metric),
      ...(fl & RTF_GATEWAY ? { gateway: procRouteAddr(gw) } : {}),
    })
  }
  return out
}

/**
 * Reads the current state without starting a process: getifaddrs(3) and /proc/net/route, both of the network
 * namespace the agent runs in. Same result as ipReader (the test compares them on this machine) for about a
 * hundredth of the CPU: two `ip` processes cost the agent ~15 ms of CPU per snapshot, which at one snapshot every
 * 10 s was a third of an idle agent's CPU time (bench/idle).
 */
export function procReader(ignore: readonly string[] = []): NetReader {
  return async () =>
    netState(
      linksFromInterfaces(networkInterfaces()),
      routesFromProc(await readFile('/proc/net/route', 'utf8')),
      ignore,
    )
}

/** procReader where /proc/net/route exists (Linux), else ipReader. */
export function systemReader(ignore: readonly string[] = []): NetReader {
  return existsSync('/proc/net/route') ? procReader(ignore) : ipReader(ignore)
}

/**
 * `ip monitor` in a shell that ends it when our end of its stdin closes. An agent that is SIGKILLed (or crashes)
 * cannot stop its children, and `ip monitor` writes nothing while the network is quiet, so it never met the
 * SIGPIPE that would end it: every killed agent left one behind. The kernel closes our pipe when we die; `read`
 * then returns and kills the monitor. The shell itself waits for the monitor, so a monitor that exits on its own
 * still ends the shell and we restart both. (`<&3`: sh gives a background list /dev/null for stdin unless told.)
 */
const MONITOR_SCRIPT =
  'exec 3<&0; ip -o monitor link address route & m=$!; { read _ <&3; kill $m 2>/dev/null; } & wait $m'

/** `ip -o monitor link address route` as an event source, restarted with back-off if it exits. */
export class IpMonitor implements NetEventSource {
  readonly #clock: Clock
  readonly #log: Logger
  #child: ChildProcess | undefined
  #restart: TimerHandle | undefined
  #backoffMs = 250
  #stopped = true

  constructor(deps: { clock: Clock; log: Logger }) {
    this.#clock = deps.clock
    this.#log = deps.log
  }
  start(onEvent: () => void): void {
    this.#stopped = false
    const child = spawn('sh', ['-c', MONITOR_SCRIPT], { stdio: ['pipe', 'pipe', 'ignore'] })
    this.#child = child
    child.stdin?.on('error', () => {})
    child.stdout?.on('data', () => {
      this.#backoffMs = 250
      onEvent()
    })
    child.on('error', (e) => this.#log.warn('netmon.monitor_error', { error: e.message }))
    child.on('exit', (code) => {
      if (this.#stopped) return
      this.#log.warn('netmon.monitor_exit', { code, restartInMs: this.#backoffMs })
      this.#restart = this.#clock.setTimeout(() => this.start(onEvent), this.#backoffMs)
      this.#backoffMs = Math.min(this.#backoffMs * 2, 30_000)
      onEvent()
    })
  }
  stop(): void {
    this.#stopped = true
    this.#clock.clearTimeout(this.#restart)
    this.#child?.stdin?.end()
    this.#child?.kill('SIGTERM')
    this.#child = undefined
  }
}

export interface NetMonitorOptions {
  /** Quiet time after a netlink event before the snapshot. @default 50 */
  readonly debounceMs?: number
  /**
   * Snapshot period when no event arrives: only a safety net, since `ip monitor` reports every link, address and
   * route change within the debounce (and a monitor that exits triggers a snapshot and is restarted). 10 s woke an
   * idle agent 6 times a minute to find nothing changed (issue 17's idle cost). @default 60000
   */
  readonly pollMs?: number
}

export type NetChangeListener = (now: NetState, before: NetState) => void

/**
 * Keeps the current NetState and tells listeners when it changes.
 * `start()` resolves with the first snapshot; `snapshot()` forces one (the caller suspects a change).
 */
export class NetMonitor {
  readonly #clock: Clock
  readonly #log: Logger
  readonly #read: NetReader
  readonly #events: NetEventSource
  readonly #debounceMs: number
  readonly #pollMs: number
  readonly #listeners: NetChangeListener[] = []
  #state: NetState = { primary: undefined, addrs: [] }
  #key = ''
  #debounce: TimerHandle | undefined
  #poll: TimerHandle | undefined
  #running = false
  #reading: Promise<void> | undefined
  #again = false
  changes = 0

  constructor(
    deps: { clock: Clock; log: Logger; read?: NetReader; events?: NetEventSource },
    opts: NetMonitorOptions = {},
  ) {
    this.#clock = deps.clock
    this.#log = deps.log
    this.#read = deps.read ?? systemReader()
    this.#events = deps.events ?? new IpMonitor(deps)
    this.#debounceMs = opts.debounceMs ?? 50
    this.#pollMs = opts.pollMs ?? 60_000
  }

  get state(): NetState {
    return this.#state
  }
  onChange(fn: NetChangeListener): void {
    this.#listeners.push(fn)
  }

  async start(): Promise<NetState> {
    this.#running = true
    this.#events.start(() => this.#schedule())
    await this.snapshot()
    return this.#state
  }

  stop(): void {
    this.#running = false
    this.#events.stop()
    this.#clock.clearTimeout(this.#debounce)
    this.#clock.clearTimeout(this.#poll)
  }

  #schedule(): void {
    if (!this.#running) return
    this.#clock.clearTimeout(this.#debounce)
    this.#debounce = this.#clock.setTimeout(() => void this.snapshot(), this.#debounceMs)
  }

  /** Reads the state now (coalescing with a read in flight) and notifies listeners if it changed. */
  async snapshot(): Promise<void> {
    if (this.#reading) {
      this.#again = true
      return this.#reading
    }
    this.#reading = this.#readOnce().finally(() => {
      this.#reading = undefined
    })
    await this.#reading
    if (this.#again && this.#running) {
      this.#again = false
      await this.snapshot()
    }
  }

  async #readOnce(): Promise<void> {
    this.#clock.clearTimeout(this.#poll)
    try {
      const next = await this.#read()
      const key = JSON.stringify(next)
      if (key !== this.#key) {
        const before = this.#state
        this.#state = next
        const first = this.#key === ''
        this.#key = key
        if (!first) {
          this.changes++
          this.#log.info('netmon.change', { primary: next.primary, addrs: next.addrs.map((a) => a.address) })
          for (const fn of this.#listeners) fn(next, before)
        }
      }
    } catch (e) {
      this.#log.warn('netmon.read_failed', { error: (e as Error).message })
    }
    if (this.#running) this.#poll = this.#clock.setTimeout(() => void this.snapshot(), this.#pollMs)
  }
}
