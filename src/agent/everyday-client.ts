// `autotunnel ping|ip|whois` (src/cli/ping.ts, ip.ts, whois.ts): clients of the running agent's control socket
// (the agent's side is everyday.ts). Output is one line per fact for people, or JSON with --json: one document for
// ip and whois; for ping one object per reply as it arrives, then a summary (NDJSON).
import { ControlError, controlRequest, controlSocketPath } from './control.js'
import { PING_DEFAULT_TIMEOUT_MS, PING_MAX_TIMEOUT_MS, type PingAnswer } from './everyday.js'
import { defaultStateDir } from './state-dir.js'

/** --state, else the default every agent command shares (state-dir.ts: $AUTOTUNNEL_STATE_DIR, else by user). */
export function stateDirOf(state: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return state || defaultStateDir(env)
}

/** A control request whose "no agent" error says where we looked and how to point elsewhere. */
async function ask(state: string | undefined, cmd: string, args: Record<string, unknown>, timeoutMs?: number) {
  const dir = stateDirOf(state)
  try {
    return await controlRequest(controlSocketPath(dir), cmd, args, timeoutMs)
  } catch (e) {
    if (e instanceof ControlError && e.code === 'ENOAGENT')
      throw new ControlError(
        `no agent is running with state directory ${dir} (start one with \`autotunnel up\`, or give --state DIR)`,
        'ENOAGENT',
      )
    if (e instanceof ControlError && e.code === 'EUNKNOWN')
      throw new ControlError(`the running agent is older and does not know \`${cmd}\`: restart it`, 'EUNKNOWN')
    throw e
  }
}

function intOpt(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def
  const n = Number(v)
  if (!Number.isFinite(n) || n < min || n > max)
    throw new ControlError(`--${name} must be from ${min} to ${max}`, 'EUSAGE')
  return n
}

export interface PingOptions {
  readonly state?: string
  readonly count?: string
  readonly interval?: string
  readonly timeout?: string
  readonly json?: boolean
}

/** One line per ping, as `tailscale ping` prints them. */
export function formatPing(a: PingAnswer, seq: number): string {
  if (!a.reply) return `no reply from ${a.host} (${a.ula}), seq ${seq}: ${a.reason} [path ${a.path}]`
  const setup = a.setupMs === null ? '' : ` (tunnel set up in ${a.setupMs.toFixed(1)} ms)`
  return `pong from ${a.host} (${a.ula}) via ${a.path} ${a.endpoint ?? '-'}, seq ${seq}, in ${a.rttMs.toFixed(2)} ms${setup}`
}

/** The last line of `ping --json` (NDJSON): what the human summary line says. */
export interface PingSummary {
  readonly type: 'summary'
  readonly host: string
  readonly ula: string | null
  readonly transmitted: number
  readonly received: number
  readonly lost: number
  /** min/avg/max round-trip time of the answered pings (null when none was). */
  readonly rttMs: { readonly min: number; readonly avg: number; readonly max: number } | null
}

/** How runPing reaches the agent and its output (the defaults: the control socket and stdout; tests give fakes). */
export interface PingIo {
  readonly ask: (host: string, timeoutMs: number) => Promise<PingAnswer>
  readonly write: (s: string) => void
  readonly sleep: (ms: number) => Promise<void>
}

/**
 * `autotunnel ping HOST`: -c pings, --interval s apart, each waiting --timeout s. Each reply is printed as it
 * arrives: a line for people, or with --json one JSON object per line (NDJSON: `{"type":"reply","seq":N,...}`, then
 * one `{"type":"summary",...}`), so a script sees each reply at once. Exit 0 when any was answered, 1 when none was
 * (the host is down or unreachable), and the reason. Figures are kept as running totals: -c 1000000 holds no list.
 */
export async function runPing(host: string, o: PingOptions, io?: PingIo): Promise<void> {
  const count = intOpt('count', o.count, 3, 1, 1_000_000)
  const intervalMs = intOpt('interval', o.interval, 1, 0, 3600) * 1000
  const timeoutMs = Math.round(
    intOpt('timeout', o.timeout, PING_DEFAULT_TIMEOUT_MS / 1000, 0.001, PING_MAX_TIMEOUT_MS / 1000) * 1000,
  )
  const {
    ask: askPing,
    write,
    sleep,
  } = io ?? {
    ask: async (h: string, t: number) =>
      (await ask(o.state, 'ping', { host: h, timeoutMs: t }, t + 5000)) as PingAnswer,
    write: (s: string) => void process.stdout.write(s),
    sleep: (ms: number) => new Promise<void>((r) => setTimeout(r, ms)),
  }
  let first: PingAnswer | undefined
  let received = 0
  let sum = 0
  let min = Number.POSITIVE_INFINITY
  let max = 0
  for (let seq = 1; seq <= count; seq++) {
    const started = performance.now()
    const a = await askPing(host, timeoutMs)
    first ??= a
    if (a.reply) {
      received++
      sum += a.rttMs
      min = Math.min(min, a.rttMs)
      max = Math.max(max, a.rttMs)
    }
    write(o.json ? `${JSON.stringify({ type: 'reply', seq, ...a })}\n` : `${formatPing(a, seq)}\n`)
    const wait = intervalMs - (performance.now() - started)
    if (seq < count && wait > 0) await sleep(wait)
  }
  const name = first?.host ?? host
  if (o.json) {
    const summary: PingSummary = {
      type: 'summary',
      host: name,
      ula: first?.ula ?? null,
      transmitted: count,
      received,
      lost: count - received,
      rttMs: received ? { min, avg: sum / received, max } : null,
    }
    write(`${JSON.stringify(summary)}\n`)
  } else if (received === 0) {
    write(`${name} is down or unreachable: no reply to ${count} ping(s)\n`)
  } else {
    write(
      `${count} sent, ${received} answered, ${count - received} lost; ` +
        `rtt min/avg/max ${min.toFixed(2)}/${(sum / received).toFixed(2)}/${max.toFixed(2)} ms\n`,
    )
  }
  if (received === 0) process.exitCode = 1
}

interface IpAnswer {
  host: string
  fqdn: string
  ula: string
  self: boolean
  endpoint: string | null
}

/** `autotunnel ip [HOST]`: the ULA alone (for `ssh $(autotunnel ip desktop)`), or everything with --json. */
export async function runIp(host: string | undefined, o: { state?: string; json?: boolean }): Promise<void> {
  const r = (await ask(o.state, 'ip', host ? { host } : {})) as IpAnswer
  process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : `${r.ula}\n`)
}

interface WhoisAnswer {
  address: string
  matched: string
  host: string
  fqdn: string
  account: { user: string; domain: string }
  self: boolean
  ula: string | null
  keys: { alg: string; fingerprint: string }[]
  path: string | null
  endpoint: string | null
  lastHandshake: string | null
  auth: string | null
}

export function formatWhois(r: WhoisAnswer): string {
  const lines = [
    `host        ${r.fqdn}${r.self ? '  (this host)' : ''}`,
    `account     ${r.account.user} (${r.account.domain})`,
    `ULA         ${r.ula ?? '-'}${r.matched === 'ula' ? '' : `  (${r.address} matched its ${r.matched})`}`,
    ...(r.keys.length ? r.keys.map((k) => `key         ${k.alg} ${k.fingerprint}`) : ['key         none published']),
  ]
  if (!r.self)
    lines.push(
      `path        ${r.path ?? '-'} ${r.endpoint ?? ''}`.trimEnd(),
      `handshake   ${r.lastHandshake ?? 'never'}${r.auth ? `  (auth ${r.auth})` : ''}`,
    )
  return `${lines.join('\n')}\n`
}

/** `autotunnel whois ADDRESS`. */
export async function runWhois(address: string, o: { state?: string; json?: boolean }): Promise<void> {
  const r = (await ask(o.state, 'whois', { address })) as WhoisAnswer
  process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : formatWhois(r))
}
