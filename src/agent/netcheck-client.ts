// `autotunnel netcheck` (src/cli/netcheck.ts): the servers from the running agent (or the options), then the
// measurements of netcheck.ts, printed.
import { ControlError, controlRequest, controlSocketPath } from './control.js'
import { stateDirOf } from './everyday-client.js'
import { type AgentServers, formatNetcheck, netcheck, resolveSpecs } from './netcheck.js'

export async function runNetcheck(o: {
  state?: string
  stun: string[]
  relay: string[]
  server?: string
  json?: boolean
}): Promise<void> {
  let fromAgent: AgentServers | undefined
  try {
    fromAgent = (await controlRequest(controlSocketPath(stateDirOf(o.state)), 'servers', {}, 10_000)) as AgentServers
  } catch (e) {
    // No agent (or an older one): the options alone.
    if (!(e instanceof ControlError)) throw e
  }
  const dns = o.server ? (await resolveSpecs([o.server], 53))[0] : undefined
  const servers: AgentServers = {
    dns: dns ? { host: dns.address, port: dns.port } : (fromAgent?.dns ?? null),
    zone: fromAgent?.zone ?? null,
    stun: o.stun.length ? await resolveSpecs(o.stun, 3478) : (fromAgent?.stun ?? []),
    relays: o.relay.length ? await resolveSpecs(o.relay, 3478) : (fromAgent?.relays ?? []),
  }
  const r = await netcheck(servers)
  process.stdout.write(o.json ? `${JSON.stringify(r, null, 2)}\n` : formatNetcheck(r))
}
