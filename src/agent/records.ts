// The records a host publishes in its user's domain D (RFC 6281 sections 3 and 5.2; DNS-SD, RFC 6763).
//
//   L.D                     AAAA  the ULA                          (L = AutoTunnel-<EUI-64>, the SRV target)
//   L.D                     A     the external IPv4 address        (mapped, public, or the LAN address: see below)
//   L.D                     TXT   device information               ("txtvers=1" "host=H" "nat=pcp" ...)
//   _autotunnel._udp.H.D    SRV   0 0 <external port> L.D
//   H.D                     AAAA  the ULA                          (the name users type; DNS-SD services point here)
//   _autotunnel._udp.D      PTR   _autotunnel._udp.H.D             (the user's host list: one name to watch)
//   H.D                     TXT   "v=at-ike1; k=ed25519; p=..."     (the IKE public key: hostKeyRecord, published by
//                                                                    the data path, not by hostRecords)
// and for each --service _t._p:PORT (DNS-SD):
//   _t._p.D                 PTR   H._t._p.D
//   H._t._p.D               SRV   0 0 PORT H.D                     (reached over the tunnel, so the internal port)
//   H._t._p.D               TXT   ""                               (RFC 6763 6.1: an empty TXT is one empty string)
//   _services._dns-sd._udp.D PTR  _t._p.D                          (RFC 6763 9: service type enumeration)
//
// "Owned" RRsets belong to this host alone and are replaced as a whole (delete RRset + add). "Shared" RRsets
// (the PTRs at _autotunnel._udp.D and _t._p.D) hold one record per host, so this host adds and deletes only its
// own record. The type-enumeration PTR is identical for every host offering the type, so no host deletes it on
// shutdown: it expires with its lease once no host refreshes it.
import { type RR, RRClass, RRType } from '../dns/wire/rr-table.js'

export type NatMode = 'pcp' | 'natpmp' | 'upnp' | 'public' | 'unmapped'

export interface ServiceSpec {
  /** "_ssh._tcp" */
  readonly type: string
  readonly port: number
}

export interface HostRecordsInput {
  /** Host label, e.g. "desktop". */
  readonly hostname: string
  /** The user's domain, e.g. "alice.members.example" (with or without the trailing dot). */
  readonly domain: string
  readonly ula: string
  /** "AutoTunnel-00-22-69-FF-FE-8E-34-2A" */
  readonly label: string
  /** Outer address and port peers should send to. */
  readonly endpoint: { readonly address: string; readonly port: number }
  readonly nat: NatMode
  /** nat=unmapped only: the reflexive endpoint from STUN and the NAT's mapping kind (docs/punch.md), as TXT. */
  readonly stun?: { readonly address: string; readonly port: number } | undefined
  readonly mapping?: 'eim' | 'symmetric' | undefined
  /** nat=unmapped only: our TURN allocation's relayed address (docs/relay.md), as TXT relay=ADDR:PORT. */
  readonly relay?: { readonly address: string; readonly port: number } | undefined
  readonly services: readonly ServiceSpec[]
  readonly ttlSec: number
  readonly agentVersion: string
}

export type Sharing = 'owned' | 'shared' | 'persistent'

export interface PublishedRR {
  readonly rr: RR
  readonly sharing: Sharing
}

export const AUTOTUNNEL_SERVICE = '_autotunnel._udp'
export const SERVICES_ENUM = '_services._dns-sd._udp'
/** A host label H in H.D: one LDH label of 1-63 characters (RFC 1123 section 2.1), lower case. */
export const HOST_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

export class ServiceSpecError extends Error {
  override readonly name = 'ServiceSpecError'
}

const SERVICE_LABEL = /^_[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/i

/** "_ssh._tcp:22", "ssh:22" (means _ssh._tcp) or "_x._udp:53" -> ServiceSpec. */
export function parseServiceSpec(s: string): ServiceSpec {
  const at = s.lastIndexOf(':')
  if (at <= 0) throw new ServiceSpecError(`--service wants TYPE:PORT, got ${JSON.stringify(s)}`)
  const portText = s.slice(at + 1)
  const port = Number(portText)
  if (!/^\d+$/.test(portText) || port < 1 || port > 0xffff) throw new ServiceSpecError(`bad port in ${s}`)
  let type = s.slice(0, at).toLowerCase()
  if (!type.includes('.')) type = `${type.startsWith('_') ? type : `_${type}`}._tcp`
  const [svc, proto, ...rest] = type.split('.')
  if (rest.length || !svc || !SERVICE_LABEL.test(svc) || (proto !== '_tcp' && proto !== '_udp'))
    throw new ServiceSpecError(`bad service type in ${s}: want _name._tcp or _name._udp`)
  return { type, port }
}

export function fq(name: string): string {
  return name.endsWith('.') ? name : `${name}.`
}

function rr(name: string, type: number, ttl: number, data: RR['data']): RR {
  return { name: fq(name), type, class: RRClass.IN, ttl, data }
}

/** The full record set of one host (see the table at the top of this file). */
export function hostRecords(i: HostRecordsInput): PublishedRR[] {
  const d = fq(i.domain)
  const host = `${i.hostname}.${d}`
  const target = `${i.label}.${d}`
  const srvName = `${AUTOTUNNEL_SERVICE}.${host}`
  const ttl = i.ttlSec
  const txt = [`txtvers=1`, `host=${i.hostname}`, `nat=${i.nat}`, `agent=autotunnel/${i.agentVersion}`, `os=linux`]
  if (i.nat === 'unmapped' && i.stun) txt.push(`stun=${i.stun.address}:${i.stun.port}`)
  if (i.nat === 'unmapped' && i.stun && i.mapping) txt.push(`mapping=${i.mapping}`)
  if (i.nat === 'unmapped' && i.relay) txt.push(`relay=${i.relay.address}:${i.relay.port}`)
  const out: PublishedRR[] = [
    { sharing: 'owned', rr: rr(target, RRType.AAAA, ttl, { address: i.ula }) },
    { sharing: 'owned', rr: rr(target, RRType.A, ttl, { address: i.endpoint.address }) },
    { sharing: 'owned', rr: rr(target, RRType.TXT, ttl, { strings: txt.map((t) => Buffer.from(t)) }) },
    {
      sharing: 'owned',
      rr: rr(srvName, RRType.SRV, ttl, { priority: 0, weight: 0, port: i.endpoint.port, target }),
    },
    { sharing: 'owned', rr: rr(host, RRType.AAAA, ttl, { address: i.ula }) },
    { sharing: 'shared', rr: rr(`${AUTOTUNNEL_SERVICE}.${d}`, RRType.PTR, ttl, { ptrdname: srvName }) },
  ]
  for (const s of i.services) {
    const typeName = `${s.type}.${d}`
    const instance = `${i.hostname}.${typeName}`
    out.push(
      { sharing: 'shared', rr: rr(typeName, RRType.PTR, ttl, { ptrdname: instance }) },
      { sharing: 'owned', rr: rr(instance, RRType.SRV, ttl, { priority: 0, weight: 0, port: s.port, target: host }) },
      { sharing: 'owned', rr: rr(instance, RRType.TXT, ttl, { strings: [Buffer.alloc(0)] }) },
      { sharing: 'persistent', rr: rr(`${SERVICES_ENUM}.${d}`, RRType.PTR, ttl, { ptrdname: typeName }) },
    )
  }
  return dedupe(out)
}

/**
 * The host's IKE public key record (src/ike/hostkey.ts encodePublicKeyRecord) at the host name H.D, the name that
 * is also the host's IKE identity (ID_FQDN). Its own RRset, so the data path publishes it with a Publisher of its
 * own; revoking the host deletes it (src/agent/revoke.ts).
 */
export function hostKeyRecord(i: { hostname: string; domain: string; record: string; ttlSec: number }): PublishedRR {
  return {
    sharing: 'owned',
    rr: rr(`${i.hostname}.${fq(i.domain)}`, RRType.TXT, i.ttlSec, { strings: [Buffer.from(i.record)] }),
  }
}

function dedupe(rrs: PublishedRR[]): PublishedRR[] {
  const seen = new Set<string>()
  return rrs.filter((p) => {
    const k = rrKey(p.rr)
    if (seen.has(k)) return false
    seen.add(k)
    return true
  })
}

/** Identity of a record for set comparison: owner (case-insensitive), type and RDATA (not the TTL). */
export function rrKey(r: RR): string {
  return `${r.name.toLowerCase()}|${r.type}|${rdataKey(r.data)}`
}

/** Identity of an RRset: owner and type. */
export function rrsetKey(r: { name: string; type: number }): string {
  return `${r.name.toLowerCase()}|${r.type}`
}

function rdataKey(d: RR['data']): string {
  return JSON.stringify(d, (_k, v: unknown) => {
    if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer')
      return Buffer.from((v as { data: number[] }).data).toString('hex')
    if (typeof v === 'string') return v.toLowerCase()
    return v
  })
}

/** A record in dig-like presentation form, for logs and `status`. */
export function presentRR(r: RR): string {
  const d = r.data as Record<string, unknown> | null
  let text = ''
  if (d && 'address' in d) text = String(d.address)
  else if (d && 'ptrdname' in d) text = String(d.ptrdname)
  else if (d && 'target' in d) text = `${d.priority} ${d.weight} ${d.port} ${d.target}`
  else if (d && 'strings' in d) text = (d.strings as Buffer[]).map((s) => JSON.stringify(s.toString())).join(' ')
  const type = Object.entries(RRType).find(([, v]) => v === r.type)?.[0] ?? `TYPE${r.type}`
  return `${r.name} ${r.ttl} IN ${type} ${text}`
}
