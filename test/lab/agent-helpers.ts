// Helpers for the agent's lab scenarios: the real `autotunnel server` in the lab's server namespace with an
// account, `autotunnel up` in a host namespace, status over the control socket, `dig -y` from the server.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Lab, LabProcess } from '../../lab/index.js'
import { controlRequest, controlSocketPath } from '../../src/agent/control.js'

export const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url))
export const ZONE = 'members.example'
export const SERVER_ADDR = '198.51.100.10'

export interface LabServer {
  readonly data: string
  readonly keyFile: string
  readonly key: { keyName: string; secret: string; algorithm: string }
  readonly proc: LabProcess
  readonly digKey: string
  /** dig -y argument for bob's password-derived key. */
  readonly bobDigKey: string
  stop(): Promise<void>
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs = 50,
): Promise<T> {
  const deadline = performance.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v
    } catch (e) {
      last = e
    }
    if (performance.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`,
      )
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

export const BOB_PASSWORD = 'correct horse battery staple'

/**
 * `autotunnel account add USER --json` on the server host into the SQLite store at `data`; the key JSON (what
 * `up --key-file` reads) is also written, 0600, to DATA/USER.key.json.
 */
export async function addAccountKeyFile(
  lab: Lab,
  data: string,
  user: string,
): Promise<{ key: { keyName: string; secret: string; algorithm: string }; keyFile: string }> {
  const add = await lab.execOk('server', [
    'node',
    MAIN,
    'account',
    'add',
    user,
    '--data',
    data,
    '--zone',
    ZONE,
    '--json',
  ])
  const keyFile = join(data, `${user}.key.json`)
  await lab.execOk('server', ['sh', '-c', `umask 077; cat > ${keyFile}`], { input: add.stdout })
  return { key: JSON.parse(add.stdout) as { keyName: string; secret: string; algorithm: string }, keyFile }
}

/**
 * Creates the store with users alice (random key, written to DATA/alice.key.json) and bob (key derived from
 * BOB_PASSWORD), then runs the server on SERVER_ADDR:53 (UDP/TCP) and :853 (TLS).
 */
export async function startServer(lab: Lab, opts: ServerOptions = {}): Promise<LabServer> {
  const data = await mkdtemp(join(tmpdir(), 'at-srv-'))
  const bob = await lab.execOk(
    'server',
    ['node', MAIN, 'account', 'add', 'bob', '--data', data, '--zone', ZONE, '--password-stdin', '--json'],
    { input: `${BOB_PASSWORD}\n` },
  )
  const bobKey = JSON.parse(bob.stdout) as { keyName: string; secret: string; algorithm: string }
  const { key, keyFile } = await addAccountKeyFile(lab, data, 'alice')
  const proc = lab.spawn('server', serverArgv(data, opts), { logName: 'autotunnel-server' })
  const stop = async (): Promise<void> => {
    proc.stop()
    await rm(data, { recursive: true, force: true })
  }
  await waitFor(
    'the server to answer SOA over UDP and TLS',
    async () => {
      const [udp, tls] = await Promise.all(
        [[], ['+tls', '-p', '853']].map((extra) =>
          lab.exec('server', ['dig', `@${SERVER_ADDR}`, ...extra, '+short', '+time=1', '+tries=1', ZONE, 'SOA']),
        ),
      )
      return [udp, tls].every((r) => r!.stdout.startsWith(`ns.${ZONE}. `))
    },
    20_000,
    200,
  ).catch(async (e: Error) => {
    const log = await readFile(proc.log, 'utf8').catch(() => '')
    await stop()
    throw new Error(`${e.message}\n${log}`)
  })
  return {
    data,
    keyFile,
    key,
    proc,
    digKey: `${key.algorithm}:${key.keyName}:${key.secret}`,
    bobDigKey: `${bobKey.algorithm}:${bobKey.keyName}:${bobKey.secret}`,
    stop,
  }
}

export interface ServerOptions {
  leaseMin?: number
  extra?: string[]
  /** Listen on 0.0.0.0:53 and 0.0.0.0:853, as a VPS user would, instead of SERVER_ADDR (never with --advertise here). */
  wildcard?: boolean
}

/** argv of `autotunnel server` on SERVER_ADDR:53 (UDP/TCP) and :853 (TLS) (or the wildcard) with the store in `data`. */
export function serverArgv(data: string, opts: ServerOptions = {}): string[] {
  const at = opts.wildcard ? '0.0.0.0' : SERVER_ADDR
  return [
    'node',
    MAIN,
    'server',
    '--zone',
    ZONE,
    '--data',
    data,
    '--listen',
    `${at}:53`,
    '--tls-listen',
    `${at}:853`,
    '--lease-min',
    String(opts.leaseMin ?? 2),
    ...(opts.extra ?? []),
  ]
}

/** argv of `autotunnel up` as alice (key file) or bob (--password-stdin) on `host` with state directory `state`. */
export function agentArgv(srv: LabServer, host: string, state: string, extra: string[] = [], asBob = false): string[] {
  return [
    'node',
    MAIN,
    'up',
    '--server',
    `${SERVER_ADDR}:53`,
    '--domain',
    `${asBob ? 'bob' : 'alice'}.${ZONE}`,
    '--hostname',
    host,
    '--state',
    state,
    ...(asBob ? ['--password-stdin'] : ['--key-file', srv.keyFile]),
    '--ca',
    join(srv.data, 'tls.crt'),
    '--no-tun',
    '--log-level',
    'debug',
    ...extra,
  ]
}

export interface LabAgent {
  readonly host: string
  readonly state: string
  readonly proc: LabProcess
  status(): Promise<AgentStatusView>
  /** Stops the agent (SIGTERM, then SIGKILL) and removes its state directory. */
  stop(): Promise<void>
}

export interface AgentStatusView {
  identity: { ula: string; label: string }
  reachability: { endpoint: { address: string; port: number }; nat: string } | null
  portMapping: { protocol: string; external: { address: string; port: number }; lifetimeLeftSec: number } | null
  published: { state: string; records: { text: string }[]; updates: number; via: string | null }
  udp: { rxDatagrams: number; lastFrom: string }
  watchers: { name: string; via: string; records: string[] }[]
}

/**
 * `autotunnel up` in `host` as alice (key file), or as bob with `--password-stdin` when `asBob`; `state` reuses a
 * state directory (an agent restarted after a crash), otherwise a new one is made.
 */
export async function startAgent(
  lab: Lab,
  srv: LabServer,
  host: string,
  extra: string[] = [],
  asBob = false,
  reuseState?: string,
  /** argv put before the agent's (e.g. setpriv dropping root, test/lab/everyday.test.ts). */
  wrap: readonly string[] = [],
): Promise<LabAgent> {
  const state = reuseState ?? (await mkdtemp(join(tmpdir(), `at-agent-${host}-`)))
  const argv = agentArgv(srv, host, state, extra, asBob)
  const proc = lab.spawn(
    host,
    asBob ? ['sh', '-c', 'printf "%s\\n" "$AT_PW" | exec "$@"', 'sh', ...argv] : [...wrap, ...argv],
    {
      logName: `agent-${host}`,
      ...(asBob ? { env: { ...process.env, AT_PW: BOB_PASSWORD } } : {}),
    },
  )
  const status = async (): Promise<AgentStatusView> =>
    (await controlRequest(controlSocketPath(state), 'status', {}, 3000)) as AgentStatusView
  const a = {
    host,
    state,
    proc,
    status,
    stop: async () => {
      proc.stop()
      await new Promise((r) => setTimeout(r, 200))
      await rm(state, { recursive: true, force: true })
    },
  }
  await waitFor('the agent control socket', () => status().then(() => true), 15_000, 100).catch(async (e: Error) => {
    const log = await agentLog(a)
    await a.stop()
    throw new Error(`${e.message}\n${log}`)
  })
  return a
}

export async function agentLog(a: LabAgent): Promise<string> {
  return readFile(a.proc.log, 'utf8').catch(() => '')
}

/** The last `n` lines of an agent's log that match `re`, each cut to 300 characters: a failed test's diagnostics. */
export async function agentLogLines(a: LabAgent, re: RegExp, n: number): Promise<string> {
  return (await agentLog(a))
    .split('\n')
    .filter((l) => re.test(l))
    .slice(-n)
    .map((l) => l.slice(0, 300))
    .join('\n')
}

/** `dig -y` from the server namespace: answer lines without the TTL, names in lower case, TSIG lines dropped. */
/** dig -y from the server namespace; names are folded to lower case for comparisons unless `keepCase` (the demo shows them as stored). */
export async function dig(
  lab: Lab,
  srv: LabServer,
  name: string,
  type: string,
  key = srv.digKey,
  keepCase = false,
): Promise<string[]> {
  const r = await lab.execOk('server', [
    'dig',
    '-y',
    key,
    `@${SERVER_ADDR}`,
    '+noall',
    '+answer',
    '+time=1',
    '+tries=1',
    name,
    type,
  ])
  return r.stdout
    .split('\n')
    .filter((l) => l && !l.startsWith(';') && !/\sTSIG\s/.test(l))
    .map((l) =>
      l
        .split(/\s+/)
        .filter((_, i) => i !== 1)
        .map((w) => (w.endsWith('.') && !keepCase ? w.toLowerCase() : w))
        .join(' '),
    )
}

/** The DNAT rules miniupnpd installed on a site's gateway for `host`'s port. */
export async function gatewayMapsTo(lab: Lab, site: string, hostAddr: string, port: number): Promise<boolean> {
  const r = await lab.exec(site, ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd'])
  return r.stdout.includes(`dnat ip to ${hostAddr}:${port}`)
}
