// What a peer's records say (RFC 6281 section 5.3, Figure 3 steps 2-5): the signed queries for one host H of
// domain D and the parsing of their answers into a peer's fields.
//   H.D                      TXT   its IKE key records ("v=at-ike1; ...")
//   _autotunnel._udp.H.D     SRV   the external port and the target L.D (which must be under D)
//   L.D                      AAAA, A, TXT: ULA, external IPv4 address, nat= stun= mapping= relay=
// No state and no timers: PeerManager (peers.ts) decides when to ask, keeps the table and tells the listeners.
// Separate from it so the record formats can be read (and changed) without the watcher bookkeeping.
import type { Message } from '../dns/wire/message.js'
import { RRType, type SRVData, type TXTData } from '../dns/wire/rr-table.js'
import { fq } from './records.js'

export interface SignedQuery {
  query(name: string, type: number): Promise<Message>
}

/** A peer's fields that come from the chain at its target L.D (undefined until it resolves). */
export interface PeerRecords {
  /** Autotunnel target name (L.D., from the SRV), once known. */
  readonly target: string | undefined
  readonly ula: string | undefined
  /** Outer endpoint: the target's A record and the SRV port. */
  readonly endpoint: { readonly address: string; readonly port: number } | undefined
  /** TXT nat=... of the peer (pcp, natpmp, upnp, public, unmapped). */
  readonly nat: string | undefined
  /** TXT stun=ADDR:PORT and mapping=eim|symmetric of an unmapped peer (docs/punch.md); undefined when absent. */
  readonly stun?: { readonly address: string; readonly port: number } | undefined
  readonly mapping?: 'eim' | 'symmetric' | undefined
  /** TXT relay=ADDR:PORT: the peer's TURN relayed address (docs/relay.md); undefined when absent. */
  readonly relay?: { readonly address: string; readonly port: number } | undefined
}

/** The data of the answers at `name` (fully qualified, any case) of `type`. */
export function answers<T>(m: Message, name: string, type: number): T[] {
  const n = name.toLowerCase()
  return m.answers.filter((r) => r.type === type && fq(r.name.toLowerCase()) === n && r.data).map((r) => r.data as T)
}

/** The TXT strings at H.D that look like IKE key records, sorted; undefined when the query failed. */
export function queryIkeKeys(query: SignedQuery, hostName: string): Promise<string[] | undefined> {
  return query
    .query(hostName, RRType.TXT)
    .then((m) =>
      answers<TXTData>(m, hostName, RRType.TXT)
        .map((t) => t.strings.map(String).join(''))
        .filter((s) => s.startsWith('v=at-ike'))
        .sort(),
    )
    .catch(() => undefined)
}

/**
 * Steps 2-5 from the SRV answer on: its port and target (under `domain`, else an error), then the target's AAAA,
 * A and TXT. Throws with the reason (no SRV, target outside D, no AAAA) when the chain does not complete.
 */
export async function resolveTarget(
  query: SignedQuery,
  srvAnswer: Message,
  srvName: string,
  domain: string,
): Promise<PeerRecords & { target: string; ula: string }> {
  const srv = answers<SRVData>(srvAnswer, srvName, RRType.SRV)[0]
  if (!srv) throw new Error(`no SRV ${srvName}`)
  const target = fq(srv.target.toLowerCase())
  if (!target.endsWith(`.${domain}`)) throw new Error(`SRV target ${target} outside ${domain}`)
  const [aaaaM, aM, txtM] = await Promise.all([RRType.AAAA, RRType.A, RRType.TXT].map((t) => query.query(target, t)))
  const ula = answers<{ address: string }>(aaaaM as Message, target, RRType.AAAA)[0]?.address
  const a = answers<{ address: string }>(aM as Message, target, RRType.A)[0]?.address
  const txt = answers<TXTData>(txtM as Message, target, RRType.TXT).flatMap((t) => t.strings.map(String))
  const nat = txt.find((s) => s.startsWith('nat='))?.slice('nat='.length)
  const stun = parseStunTxt(txt.find((s) => s.startsWith('stun='))?.slice('stun='.length))
  const mappingText = txt.find((s) => s.startsWith('mapping='))?.slice('mapping='.length)
  const mapping = mappingText === 'eim' || mappingText === 'symmetric' ? mappingText : undefined
  const relay = parseStunTxt(txt.find((s) => s.startsWith('relay='))?.slice('relay='.length))
  if (!ula) throw new Error(`no AAAA ${target}`)
  return {
    target,
    ula,
    endpoint: a && srv.port ? { address: a, port: srv.port } : undefined,
    nat,
    stun,
    mapping,
    relay,
  }
}

/** Whether anything the tunnel wiring acts on differs (ULA, endpoint, NAT kind, STUN, mapping, relay). */
export function recordsMoved(prev: PeerRecords, next: PeerRecords): boolean {
  return (
    prev.ula !== next.ula ||
    prev.endpoint?.address !== next.endpoint?.address ||
    prev.endpoint?.port !== next.endpoint?.port ||
    prev.nat !== next.nat ||
    prev.stun?.address !== next.stun?.address ||
    prev.stun?.port !== next.stun?.port ||
    prev.mapping !== next.mapping ||
    prev.relay?.address !== next.relay?.address ||
    prev.relay?.port !== next.relay?.port
  )
}

/** "203.0.113.13:4500" -> endpoint; anything else (a hostile or garbled TXT string) -> undefined. */
export function parseStunTxt(v: string | undefined): { address: string; port: number } | undefined {
  const m = v ? /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(v) : null
  if (!m?.[1] || !m[2]) return undefined
  const port = Number(m[2])
  if (port < 1 || port > 0xffff || m[1].split('.').some((o) => Number(o) > 255)) return undefined
  return { address: m[1], port }
}
