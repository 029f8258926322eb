// Synchronous teardown of a run, so it also works from signal and `exit` handlers: stop the recorded processes
// (their whole process groups), kill anything else still living in the run's namespaces, delete the namespaces
// (which deletes every veth and bridge in them), then remove the run directory unless logs are to be kept.
import { existsSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { removeEtcOverlays } from './etc.js'
import { pidAlive, runSync, sleepSync } from './sh.js'
import type { RunState } from './state.js'

function signalGroup(pid: number, sig: NodeJS.Signals): void {
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

/** Stops one process group: SIGTERM, SIGKILL after `graceMs`; returns once the process is gone (or after 2 s). */
export function stopProcess(pid: number, graceMs = 1500): void {
  signalGroup(pid, graceMs > 0 ? 'SIGTERM' : 'SIGKILL')
  let deadline = Date.now() + graceMs
  while (pidAlive(pid) && Date.now() < deadline) sleepSync(5)
  if (!pidAlive(pid)) return
  signalGroup(pid, 'SIGKILL')
  deadline = Date.now() + 2000
  while (pidAlive(pid) && Date.now() < deadline) sleepSync(5)
}

/** How long teardown waits after SIGTERM before SIGKILL (miniupnpd takes 2 s to exit on SIGTERM). */
const TEARDOWN_GRACE_MS = 300

export function liveNamespaces(): Set<string> {
  try {
    return new Set(readdirSync('/run/netns'))
  } catch {
    return new Set()
  }
}

export function teardown(s: RunState, keepLogs = false): void {
  for (const p of s.procs) signalGroup(p.pid, 'SIGTERM')
  const deadline = Date.now() + TEARDOWN_GRACE_MS
  while (s.procs.some((p) => pidAlive(p.pid)) && Date.now() < deadline) sleepSync(10)
  for (const p of s.procs) if (pidAlive(p.pid)) signalGroup(p.pid, 'SIGKILL')
  const present = liveNamespaces()
  const ours = Object.values(s.nodes)
    .map((n) => n.ns)
    .filter((ns) => present.has(ns))
  for (const ns of ours) {
    const pids = runSync(['ip', 'netns', 'pids', ns]).stdout.split(/\s+/).filter(Boolean).map(Number)
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
  if (ours.length) runSync(['ip', '-force', '-batch', '-'], `${ours.map((ns) => `netns del ${ns}`).join('\n')}\n`)
  removeEtcOverlays(s)
  if (!existsSync(s.dir)) return
  if (keepLogs) {
    const f = join(s.dir, 'state.json')
    if (existsSync(f)) renameSync(f, join(s.dir, 'state.down.json'))
  } else {
    rmSync(s.dir, { recursive: true, force: true })
  }
}
