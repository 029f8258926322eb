// Process-level guards of the lab: teardown of owned runs on SIGINT/SIGTERM/exit, the tools check, topology loading.
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { run } from './sh.js'
import { standardTopology, type Topology } from './topology.js'

export interface Teardownable {
  downSync(keepLogs: boolean): void
}

/** Tears down owned labs on SIGINT/SIGTERM/exit; one handler set per process. */
const live = new Set<Teardownable>()
const onSignal = (sig: NodeJS.Signals): void => {
  for (const l of live) l.downSync(true)
  process.exit(sig === 'SIGINT' ? 130 : 143)
}
const onExit = (): void => {
  for (const l of live) l.downSync(true)
}
export function track(l: Teardownable): void {
  if (live.size === 0) {
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    process.on('exit', onExit)
  }
  live.add(l)
}
export function untrack(l: Teardownable): void {
  if (!live.delete(l) || live.size > 0) return
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
  process.off('exit', onExit)
}

/** Debian packages scripts/deps.sh installs; the lab runs it once when one of these commands is missing. */
const TOOLS = ['ip', 'nft', 'sysctl', 'ss', 'conntrack', 'turnserver', 'miniupnpd', 'socat', 'ping']

export async function ensureTools(): Promise<void> {
  const missing = async () => {
    const r = await run(['sh', '-c', TOOLS.map((t) => `command -v ${t} >/dev/null || echo ${t}`).join('; ')])
    return r.stdout.split(/\s+/).filter(Boolean)
  }
  if ((await missing()).length === 0) return
  const deps = fileURLToPath(new URL('../../scripts/deps.sh', import.meta.url))
  if (existsSync(deps)) await run([deps], { timeoutMs: 600_000 })
  const still = await missing()
  if (still.length) throw new Error(`missing commands ${still.join(', ')}; run scripts/deps.sh`)
}

export function loadTopology(t: 'standard' | Topology | string | undefined): Topology {
  if (t === undefined || t === 'standard') return standardTopology()
  if (typeof t === 'string') return JSON.parse(readFileSync(t, 'utf8')) as Topology
  return t
}
