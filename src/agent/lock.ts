// The locks `autotunnel up` takes before it touches anything (issue 13 finding 4): a second `up` must neither
// overwrite the running agent's identity.json nor remove its control socket, and a second agent on the same machine
// would share the first one's EUI-64 (identity.ts), hence its SRV target label, and overwrite its records.
//
// * State lock: flock(2) on STATE/agent.lock (through koffi, as the TUN code calls ioctl). The kernel drops it when
//   the process dies, so a crash leaves no stale lock; the file itself stays (it holds only the holder's pid).
// * Machine lock: a listening unix socket in the abstract namespace, "\0autotunnel-agent". Abstract sockets belong
//   to the network namespace and vanish with the process: one per machine (a host's network stack, which is what
//   its interfaces and hence the EUI-64 belong to), and in the lab one per host namespace, so the lab's agents,
//   each in its own namespace, do not refuse each other. A client connecting to it reads one JSON line
//   ({pid, state, stopping}), so a refused start can say which agent holds it, and a start right after a stop
//   waits for the stopping agent to finish instead of failing.
// Order: the state lock first (atomic), then the machine socket (binding it is atomic too); whoever loses a race
// sees the other and backs off, having changed nothing.
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { join, resolve } from 'node:path'

export const MACHINE_LOCK_NAME = '\0autotunnel-agent'
export const STATE_LOCK_FILE = 'agent.lock'
/** How long a start waits for an agent that is stopping (deleting its records, its mapping) to finish. */
export const STOPPING_WAIT_MS = 30_000
const POLL_MS = 100
const ASK_TIMEOUT_MS = 1000
const LOCK_EX = 2
const LOCK_NB = 4
const LOCK_UN = 8

/** Why `up` refused to start; the message says what to do. */
export class AgentLockError extends Error {
  override readonly name = 'AgentLockError'
}

export interface HolderInfo {
  readonly pid: number
  readonly state: string
  readonly stopping: boolean
}

export interface AgentLocks {
  /** Marks this agent as stopping (a new start then waits for it instead of refusing). */
  setStopping(): void
  /** Releases the state lock, then the machine lock. */
  release(): Promise<void>
}

type Flock = (fd: number, op: number) => number

function loadFlock(): Flock {
  const koffi = createRequire(import.meta.url)('koffi') as {
    load(lib: string): { func(sig: string): (...a: unknown[]) => number }
  }
  return koffi.load('libc.so.6').func('int flock(int fd, int operation)') as Flock
}

/** The holder of the machine lock in this network namespace, or undefined when there is none. */
export function askMachineLock(name = MACHINE_LOCK_NAME): Promise<HolderInfo | undefined> {
  return new Promise((res) => {
    const c = net.connect(name)
    let buf = ''
    const done = (v: HolderInfo | undefined): void => {
      clearTimeout(timer)
      c.destroy()
      res(v)
    }
    const timer = setTimeout(() => done(undefined), ASK_TIMEOUT_MS)
    c.setEncoding('utf8')
    c.on('data', (d: string) => {
      buf += d
      if (!buf.includes('\n')) return
      try {
        const j = JSON.parse(buf.slice(0, buf.indexOf('\n'))) as HolderInfo
        done({ pid: Number(j.pid), state: String(j.state), stopping: j.stopping === true })
      } catch {
        done({ pid: 0, state: '?', stopping: false })
      }
    })
    // Connected but closed without a line: something else holds the name.
    c.on('end', () => done({ pid: 0, state: '?', stopping: false }))
    c.on('error', () => done(undefined))
  })
}

function listenMachineLock(name: string, info: () => HolderInfo): Promise<net.Server | undefined> {
  return new Promise((res, rej) => {
    const srv = net.createServer((s) => {
      s.on('error', () => {})
      s.end(`${JSON.stringify(info())}\n`)
    })
    srv.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? res(undefined) : rej(e)))
    srv.listen(name, () => res(srv))
  })
}

function describe(h: HolderInfo): string {
  return h.pid ? `pid ${h.pid}, --state ${h.state}` : `the name ${JSON.stringify(MACHINE_LOCK_NAME.slice(1))} is taken`
}

/**
 * Takes the state lock of `stateDir` (which must exist) and, unless another agent holds it and `allowSecond` is
 * set, the machine lock. Throws AgentLockError when another agent runs with this state directory, or on this
 * machine without `allowSecond`; nothing is written then.
 */
export async function acquireAgentLocks(
  stateDir: string,
  opts: { allowSecond?: boolean; machineLockName?: string; stoppingWaitMs?: number; log?: (m: string) => void } = {},
): Promise<AgentLocks> {
  const name = opts.machineLockName ?? MACHINE_LOCK_NAME
  const state = resolve(stateDir)
  const flock = loadFlock()
  const deadline = Date.now() + (opts.stoppingWaitMs ?? STOPPING_WAIT_MS)
  let waitLogged = false
  let stopping = false
  for (;;) {
    const holder = await askMachineLock(name)
    if (holder?.stopping && Date.now() < deadline) {
      if (!waitLogged) opts.log?.(`waiting for the agent that is stopping (${describe(holder)})`)
      waitLogged = true
      await new Promise((r) => setTimeout(r, POLL_MS))
      continue
    }
    if (holder && holder.state === state)
      throw new AgentLockError(
        `an agent is already running with --state ${state} (pid ${holder.pid}); stop it first (autotunnel down --state ${state})`,
      )
    if (holder && !opts.allowSecond)
      throw new AgentLockError(
        `another agent is already running on this machine (${describe(holder)}): a second one would have the same ` +
          'interface identifier (EUI-64) and overwrite its records; stop it first, or pass --allow-second-agent ' +
          'if this is really wanted (then give it another --port, --tun and --hostname, and --system-resolver off)',
      )
    const fd = openSync(join(state, STATE_LOCK_FILE), 'a+', 0o600)
    if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      closeSync(fd)
      if (holder?.stopping) throw new AgentLockError(`the agent stopping with --state ${state} did not finish in time`)
      throw new AgentLockError(
        `an agent is already running with --state ${state} (see its pid in ${join(state, STATE_LOCK_FILE)}); ` +
          `stop it first (autotunnel down --state ${state})`,
      )
    }
    const info = (): HolderInfo => ({ pid: process.pid, state, stopping })
    let server: net.Server | undefined
    if (!holder) {
      server = await listenMachineLock(name, info).catch((e) => {
        flock(fd, LOCK_UN)
        closeSync(fd)
        throw e
      })
      if (!server) {
        // Another start won the race for the machine lock: look again.
        flock(fd, LOCK_UN)
        closeSync(fd)
        continue
      }
    }
    ftruncateSync(fd, 0)
    writeSync(fd, `${process.pid}\n`)
    let released = false
    return {
      setStopping: () => {
        stopping = true
      },
      release: async () => {
        if (released) return
        released = true
        flock(fd, LOCK_UN)
        closeSync(fd)
        if (server) await new Promise<void>((r) => server.close(() => r()))
      },
    }
  }
}
