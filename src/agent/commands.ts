// The commands that talk to a running agent over its control socket (control.ts): `status`, `down`, `browse`,
// `revoke` (which works without an agent too). `up` itself is run.ts.
import { UpdateClient } from '../dns/client/update.js'
import { SystemClock } from '../io/clock.js'
import { jsonLogger } from '../io/log.js'
import { ControlError, controlRequest, controlSocketPath } from './control.js'
import { loadIdentity } from './identity.js'
import { intOption, loadKey, parseHostPort, UsageError } from './run.js'
import { formatStatus } from './status-format.js'

export async function runStatus(o: { state: string; json?: boolean }): Promise<void> {
  try {
    const s = await controlRequest(controlSocketPath(o.state), 'status')
    process.stdout.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s as Record<string, unknown>))
  } catch (e) {
    if (!(e instanceof ControlError) || e.code !== 'ENOAGENT') throw e
    const identity = await loadIdentity(o.state)
    const s = { running: false, identity: identity ?? null }
    process.stdout.write(
      o.json
        ? `${JSON.stringify(s, null, 2)}\n`
        : `agent: not running (${o.state})\n${identity ? `last identity: ${identity.ula} ${identity.label}\n` : ''}`,
    )
    process.exitCode = 3
  }
}

export async function runDown(o: { state: string; timeout: string }): Promise<void> {
  const path = controlSocketPath(o.state)
  const timeoutMs = intOption('timeout', o.timeout, 1, 3600) * 1000
  const r = (await controlRequest(path, 'down', {}, timeoutMs)) as DownResult
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      await controlRequest(path, 'status', {}, 1000)
    } catch (e) {
      if (e instanceof ControlError && (e.code === 'ENOAGENT' || e.code === 'ECLOSED')) break
    }
    if (Date.now() > deadline) throw new Error('the agent did not stop in time')
    await new Promise((res) => setTimeout(res, 50))
  }
  process.stdout.write(downMessage(r))
  if (!r.recordsDeleted) process.exitCode = 1
}

/** The control socket's answer to `down` (src/agent/agent.ts ShutdownResult; hadMapping absent from older agents). */
export interface DownResult {
  readonly recordsDeleted: boolean
  readonly hadMapping?: boolean
  readonly mappingDeleted: boolean
  readonly errors: readonly string[]
}

/** What `autotunnel down` prints: whether the records and the port mapping were deleted, and any errors. */
export function downMessage(r: DownResult): string {
  const mapping = r.mappingDeleted
    ? 'deleted'
    : r.hadMapping === false
      ? 'none (there was no mapping to delete)'
      : r.hadMapping
        ? 'NOT deleted (it expires with its lifetime)'
        : 'not deleted, or there was none'
  return (
    `agent stopped: records ${r.recordsDeleted ? 'deleted' : 'NOT deleted (they expire with their lease)'}, ` +
    `port mapping ${mapping}\n${r.errors.map((e) => `  error: ${e}\n`).join('')}`
  )
}

export async function runBrowse(type: string | undefined, o: { state: string; json?: boolean }): Promise<void> {
  const r = (await controlRequest(controlSocketPath(o.state), 'browse', type ? { type } : {})) as {
    type: string
    instances: { name: string; host: string; port: number; txt: string[]; addresses: string[] }[]
  }[]
  if (o.json) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`)
    return
  }
  for (const t of r) {
    process.stdout.write(`${t.type}\n`)
    for (const i of t.instances)
      process.stdout.write(
        `  ${i.name}  ${i.host}:${i.port}  ${i.addresses.join(' ') || '-'}${i.txt.length ? `  ${i.txt.join(' ')}` : ''}\n`,
      )
  }
  if (r.length === 0) process.stdout.write('no services\n')
}

/**
 * `autotunnel revoke HOST --state DIR`: through the running agent's control socket (it holds the account key and
 * the update client); without one, directly with --server, --domain and --key-file.
 */
export async function runRevoke(
  host: string,
  o: { state: string; server?: string; domain?: string; keyFile?: string; json?: boolean },
): Promise<void> {
  let r: import('./revoke.js').RevokeResult
  try {
    r = (await controlRequest(controlSocketPath(o.state), 'revoke', { host }, 20_000)) as typeof r
  } catch (e) {
    if (!(e instanceof ControlError) || e.code !== 'ENOAGENT') throw e
    if (!o.server || !o.domain || !o.keyFile)
      throw new UsageError(`no agent runs in ${o.state}: give --server, --domain and --key-file to revoke directly`)
    const domain = o.domain.toLowerCase().replace(/\.$/, '')
    const key = await loadKey({ keyFile: o.keyFile }, domain)
    const clock = new SystemClock()
    const updates = new UpdateClient(
      { clock, log: jsonLogger({ level: 'warn' }) },
      { bootstrap: parseHostPort(o.server, 53), domain, key, tls: undefined },
    )
    try {
      const { revokeHost } = await import('./revoke.js')
      r = await revokeHost(
        { query: updates, sink: updates },
        { domain, zone: domain.split('.').slice(1).join('.'), host },
      )
    } finally {
      updates.close()
    }
  }
  if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`)
  else {
    process.stdout.write(`revoked ${r.host} (via ${r.via}): deleted\n`)
    for (const d of r.deleted) process.stdout.write(`  ${d}\n`)
  }
}
