// Service discovery records the server answers for every user domain (seed 002 sections 5.2 and 5.3; RFC 6763
// style SRV names from Apple's mDNSResponder): where to send updates and LLQs, over TLS and plain, and where
// DNS Push (RFC 8765 section 6.1) runs. They are synthesized from the configuration, never stored, and public:
// an agent looks them up before it can sign anything.
import { createHmac } from 'node:crypto'
import { RRClass, RRType } from '../dns/wire/rr-table.js'
import type { ServiceConfig } from './config.js'
import { canonicalRData } from './rdata.js'
import type { ZoneRR } from './zone-index.js'

/** Service labels under USER.ZONE and whether the service is advertised on the TLS port. */
export const DISCOVERY_SERVICES = [
  { prefix: '_dnsupdate-tls._udp', tls: true },
  { prefix: '_dns-llq-tls._udp', tls: true },
  { prefix: '_dns-push-tls._tcp', tls: true },
  { prefix: '_dns-update._udp', tls: false },
  { prefix: '_dns-llq._udp', tls: false },
] as const

/**
 * If `name` is a discovery name under a user domain of the zone, returns the user label and the service;
 * `isUser` says whether the label belongs to an account.
 */
export function discoveryService(
  cfg: ServiceConfig,
  name: string,
): { user: string; service: (typeof DISCOVERY_SERVICES)[number] } | undefined {
  if (name.charCodeAt(0) !== 95 || !name.endsWith(cfg.zone)) return undefined
  for (const service of DISCOVERY_SERVICES) {
    const p = `${service.prefix}.`
    if (!name.startsWith(p)) continue
    const rest = name.slice(p.length, name.length - cfg.zone.length)
    // rest is "user." with exactly one label.
    if (rest.length < 2 || rest.indexOf('.') !== rest.length - 1 || rest.includes('\\')) return undefined
    return { user: rest.slice(0, -1), service }
  }
  return undefined
}

/**
 * `--stun ADDR:PORT` (repeatable): SRV `_stun._udp.ZONE` (RFC 8489 section 8) pointing at `sN._stun._udp.ZONE`
 * with an A/AAAA record each. The targets sit under `_udp.ZONE`, so no account label can collide with them.
 */
export function stunRecords(cfg: ServiceConfig): { name: string; type: number; data: unknown; text: string }[] {
  return srvWithTargets(`_stun._udp.${cfg.zone}`, 's', cfg.stun ?? [])
}

/** `--turn ADDR:PORT` (repeatable): SRV `_turn._udp.ZONE` (RFC 5928 section 4) to `tN._turn._udp.ZONE`, as above. */
export function turnRecords(cfg: ServiceConfig): { name: string; type: number; data: unknown; text: string }[] {
  return srvWithTargets(`_turn._udp.${cfg.zone}`, 't', cfg.turn ?? [])
}

function srvWithTargets(
  srvName: string,
  prefix: string,
  servers: readonly { readonly host: string; readonly port: number }[],
): { name: string; type: number; data: unknown; text: string }[] {
  const out: { name: string; type: number; data: unknown; text: string }[] = []
  servers.forEach((s, i) => {
    const target = `${prefix}${i + 1}.${srvName}`
    const v6 = s.host.includes(':')
    out.push(
      {
        name: srvName,
        type: RRType.SRV,
        data: { priority: i, weight: 0, port: s.port, target },
        text: `${i} 0 ${s.port} ${target}`,
      },
      { name: target, type: v6 ? RRType.AAAA : RRType.A, data: { address: s.host }, text: s.host },
    )
  })
  return out
}

/** The private name whose TXT carries a user's ephemeral TURN credentials (readable by that user only). */
export const TURN_CREDENTIALS_LABEL = '_turn-credentials'
export const TURN_CREDENTIAL_TTL_SEC = 86_400

/**
 * coturn's REST scheme (`use-auth-secret`): username = "EXPIRY:USER" (Unix seconds), password =
 * base64(HMAC-SHA1(static-auth-secret, username)). The TXT strings "username=..." "password=..." "ttl=...".
 */
export function turnCredentials(
  secret: Buffer,
  ttlSec: number,
  user: string,
  nowMs: number,
): { username: string; password: string } {
  const username = `${Math.floor(nowMs / 1000) + ttlSec}:${user}`
  return { username, password: createHmac('sha1', secret).update(username).digest('base64') }
}

export function discoveryRR(cfg: ServiceConfig, name: string, tls: boolean): ZoneRR {
  return discoveryRRs(cfg, name, tls)[0]!
}

/**
 * The discovery SRV records of `name`: this node, then every other live node of a cluster (ServiceConfig.peers),
 * all at priority 0 with weight 1 (RFC 2782: clients spread over them and try the next on failure); one node alone
 * keeps weight 0. Nodes that advertise the same target and port appear once.
 */
export function discoveryRRs(cfg: ServiceConfig, name: string, tls: boolean): ZoneRR[] {
  const nodes = [
    { nsName: cfg.nsName, dnsPort: cfg.dnsPort, tlsPort: cfg.tlsPort },
    ...(cfg.peers?.() ?? []).filter((p) => p.nsName !== cfg.nsName || p.dnsPort !== cfg.dnsPort),
  ]
  const weight = nodes.length > 1 ? 1 : 0
  const seen = new Set<string>()
  const out: ZoneRR[] = []
  for (const n of nodes) {
    const port = tls ? (n.tlsPort ?? n.dnsPort) : n.dnsPort
    const k = `${n.nsName} ${port}`
    if (seen.has(k)) continue
    seen.add(k)
    const data = { priority: 0, weight, port, target: n.nsName }
    const rdata = canonicalRData(RRType.SRV, data)
    out.push({
      name,
      type: RRType.SRV,
      class: RRClass.IN,
      ttl: cfg.infraTtlSec,
      rdata,
      text: `0 ${weight} ${port} ${n.nsName}`,
    })
  }
  return out
}
