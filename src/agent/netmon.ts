// Network change monitor (RFC 6281 section 5.1): the agent must learn within a second that an interface, an address
// or a route changed, because each change can mean a new NAT gateway, a new external address or a new port mapping.
//
// Events come from `ip -o monitor link address route` (rtnetlink, via iproute2: no native addon needed). Each event
// only schedules a snapshot (`ip -j addr`, `ip -j route show default`) after a short debounce, so a burst of netlink
// messages from one move costs one snapshot; listeners hear only when the snapshot differs from the previous one.
// A slow periodic snapshot covers a monitor that died or missed something; the monitor is restarted with back-off.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
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

interface IpAddrJson {
  ifname?: string
  flags?: string[]
  link_type?: string
  address?: string
  addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[]
}
interface IpRouteJson {
  dst?: string
  gateway?: string
  dev?: string
  metric?: number
}

/** Builds a NetState from `ip -j addr` and `ip -j -4 route show default` output (exported for tests). */
export function parseNetState(addrJson: string, routeJson: string, ignore: readonly string[] = []): NetState {
  const links = (JSON.parse(addrJson || '[]') as IpAddrJson[]).filter(
    (l) => l.ifname && l.link_type !== 'loopback' && !ignore.includes(l.ifname),
  )
  const addrs: NetAddress[] = []
  for (const l of links) {
    if (!l.flags?.includes('UP')) continue
    for (const a of l.addr_info ?? []) {
      if (a.scope !== 'global' || !a.local || (a.family !== 'inet' && a.family !== 'inet6')) continue
      addrs.push({ ifname: l.ifname!, family: a.family, address: a.local, prefixLen: a.prefixlen ?? 0 })
    }
  }
  const routes = (JSON.parse(routeJson || '[]') as IpRouteJson[])
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
    const child = spawn('ip', ['-o', 'monitor', 'link', 'address', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] })
    this.#child = child
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
    this.#child?.kill('SIGTERM')
    this.#child = undefined
  }
}

export interface NetMonitorOptions {
  /** Quiet time after a netlink event before the snapshot. @default 50 */
  readonly debounceMs?: number
  /** Snapshot period when no event arrives. @default 10000 */
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
    this.#read = deps.read ?? ipReader()
    this.#events = deps.events ?? new IpMonitor(deps)
    this.#debounceMs = opts.debounceMs ?? 50
    this.#pollMs = opts.pollMs ?? 10_000
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
