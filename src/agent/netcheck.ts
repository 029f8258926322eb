// `autotunnel netcheck` (src/cli/netcheck.ts): what kind of network this host is on, measured from this process
// (like `tailscale netcheck`), with the servers the running agent uses (its `servers` control command: the DNS
// service, STUN servers and TURN relays it found by SRV) unless given on the command line.
//   - NAT behaviour: RFC 5780 mapping and filtering tests against the STUN servers (src/traversal/nat-behaviour.ts)
//   - port mapping: which of PCP (ANNOUNCE), NAT-PMP (external address) and UPnP IGD (SSDP + GetExternalIPAddress)
//     the default gateway answers, asked at once with src/portmap's clients; none of them creates a mapping
//   - public IPv4 (STUN, and what the gateway says), global IPv6 addresses (and their STUN answer if a STUN server
//     has an IPv6 address), times to the DNS service (a UDP SOA query) and to each relay (a STUN Binding)
import dgram from 'node:dgram'
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import { decodeMessage, emptyMessage, encodeMessage } from '../dns/wire/message.js'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import { SystemClock } from '../io/clock.js'
import { UdpSocket } from '../io/datagram.js'
import { splitHostPort } from '../io/host-port.js'
import { nullLogger } from '../io/log.js'
import { SystemRandom } from '../io/random.js'
import { isPrivateIPv4 } from '../portmap/ip.js'
import { NatPmpClient } from '../portmap/natpmp.js'
import { LinuxNetworkInfo } from '../portmap/netinfo.js'
import { PcpClient } from '../portmap/pcp.js'
import { SystemPortmapSockets } from '../portmap/types.js'
import { UpnpClient } from '../portmap/upnp.js'
import { type BehaviourDeps, bindingOnce, discoverNatBehaviour, type NatBehaviour } from '../traversal/nat-behaviour.js'
import type { AddrPort } from '../traversal/stun.js'

/** What the agent's `servers` command answers (run.ts). */
export interface AgentServers {
  readonly dns: { host: string; port: number } | null
  readonly zone: string | null
  readonly stun: AddrPort[]
  readonly relays: AddrPort[]
}

export interface ProtocolAnswer {
  readonly answers: boolean
  readonly ms: number | null
  readonly externalAddress?: string
  readonly error?: string
}

export interface NetcheckReport {
  readonly at: string
  readonly network: { interface: string | null; address: string | null; gateway: string | null; private: boolean }
  readonly nat: (NatBehaviour & { readonly server: AddrPort | null }) | null
  readonly natNote?: string
  readonly portMapping: {
    readonly pcp: ProtocolAnswer
    readonly natpmp: ProtocolAnswer
    readonly upnp: ProtocolAnswer
  } | null
  readonly publicIPv4: string | null
  readonly ipv6: { readonly addresses: string[]; readonly reflexive: string | null; readonly note: string }
  readonly dns: { readonly server: string; readonly ms: number | null; readonly error?: string } | null
  readonly relays: { readonly server: string; readonly ms: number | null }[]
}

const PORTMAP_TRIES = 3
const round = (ms: number): number => Math.round(ms * 100) / 100

async function timed(fn: () => Promise<string | undefined>): Promise<ProtocolAnswer> {
  const t0 = performance.now()
  try {
    const ext = await fn()
    return { answers: true, ms: round(performance.now() - t0), ...(ext ? { externalAddress: ext } : {}) }
  } catch (e) {
    return { answers: false, ms: null, error: (e as Error).message }
  }
}

/** PCP, NAT-PMP and UPnP asked at once; each client closed after. */
async function portMapping(gateway: string, address: string): Promise<NonNullable<NetcheckReport['portMapping']>> {
  const clock = new SystemClock()
  const random = new SystemRandom()
  const base = { clock, log: nullLogger, sockets: new SystemPortmapSockets() }
  const retry = { initialMs: 250, maxTries: PORTMAP_TRIES }
  const pcp = new PcpClient({ ...base, random }, { gateway, internalAddress: address, retry })
  const natpmp = new NatPmpClient(base, { gateway, retry })
  const upnp = new UpnpClient({ ...base, random }, { gateway, interfaceAddress: address, retry, httpTimeoutMs: 2000 })
  try {
    const [a, b, c] = await Promise.all([
      timed(async () => {
        await pcp.probe({ maxTries: PORTMAP_TRIES })
        return undefined
      }),
      timed(async () => (await natpmp.externalAddress({ maxTries: PORTMAP_TRIES })).address),
      timed(async () => (await upnp.externalAddress({ maxTries: PORTMAP_TRIES })) || undefined),
    ])
    return { pcp: a, natpmp: b, upnp: c }
  } finally {
    await Promise.allSettled([pcp.close(), natpmp.close(), upnp.close()])
  }
}

/** A UDP SOA query for the zone (or the root) to the DNS service: the best of three round trips. */
async function dnsTime(server: { host: string; port: number }, zone: string | null) {
  const address = isIP(server.host) ? server.host : (await lookup(server.host)).address
  const label = `${address}:${server.port}`
  const s = dgram.createSocket(isIP(address) === 6 ? 'udp6' : 'udp4')
  let best: number | null = null
  let error: string | undefined
  try {
    for (let i = 0; i < 3; i++) {
      const id = (Math.random() * 0xffff) | 0
      const q = encodeMessage(
        emptyMessage({ id, questions: [{ name: zone ?? '.', type: RRType.SOA, class: RRClass.IN }] }),
      )
      const t0 = performance.now()
      const ok = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => done(false), 2000)
        const onMsg = (m: Buffer): void => {
          try {
            if (decodeMessage(m).id === id) done(true)
          } catch {
            // not a DNS answer: keep waiting
          }
        }
        const done = (v: boolean): void => {
          clearTimeout(timer)
          s.off('message', onMsg)
          resolve(v)
        }
        s.on('message', onMsg)
        s.send(q, server.port, address, (e) => {
          if (e) done(false)
        })
      })
      if (ok) best = Math.min(best ?? Number.POSITIVE_INFINITY, performance.now() - t0)
      else error = 'no answer within 2 s'
    }
  } finally {
    s.close()
  }
  return { server: label, ms: best === null ? null : round(best), ...(best === null && error ? { error } : {}) }
}

/** Global IPv6 addresses of this host (not ULA fc00::/7, not link-local, not loopback). */
export function globalIPv6(ifaces = networkInterfaces()): string[] {
  const out: string[] = []
  for (const addrs of Object.values(ifaces))
    for (const a of addrs ?? [])
      if (a.family === 'IPv6' && !a.internal && !/^(fe[89ab]|f[cd])/i.test(a.address)) out.push(a.address)
  return out
}

export async function netcheck(servers: AgentServers): Promise<NetcheckReport> {
  const clock = new SystemClock()
  const random = new SystemRandom()
  const deps: BehaviourDeps = { clock, random, socket: () => new UdpSocket() }
  const net = await new LinuxNetworkInfo().primary()
  const priv = net ? isPrivateIPv4(net.address) : false
  const stun4 = servers.stun.filter((s) => isIP(s.address) === 4)
  const stun6 = servers.stun.filter((s) => isIP(s.address) === 6)
  const [nat, pm, dns, relays] = await Promise.all([
    stun4.length ? discoverNatBehaviour(deps, stun4) : Promise.resolve(undefined),
    net?.gateway && priv ? portMapping(net.gateway, net.address) : Promise.resolve(null),
    servers.dns
      ? dnsTime(servers.dns, servers.zone).catch((e: Error) => ({
          server: servers.dns?.host ?? '',
          ms: null,
          error: e.message,
        }))
      : Promise.resolve(null),
    Promise.all(
      servers.relays.map(async (r) => ({
        server: `${r.address}:${r.port}`,
        ms: (await bindingOnce(deps, r))?.rttMs ?? null,
      })),
    ),
  ])
  const v6 = globalIPv6()
  let reflexive6: string | null = null
  if (v6.length && stun6[0]) {
    const r = await bindingOnce({ ...deps, socket: () => new UdpSocket({ type: 'udp6' }) }, stun6[0])
    reflexive6 = r ? r.mapped.address : null
  }
  const gatewaySays = pm?.natpmp.externalAddress ?? pm?.upnp.externalAddress
  return {
    at: new Date().toISOString(),
    network: {
      interface: net?.ifname ?? null,
      address: net?.address ?? null,
      gateway: net?.gateway ?? null,
      private: priv,
    },
    nat: nat ? { ...nat, server: stun4[0] ?? null } : null,
    ...(nat
      ? {}
      : {
          natNote: stun4.length
            ? `no STUN server answered (${stun4.map((s) => `${s.address}:${s.port}`).join(', ')})`
            : 'no STUN server known: run the agent (it finds them by SRV) or give --stun HOST[:PORT]',
        }),
    portMapping: pm,
    publicIPv4: nat?.reflexive.address ?? gatewaySays ?? (net && !priv ? net.address : null),
    ipv6: {
      addresses: v6,
      reflexive: reflexive6,
      note: !v6.length
        ? 'no global IPv6 address'
        : stun6.length
          ? reflexive6
            ? 'IPv6 STUN answered'
            : 'the IPv6 STUN server did not answer'
          : 'no IPv6 STUN server known: reachability over IPv6 not tested',
    },
    dns,
    relays,
  }
}

/** --stun/--relay/--server values: HOST[:PORT] with the host resolved to an address. */
export async function resolveSpecs(specs: readonly string[], defaultPort: number): Promise<AddrPort[]> {
  const out: AddrPort[] = []
  for (const s of specs) {
    const hp = splitHostPort(s, defaultPort)
    if (!hp) throw new Error(`bad address ${JSON.stringify(s)}: want HOST[:PORT]`)
    out.push({ address: isIP(hp.host) ? hp.host : (await lookup(hp.host)).address, port: hp.port })
  }
  return out
}

const yes = (a: ProtocolAnswer): string =>
  a.answers ? `yes (${a.ms} ms${a.externalAddress ? `, external ${a.externalAddress}` : ''})` : 'no'

export function formatNetcheck(r: NetcheckReport): string {
  const n = r.nat
  const lines = [
    `interface   ${r.network.interface ?? '-'} ${r.network.address ?? '-'}, gateway ${r.network.gateway ?? '-'}`,
    `public IPv4 ${r.publicIPv4 ?? 'unknown'}`,
    n
      ? `NAT         ${n.type}: mapping ${n.mapping ?? 'unknown'}, filtering ${n.filtering ?? 'unknown'} (STUN ${n.server?.address}:${n.server?.port}, ${n.rttMs} ms, reflexive ${n.reflexive.address}:${n.reflexive.port})`
      : `NAT         unknown: ${r.natNote ?? ''}`,
    ...(n?.notes ?? []).map((x) => `            note: ${x}`),
    r.portMapping
      ? `port map    PCP ${yes(r.portMapping.pcp)}, NAT-PMP ${yes(r.portMapping.natpmp)}, UPnP ${yes(r.portMapping.upnp)}`
      : `port map    not asked (${r.network.private ? 'no default gateway' : 'public address: no NAT to ask'})`,
    `IPv6        ${r.ipv6.addresses.join(' ') || '-'} (${r.ipv6.note}${r.ipv6.reflexive ? `, reflexive ${r.ipv6.reflexive}` : ''})`,
    r.dns
      ? `DNS service ${r.dns.server}: ${r.dns.ms === null ? r.dns.error : `${r.dns.ms} ms`}`
      : 'DNS service unknown',
    ...(r.relays.length
      ? r.relays.map((x) => `relay       ${x.server}: ${x.ms === null ? 'no answer' : `${x.ms} ms`}`)
      : ['relay       none known']),
  ]
  return `${lines.join('\n')}\n`
}
