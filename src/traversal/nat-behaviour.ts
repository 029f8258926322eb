// NAT behaviour discovery (RFC 5780 section 4) for `autotunnel netcheck`, on sockets of its own (not the agent's
// tunnel port: the tests open fresh bindings on purpose).
//
//   4.3 mapping:   test I   Binding to the primary address P:p           -> mapped M1, OTHER-ADDRESS A:a
//                  test II  Binding to A:p                               -> M2; M2 = M1: endpoint-independent
//                  test III Binding to A:a                               -> M3; M3 = M2: address-dependent,
//                                                                           else address-and-port-dependent
//   4.4 filtering (a second, fresh socket: the mapping tests opened holes towards A:p and A:a that would make every
//                  NAT look endpoint-independent):
//                  test I   Binding to P:p
//                  test II  CHANGE-REQUEST change-IP + change-port (answer from A:a): endpoint-independent
//                  test III CHANGE-REQUEST change-port (answer from P:a): address-dependent; neither:
//                           address-and-port-dependent
// Without OTHER-ADDRESS (a server without RFC 5780 support) but with a second server, mapping is compared across
// the two servers as probeNat does (endpoint-independent or not); filtering cannot be told.
// "symmetric" is the classic name (RFC 3489) of any mapping that is not endpoint-independent: the one a peer
// cannot punch to, the reason the agent falls back to a TURN relay.
import type { Clock } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Random } from '../io/random.js'
import {
  type AddrPort,
  decodeStun,
  encodeStun,
  looksLikeStun,
  STUN_HEADER_LEN,
  STUN_TXID_LEN,
  STUN_TXID_OFFSET,
  StunAttr,
  type StunMessage,
  StunType,
} from './stun.js'
import { StunTransactions } from './stun-transactions.js'

/** RFC 5780 7.2: CHANGE-REQUEST flags. */
export const ChangeFlag = { IP: 0x04, PORT: 0x02 } as const

/** RFC 4787 terms (section 4.1 mapping, 5 filtering). */
export type Behaviour = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent'

export interface NatBehaviour {
  /** Our reflexive endpoint from test I. */
  readonly reflexive: AddrPort
  /** The local address of the socket equals the reflexive one: no NAT on the way (a public address). */
  readonly nat: boolean
  /** undefined: could not be told (only one server, or its alternate address did not answer). */
  readonly mapping: Behaviour | undefined
  readonly filtering: Behaviour | undefined
  /** Classic name: none, full cone, restricted cone, port-restricted cone, symmetric; or unknown. */
  readonly type: string
  /** The server's OTHER-ADDRESS (RFC 5780 support) when it sent one. */
  readonly otherAddress: AddrPort | undefined
  /** RTT of test I, ms. */
  readonly rttMs: number
  /** What was done and what could not be, for people. */
  readonly notes: readonly string[]
}

export interface BehaviourDeps {
  readonly clock: Clock
  readonly random: Random
  /** Fresh unbound sockets (one per test series). */
  readonly socket: () => DatagramSocket
}

export interface BehaviourOptions {
  /** @default 250 */
  readonly rtoMs?: number
  /** How long a test waits for its answer (a filtering test's silence is its result). @default 1500 */
  readonly giveUpMs?: number
}

const same = (a: AddrPort | undefined, b: AddrPort | undefined): boolean =>
  !!a && !!b && a.address === b.address && a.port === b.port

/** One STUN Binding client on one socket: request(server, change) -> the answer and where it came from. */
class Prober {
  readonly #tx: StunTransactions<{ m: StunMessage; from: AddrPort }>
  readonly #sock: DatagramSocket
  readonly #d: BehaviourDeps
  local: AddrPort | undefined

  constructor(d: BehaviourDeps, o: BehaviourOptions) {
    this.#d = d
    this.#sock = d.socket()
    this.#tx = new StunTransactions(d.clock, { rtoMs: o.rtoMs ?? 250, giveUpMs: o.giveUpMs ?? 1500 })
    this.#sock.onMessage((msg, from) => {
      if (!looksLikeStun(msg)) return
      const key = msg.toString('hex', STUN_TXID_OFFSET, STUN_HEADER_LEN)
      if (!this.#tx.has(key)) return
      try {
        this.#tx.settle(key, { m: decodeStun(msg), from: { address: from.address, port: from.port } })
      } catch {
        // malformed: the transaction keeps waiting (and times out)
      }
    })
  }

  async open(): Promise<void> {
    this.local = await this.#sock.bind(0)
  }

  async binding(
    server: AddrPort,
    change = 0,
  ): Promise<{ mapped: AddrPort; other?: AddrPort; from: AddrPort; rttMs: number } | undefined> {
    const txid = this.#d.random.bytes(STUN_TXID_LEN)
    const attrs = change ? [{ type: StunAttr.CHANGE_REQUEST, value: Buffer.from([0, 0, 0, change]) }] : []
    const req = encodeStun(StunType.BINDING_REQUEST, txid, attrs, { fingerprint: true })
    const t0 = this.#d.clock.monotonic()
    const r = await this.#tx.start(txid.toString('hex'), () =>
      this.#sock.send(req, 0, req.length, server.port, server.address),
    )
    if (!r || r.m.type !== StunType.BINDING_SUCCESS || !r.m.mapped) return undefined
    return {
      mapped: r.m.mapped,
      ...(r.m.other ? { other: r.m.other } : {}),
      from: r.from,
      rttMs: this.#d.clock.monotonic() - t0,
    }
  }

  async close(): Promise<void> {
    this.#tx.close()
    await this.#sock.close()
  }
}

function classic(nat: boolean, mapping: Behaviour | undefined, filtering: Behaviour | undefined): string {
  if (!nat) return 'none (public address)'
  if (mapping === undefined) return 'unknown'
  if (mapping !== 'endpoint-independent') return 'symmetric'
  if (filtering === 'endpoint-independent') return 'full cone'
  if (filtering === 'address-dependent') return 'restricted cone'
  if (filtering === 'address-and-port-dependent') return 'port-restricted cone'
  return 'cone (endpoint-independent mapping, filtering unknown)'
}

/**
 * Runs the RFC 5780 tests against `servers` (the first that answers is the primary; a second one stands in for
 * OTHER-ADDRESS when the primary has none). Undefined when no server answered.
 */
export async function discoverNatBehaviour(
  d: BehaviourDeps,
  servers: readonly AddrPort[],
  o: BehaviourOptions = {},
): Promise<NatBehaviour | undefined> {
  const notes: string[] = []
  const m = new Prober(d, o)
  try {
    await m.open()
    let primary: AddrPort | undefined
    let t1: Awaited<ReturnType<Prober['binding']>>
    for (const s of servers) {
      t1 = await m.binding(s)
      if (t1) {
        primary = s
        break
      }
      notes.push(`STUN server ${s.address}:${s.port} did not answer`)
    }
    if (!t1 || !primary) return undefined
    const local = m.local
    const nat = !(
      local &&
      t1.mapped.address === (await localAddressTowards(primary, local)) &&
      t1.mapped.port === local.port
    )
    const other = t1.other
    let mapping: Behaviour | undefined
    let filtering: Behaviour | undefined
    if (other && other.address !== primary.address && other.port !== primary.port) {
      const t2 = await m.binding({ address: other.address, port: primary.port })
      if (!t2) notes.push(`the alternate address ${other.address}:${primary.port} did not answer (test II)`)
      else if (same(t2.mapped, t1.mapped)) mapping = 'endpoint-independent'
      else {
        const t3 = await m.binding(other)
        if (!t3) notes.push(`the alternate address and port ${other.address}:${other.port} did not answer (test III)`)
        else mapping = same(t3.mapped, t2.mapped) ? 'address-dependent' : 'address-and-port-dependent'
      }
      filtering = await filteringTests(d, o, primary, other, notes)
    } else {
      notes.push(
        `${primary.address}:${primary.port} sent no usable OTHER-ADDRESS (no RFC 5780 support): filtering not tested`,
      )
      const second = servers.find((s) => s !== primary && s.address !== primary.address)
      const t2 = second ? await m.binding(second) : undefined
      if (t2) mapping = same(t2.mapped, t1.mapped) ? 'endpoint-independent' : 'address-and-port-dependent'
      else notes.push('no second server answered: mapping behaviour unknown')
      if (mapping === 'address-and-port-dependent')
        notes.push('two servers only tell whether mapping is endpoint-independent, not which dependent kind')
    }
    return {
      reflexive: t1.mapped,
      nat,
      mapping: nat ? mapping : 'endpoint-independent',
      filtering,
      type: classic(nat, mapping, filtering),
      otherAddress: other,
      rttMs: Math.round(t1.rttMs * 100) / 100,
      notes,
    }
  } finally {
    await m.close()
  }
}

async function filteringTests(
  d: BehaviourDeps,
  o: BehaviourOptions,
  primary: AddrPort,
  other: AddrPort,
  notes: string[],
): Promise<Behaviour | undefined> {
  const f = new Prober(d, o)
  try {
    await f.open()
    if (!(await f.binding(primary))) {
      notes.push('the primary server did not answer the filtering series')
      return undefined
    }
    const both = await f.binding(primary, ChangeFlag.IP | ChangeFlag.PORT)
    if (both && both.from.address === other.address && both.from.port === other.port) return 'endpoint-independent'
    const port = await f.binding(primary, ChangeFlag.PORT)
    if (port && port.from.address === primary.address && port.from.port === other.port) return 'address-dependent'
    return 'address-and-port-dependent'
  } finally {
    await f.close()
  }
}

/** The source address the kernel picks towards `to` (a connected UDP socket's local address). */
async function localAddressTowards(to: AddrPort, bound: AddrPort): Promise<string> {
  if (bound.address !== '0.0.0.0' && bound.address !== '::') return bound.address
  const dgram = await import('node:dgram')
  const s = dgram.createSocket('udp4')
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.connect(to.port, to.address, () => resolve())
    })
    return s.address().address
  } catch {
    return bound.address
  } finally {
    s.close()
  }
}

/** One Binding from a fresh socket: our reflexive endpoint as `server` sees it and the RTT, or undefined. */
export async function bindingOnce(
  d: BehaviourDeps,
  server: AddrPort,
  o: BehaviourOptions = {},
): Promise<{ mapped: AddrPort; rttMs: number } | undefined> {
  const p = new Prober(d, o)
  try {
    await p.open()
    const r = await p.binding(server)
    return r ? { mapped: r.mapped, rttMs: Math.round(r.rttMs * 100) / 100 } : undefined
  } finally {
    await p.close()
  }
}
