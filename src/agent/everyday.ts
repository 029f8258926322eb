// The agent's side of `autotunnel ping`, `ip` and `whois` (issue 17): control-socket commands added next to the
// built-in ones (status, down, browse) and the data path's `revoke`, answered from what the running agent knows.
//
// How `ping` probes (and why): an IKEv2 liveness check, the empty INFORMATIONAL request of RFC 7296 section 1.4,
// on the IKE SA with the peer, established first if there is none (IKE_SA_INIT + IKE_AUTH, the time reported
// apart). It is the control-level probe of this tunnel, as disco pings are Tailscale's:
//   - it travels exactly the way ESP does: same UDP socket and port, same NAT bindings, same endpoint, and through
//     our TURN allocation when the path is relayed (IKE leaves through the relay wrapper like ESP, datapath.ts);
//   - the peer's agent answers it (it proves the peer holds our SA and its key), with no change on the peer and
//     with any RFC 7296 implementation (strongSwan answers it too);
//   - it needs no raw socket (an ICMPv6 echo would need CAP_NET_RAW or the system's ping, and a hook in the
//     tunnel's receive path to catch the reply before it reaches the kernel).
// What it does not prove: that the peer's TUN device and kernel pass traffic (`ping -6 ULA` checks that).
// IKE keeps one request in flight per SA (window 1): a check that gets no answer within the timeout stays pending
// and is retransmitted; if the peer never answers, the SA is dropped as dead peer detection would (engine.dpd).
import { createHash, type KeyObject } from 'node:crypto'
import { isIP } from 'node:net'
import type { HostKey } from '../ike/hostkey.js'
import type { Agent } from './agent.js'
import { ControlError, type ControlRequest } from './control.js'
import type { Datapath } from './datapath.js'
import { normUla, type Peer } from './peers.js'

/** Longest a single ping may wait (the CLI's --timeout is checked against it). */
export const PING_MAX_TIMEOUT_MS = 60_000
export const PING_DEFAULT_TIMEOUT_MS = 3000

/** One `ping` answer: a reply with its path, or why there was none (the CLI counts it as lost). */
export type PingAnswer =
  | {
      readonly reply: true
      readonly host: string
      readonly ula: string
      /** direct, punched or relay (datapath status), after the reply. */
      readonly path: string
      readonly endpoint: string | null
      readonly rttMs: number
      /** Time to set the tunnel up first (IKE_SA_INIT + IKE_AUTH), when there was no SA. */
      readonly setupMs: number | null
      readonly probe: 'ike-liveness'
    }
  | {
      readonly reply: false
      readonly host: string
      readonly ula: string
      readonly path: string
      readonly endpoint: string | null
      readonly reason: string
    }

/** "SHA256:<base64, no padding>" of the key's SubjectPublicKeyInfo (the form OpenSSH prints). */
export function keyFingerprint(k: KeyObject): string {
  const der = k.export({ format: 'der', type: 'spki' })
  return `SHA256:${createHash('sha256').update(der).digest('base64').replace(/=+$/, '')}`
}

type Row = Record<string, unknown>

export interface EverydayDeps {
  readonly agent: Agent
  readonly dp: Datapath
  /** Our host key (signature auth), for whois of our own address. */
  readonly hostKey?: HostKey
  /** Parses a published key record (hostkey.ts parsePublicKeyRecord), loaded lazily by attach.ts. */
  readonly parseKey: (txt: string) => KeyObject | undefined
  readonly now?: () => number
}

/** Adds `ping`, `ip` and `whois` to the agent's control socket. */
export function registerEverydayCommands(d: EverydayDeps): void {
  d.agent.addCommand('ping', (req) => ping(d, req))
  d.agent.addCommand('ip', async (req) => ip(d, req))
  d.agent.addCommand('whois', async (req) => whois(d, req))
}

function hostArg(req: ControlRequest, what: string): string {
  const v = req[what]
  if (typeof v !== 'string' || v.trim() === '')
    throw new ControlError(`"${what}" must be a non-empty string`, 'EBADREQ')
  return v.trim().toLowerCase()
}

/** "desktop", "desktop.alice.members.example" or with a final dot -> the host label (undefined: other domain). */
function labelOf(name: string, domain: string): string | undefined {
  const n = name.replace(/\.$/, '')
  if (!n.includes('.')) return n
  return n.endsWith(`.${domain}`) ? n.slice(0, -domain.length - 1) : undefined
}

/** The peer named `name`, resolved once if the host-list watch has not brought it yet; ENOHOST when unknown. */
async function peerNamed(d: EverydayDeps, name: string): Promise<Peer> {
  const { domain } = d.agent.config
  const label = labelOf(name, domain)
  if (label === undefined) throw new ControlError(`${name} is not in ${domain}`, 'ENOHOST')
  if (label === d.agent.config.hostname) throw new ControlError(`${label} is this host`, 'ESELF')
  const p = d.dp.peers.get(label) ?? (await d.dp.peers.lookup(`${label}.${domain}`).catch(() => undefined))
  if (!p?.ula) {
    const known = d.dp.peers
      .peers()
      .map((x) => x.host)
      .join(', ')
    throw new ControlError(
      `no host ${label} in ${domain}: it publishes no records (down, or never up)${known ? `; known hosts: ${known}` : ''}`,
      'ENOHOST',
    )
  }
  return p
}

function rowOf(d: EverydayDeps, host: string): Row | undefined {
  return (d.dp.status() as Row[]).find((r) => r.name === host)
}

function timeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout | undefined
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<'timeout'>((resolve) => {
      t = setTimeout(() => resolve('timeout'), ms)
    }),
  ])
}

async function ping(d: EverydayDeps, req: ControlRequest): Promise<PingAnswer> {
  const host = hostArg(req, 'host')
  const t = req.timeoutMs === undefined ? PING_DEFAULT_TIMEOUT_MS : Number(req.timeoutMs)
  if (!Number.isInteger(t) || t < 1 || t > PING_MAX_TIMEOUT_MS)
    throw new ControlError(`"timeoutMs" must be an integer from 1 to ${PING_MAX_TIMEOUT_MS}`, 'EBADREQ')
  const engine = d.dp.ike
  if (!engine) throw new ControlError('this agent runs without a tunnel (--no-tun): nothing to ping through', 'ENOTUN')
  const p = await peerNamed(d, host)
  const ula = p.ula ?? ''
  const now = d.now ?? (() => performance.now())
  const lost = (reason: string): PingAnswer => {
    const r = rowOf(d, p.host)
    return { reply: false, host: p.host, ula, path: String(r?.path ?? '-'), endpoint: str(r?.endpoint), reason }
  }
  const start = now()
  let setupMs: number | null = null
  if (!engine.findSa(p.fqdn)) {
    const up = await timeout(
      engine.connect(p.fqdn).then(
        () => 'up' as const,
        (e: Error) => e,
      ),
      t,
    )
    if (up === 'timeout') return lost(`no answer to IKE within ${t} ms (tunnel not set up)`)
    if (up instanceof Error) return lost(`tunnel set-up failed: ${up.message}`)
    setupMs = now() - start
  }
  const sent = now()
  const left = Math.max(1, t - (sent - start))
  const alive = await timeout(
    engine.dpd(p.fqdn).catch(() => false),
    left,
  )
  if (alive === 'timeout') return lost(`no reply within ${t} ms`)
  if (!alive) return lost('the peer stopped answering IKE (its SA is dropped)')
  const rttMs = now() - sent
  const r = rowOf(d, p.host)
  return {
    reply: true,
    host: p.host,
    ula,
    path: String(r?.path ?? '-'),
    endpoint: str(r?.endpoint),
    rttMs: Math.round(rttMs * 1000) / 1000,
    setupMs: setupMs === null ? null : Math.round(setupMs * 10) / 10,
    probe: 'ike-liveness',
  }
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null)

/** `ip [HOST]`: our ULA (no host), or a peer's; with what else is known of it. */
async function ip(d: EverydayDeps, req: ControlRequest): Promise<unknown> {
  const { hostname, domain } = d.agent.config
  const self = {
    host: hostname,
    fqdn: `${hostname}.${domain}`,
    ula: d.agent.identity.ula,
    self: true,
    endpoint: d.agent.reach ? `${d.agent.reach.endpoint.address}:${d.agent.reach.endpoint.port}` : null,
  }
  if (req.host === undefined || req.host === null || req.host === '') return self
  const name = hostArg(req, 'host')
  if (labelOf(name, domain) === hostname) return self
  const p = await peerNamed(d, name)
  const r = rowOf(d, p.host)
  return { host: p.host, fqdn: p.fqdn, ula: p.ula, self: false, endpoint: str(r?.endpoint) }
}

/** `whois ADDRESS`: the host and account a ULA (or a peer's outer endpoint address) belongs to, key and path. */
async function whois(d: EverydayDeps, req: ControlRequest): Promise<unknown> {
  const address = String(req.address ?? '').trim()
  const fam = isIP(address.replace(/^\[|\]$/g, ''))
  if (fam === 0) throw new ControlError(`${JSON.stringify(address)} is not an IP address`, 'EBADREQ')
  const a = address.replace(/^\[|\]$/g, '')
  const { hostname, domain } = d.agent.config
  const user = domain.split('.')[0] ?? ''
  const account = { user, domain }
  if (fam === 6 && normUla(a) === normUla(d.agent.identity.ula)) {
    const k = d.hostKey
    return {
      address: a,
      matched: 'ula',
      host: hostname,
      fqdn: `${hostname}.${domain}`,
      account,
      self: true,
      ula: d.agent.identity.ula,
      keys: k ? [{ alg: k.alg, fingerprint: keyFingerprint(k.publicKey) }] : [],
      path: 'self',
      endpoint: null,
      lastHandshake: null,
      auth: null,
    }
  }
  let p: Peer | undefined
  let matched = 'ula'
  if (fam === 6) p = d.dp.peers.byUla(a)
  if (!p) {
    // An outer address: the endpoint the tunnel uses, the one in DNS, the STUN-learned one or the relayed one.
    for (const r of d.dp.status() as Row[]) {
      const eps = ['endpoint', 'dnsEndpoint', 'stun', 'relay'].map((f) => str(r[f]))
      const hit = eps.findIndex((e) => e !== null && hostPart(e) === a)
      if (hit >= 0) {
        p = d.dp.peers.get(String(r.name))
        matched = ['endpoint', 'dns-endpoint', 'stun', 'relay'][hit] ?? 'endpoint'
        break
      }
    }
  }
  if (!p)
    throw new ControlError(
      `${a} is not an address of any of ${domain}'s hosts known to this agent (known: ${d.dp.peers
        .peers()
        .map((x) => x.host)
        .join(', ')})`,
      'ENOHOST',
    )
  const r = rowOf(d, p.host) ?? {}
  return {
    address: a,
    matched,
    host: p.host,
    fqdn: p.fqdn,
    account,
    self: false,
    ula: p.ula ?? null,
    keys: p.publicKeys.flatMap((txt) => {
      const k = d.parseKey(txt)
      return k ? [{ alg: k.asymmetricKeyType ?? 'unknown', fingerprint: keyFingerprint(k) }] : []
    }),
    path: str(r.path),
    endpoint: str(r.endpoint),
    lastHandshake: str(r.lastHandshake),
    auth: str(r.auth),
  }
}

/** "1.2.3.4:5" -> "1.2.3.4"; "[v6]:5" -> "v6". */
function hostPart(ep: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(ep)
  if (m) return m[1] ?? ''
  const i = ep.lastIndexOf(':')
  return i > 0 && !ep.slice(0, i).includes(':') ? ep.slice(0, i) : ep
}
