// A run's persisted state: one directory per run holding state.json, the daemons' configs and every log, so later
// `autotunnel lab ...` calls (other processes) and `lab down` find what `lab up` built.
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ResolvedTopology } from './topology.js'

export type NodeRole = 'core' | 'internet' | 'gateway' | 'carrier' | 'host'
export type LossDirection = 'both' | 'up' | 'down'

export interface LinkState {
  lossPercent: number
  /** `up` drops traffic leaving the host or site, `down` traffic towards it. */
  lossDirection: LossDirection
  cut: boolean
}

export interface ProcState {
  pid: number
  name: string
  ns: string
  log: string
}

export interface HostState {
  /** Current site, or null for a host directly on the internet. */
  site: string | null
  address: string
  /** Stable per-host number naming its port on the gateway (`<tag>-h<index>`). */
  index: number
}

export interface RunState {
  version: 1
  name: string
  /** Interface-name prefix of this run, unique among live runs (4 chars). */
  tag: string
  dir: string
  createdAt: string
  /** Process that owns the run (API use); null for a run made by `autotunnel lab up`. */
  ownerPid: number | null
  topology: ResolvedTopology
  nodes: Record<string, { ns: string; role: NodeRole }>
  /** Device in the core for each uplink (an internet host or a site). */
  coreDevs: Record<string, string>
  hosts: Record<string, HostState>
  /**
   * Per site: its public address, and the second its miniupnpd last started in (the daemon's BOOTID.UPNP.ORG;
   * see Lab.#startMiniupnpd).
   */
  sites: Record<string, { publicIp: string; miniupnpdStartSec?: number }>
  links: Record<string, LinkState>
  procs: ProcState[]
}

export const NS_PREFIX = 'atl-'
const RUN_NAME_RE = /^[a-z0-9][a-z0-9-]{0,19}$/

export function validRunName(name: string): boolean {
  return RUN_NAME_RE.test(name)
}

export function runsRoot(): string {
  return process.env.AUTOTUNNEL_LAB_DIR ?? fileURLToPath(new URL('../../lab/runs', import.meta.url))
}

export function runDir(name: string): string {
  return join(runsRoot(), name)
}

export function nsName(run: string, node: string): string {
  return `${NS_PREFIX}${run}-${node}`
}

export function newRunName(): string {
  return `r${randomBytes(3).toString('hex')}`
}

/** A tag not used by any run that has a state file: 'l' + 3 base-36 characters. */
export function newTag(): string {
  const used = new Set(listRuns().map((r) => r.tag))
  for (;;) {
    const t = `l${(randomBytes(2).readUInt16BE(0) % 46656).toString(36).padStart(3, '0')}`
    if (!used.has(t)) return t
  }
}

export function saveState(s: RunState): void {
  mkdirSync(s.dir, { recursive: true })
  const tmp = join(s.dir, `.state.${process.pid}.json`)
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`)
  renameSync(tmp, join(s.dir, 'state.json'))
}

export function loadState(name: string): RunState | null {
  const f = join(runDir(name), 'state.json')
  if (!existsSync(f)) return null
  return JSON.parse(readFileSync(f, 'utf8')) as RunState
}

export function listRuns(): RunState[] {
  const root = runsRoot()
  if (!existsSync(root)) return []
  const out: RunState[] = []
  for (const d of readdirSync(root)) {
    try {
      const s = loadState(d)
      if (s) out.push(s)
    } catch {
      // a half-written or foreign directory is not a run
    }
  }
  return out
}
