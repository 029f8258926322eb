// `autotunnel ping|ip|whois` (src/cli/ping.ts, ip.ts, whois.ts): clients of the running agent's control socket
// (the agent's side is everyday.ts). Output is one line per fact for people, or one JSON document with --json.
import { ControlError, controlRequest, controlSocketPath } from './control.js'
import { PING_DEFAULT_TIMEOUT_MS, PING_MAX_TIMEOUT_MS, type PingAnswer } from './everyday.js'

/** Where the agent runs when --state is not given (the state directory `install-service` sets up). */
export const DEFAULT_STATE_DIR = '/var/lib/autotunnel'

/** --state, else $AUTOTUNNEL_STATE, else DEFAULT_STATE_DIR. */
export function stateDirOf(state: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return state || env.AUTOTUNNEL_STATE || DEFAULT_STATE_DIR
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

/**
 * `autotunnel ping HOST`: -c pings, --interval s apart, each waiting --timeout s. Exit 0 when any was answered,
 * 1 when none was (the host is down or unreachable), and the reason.
 */
export async function runPing(host: string, o: PingOptions): Promise<void> {
  const count = intOpt('count', o.count, 3, 1, 1_000_000)
  const intervalMs = intOpt('interval', o.interval, 1, 0, 3600) * 1000
  const timeoutMs = Math.round(
    intOpt('timeout', o.timeout, PING_DEFAULT_TIMEOUT_MS / 1000, 0.001, PING_MAX_TIMEOUT_MS / 1000) * 1000,
  )
  const answers: PingAnswer[] = []
  for (let seq = 1; seq <= count; seq++) {
    const started = performance.now()
    const a = (await ask(o.state, 'ping', { host, timeoutMs }, timeoutMs + 5000)) as PingAnswer
    answers.push(a)
    if (!o.json) process.stdout.write(`${formatPing(a, seq)}\n`)
    const wait = intervalMs - (performance.now() - started)
    if (seq < count && wait > 0) await new Promise((r) => setTimeout(r, wait))
  }
  const rtts = answers.flatMap((a) => (a.reply ? [a.rttMs] : []))
  const first = answers[0]
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ host: first?.host ?? host, ula: first?.ula ?? null, transmitted: count, received: rtts.length, answers }, null, 2)}\n`,
    )
  } else if (rtts.length === 0) {
    process.stdout.write(`${first?.host ?? host} is down or unreachable: no reply to ${count} ping(s)\n`)
  } else {
    const avg = rtts.reduce((s, x) => s + x, 0) / rtts.length
    process.stdout.write(
      `${count} sent, ${rtts.length} answered, ${count - rtts.length} lost; ` +
        `rtt min/avg/max ${Math.min(...rtts).toFixed(2)}/${avg.toFixed(2)}/${Math.max(...rtts).toFixed(2)} ms\n`,
    )
  }
  if (rtts.length === 0) process.exitCode = 1
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
