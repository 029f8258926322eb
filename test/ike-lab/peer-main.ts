// Test tooling: our IKE engine in its own process (run inside a network namespace with
// `ip netns exec`), driven by JSON lines on stdin and reporting JSON lines on stdout. Used by
// test/interop/ike*.test.ts and bench/ike.bench.ts against strongSwan.
//
// argv[2]: JSON { localId, localUla, bind, port, auth, hostKeyPem?, psk(hex), peers: [{id, ula, address,
//                port, publicKeyPem?}], groups?, ciphers?, childCiphers?, esn? }

import { IkeEngine } from '../../src/ike/engine.js'
import { initiate } from '../../src/ike/exchange-init.js'
import { hostKeyFromPem } from '../../src/ike/hostkey.js'
import { type CipherName, DEFAULT_CHILD_POLICY, DEFAULT_IKE_POLICY } from '../../src/ike/proposals.js'
import { DualUdpIkeTransport, UdpIkeTransport } from '../../src/ike/transport.js'
import type { ChildSaKeys, Endpoint, IkeTransport } from '../../src/ike/types.js'
import { SystemClock } from '../../src/io/clock.js'
import { UdpSocket } from '../../src/io/datagram.js'
import { jsonLogger, nullLogger } from '../../src/io/log.js'
import { SystemRandom } from '../../src/io/random.js'
import { echoReply, echoRequest, isEchoReply, openEsp, parseEchoRequest, sealEsp } from './esp-probe.js'
import { type LabMainConfig, type LabRequest, out, peerTable, readLabConfig, serveRequests } from './main-common.js'

interface Config extends LabMainConfig {
  /** Also listen for plain IKE on this port (500). */
  plainPort?: number
  ciphers?: CipherName[]
  pfs?: boolean
}

const cfg = readLabConfig<Config>()
const children = new Map<number, ChildSaKeys>()
/** Peer endpoints moved by MOBIKE since their Child SAs were made. */
const remotes = new Map<string, Endpoint>()
const espWaiters = new Set<(pkt: Buffer, from: Endpoint) => void>()

const sock = new UdpSocket()
await sock.bind(cfg.port, cfg.bind)
const encap = new UdpIkeTransport(sock, {
  localAddress: cfg.localAddress ?? cfg.bind,
  onEsp: (pkt, from) => {
    for (const w of espWaiters) w(pkt, from)
    answerEcho(pkt, from)
  },
})
// With plainPort (500) we also speak IKE without the marker there and float to the NAT-T port (RFC 7296 2.23).
const plainSock = cfg.plainPort ? new UdpSocket() : undefined
if (plainSock) await plainSock.bind(cfg.plainPort ?? 0, cfg.bind)
const transport = plainSock
  ? new DualUdpIkeTransport(
      new UdpIkeTransport(plainSock, { nonEspMarker: false, localAddress: cfg.localAddress ?? cfg.bind }),
      encap,
    )
  : encap
/**
 * IKE messages reach the engine `delayMs` late (op `delayIkeRx`): the rekey collision test holds charon's request
 * back this way while ours goes out, so both are in flight at once. ESP is not delayed.
 */
const ikeRx = { delayMs: 0 }
const delayedTransport: IkeTransport = {
  send: (buf, to) => transport.send(buf, to),
  onMessage: (handler) =>
    transport.onMessage((buf, from) => {
      if (ikeRx.delayMs > 0) setTimeout(() => handler(buf, from), ikeRx.delayMs)
      else handler(buf, from)
    }),
  local: (to) => transport.local(to),
  ...(plainSock ? { natTPort: (transport as IkeTransport).natTPort } : {}),
}
const hostKey = cfg.hostKeyPem ? hostKeyFromPem(cfg.hostKeyPem, 'hostKeyPem') : undefined
const peers = peerTable(cfg.peers)
const engine = new IkeEngine(
  {
    transport: delayedTransport,
    clock: new SystemClock(),
    random: new SystemRandom(),
    log: cfg.debug ? jsonLogger({ level: 'debug' }) : nullLogger,
  },
  {
    localId: cfg.localId,
    localUla: cfg.localUla,
    auth: cfg.auth,
    ...(hostKey ? { hostKey } : {}),
    ...(cfg.psk ? { psk: Buffer.from(cfg.psk, 'hex') } : {}),
    lookupPeer: async (id) => peers.get(id),
    ikePolicy: {
      ...DEFAULT_IKE_POLICY,
      ...(cfg.groups ? { groups: cfg.groups } : {}),
      ...(cfg.ciphers ? { ciphers: cfg.ciphers } : {}),
    },
    childPolicy: {
      ...DEFAULT_CHILD_POLICY,
      ...(cfg.childCiphers ? { ciphers: cfg.childCiphers } : {}),
      ...(cfg.esn ? { esn: cfg.esn } : {}),
    },
    pfs: cfg.pfs ?? true,
    dpdIntervalMs: 0,
  },
  {
    childUp: (k) => {
      children.set(k.spiIn, k)
      out({
        ev: 'childUp',
        spiIn: k.spiIn,
        spiOut: k.spiOut,
        alg: k.alg,
        esn: k.esn,
        peer: k.peerId,
        replaces: k.replaces,
      })
    },
    childDown: (d) => {
      children.delete(d.spiIn)
      out({ ev: 'childDown', ...d })
    },
    ikeUp: (s) => out({ ev: 'ikeUp', spiI: s.spiI, spiR: s.spiR, suite: s.suite, initiator: s.initiator }),
    ikeDown: (d) => out({ ev: 'ikeDown', ...d }),
    peerEndpoint: (d) => {
      remotes.set(d.peerId, d.remote)
      out({ ev: 'peerEndpoint', ...d })
    },
  },
)

/** Answers ICMPv6 echo requests that arrive inside ESP for our ULA (so two of us can be timed). */
function answerEcho(pkt: Buffer, from: Endpoint): void {
  const k = children.get(pkt.length >= 4 ? pkt.readUInt32BE(0) : 0)
  if (!k) return
  const inner = openEsp(k, pkt)
  const req = inner ? parseEchoRequest(inner, k.localUla) : undefined
  if (!req) return
  const reply = sealEsp(k, ++replySeq, echoReply(k.localUla, req.src, req.id, req.seq, req.data))
  sock.send(reply, 0, reply.length, from.port, from.address)
}
let replySeq = 0

let pingSeq = 0
/** Sends an ESP echo request on the newest Child SA with `peer` and waits for the reply. */
function espPing(peer: string, timeoutMs: number): Promise<{ rttMs: number; spiOut: number }> {
  const k = [...children.values()].filter((c) => c.peerId === peer).at(-1)
  if (!k) return Promise.reject(new Error('no Child SA'))
  const id = 0x4154
  const seq = ++pingSeq
  const pkt = sealEsp(k, seq, echoRequest(k.localUla, k.peerUla, id, seq, Buffer.from('autotunnel ike probe')))
  const t0 = performance.now()
  return new Promise((resolve, reject) => {
    const w = (p: Buffer): void => {
      for (const c of children.values()) {
        const inner = openEsp(c, p)
        if (inner && isEchoReply(inner, k.peerUla, id, seq)) {
          espWaiters.delete(w)
          clearTimeout(timer)
          resolve({ rttMs: performance.now() - t0, spiOut: k.spiOut })
        }
      }
    }
    const timer = setTimeout(() => {
      espWaiters.delete(w)
      reject(new Error('no ESP echo reply'))
    }, timeoutMs)
    espWaiters.add(w)
    const to = remotes.get(k.peerId) ?? k.remote
    sock.send(pkt, 0, pkt.length, to.port, to.address)
  })
}

serveRequests<LabRequest & { timeoutMs?: number }>(cfg, async (req, peer) => {
  switch (req.op) {
    case 'connect': {
      const t0 = performance.now()
      const k = await engine.connect(peer)
      return { spiIn: k.spiIn, spiOut: k.spiOut, alg: k.alg, esn: k.esn, ms: performance.now() - t0 }
    }
    case 'rekeyChild': {
      const k = await engine.rekeyChild(peer)
      return { spiIn: k.spiIn, spiOut: k.spiOut }
    }
    case 'rekeyIke':
      return engine.rekeyIke(peer)
    case 'dpd':
      return engine.dpd(peer)
    case 'disconnect':
      return engine.disconnect(peer)
    case 'ping':
      return espPing(peer, req.timeoutMs ?? 2000)
    case 'firstReply': {
      // time from "a packet wants to go to a new peer" to its echo reply: IKE_SA_INIT + IKE_AUTH + ESP RTT
      const t0 = performance.now()
      await engine.connect(peer)
      await espPing(peer, req.timeoutMs ?? 5000)
      const ms = performance.now() - t0
      await engine.disconnect(peer)
      return { ms }
    }
    case 'bench': {
      // n fresh IKE SAs (each a full IKE_SA_INIT + IKE_AUTH with a Child SA), `concurrency` at a time
      const n = (req as { count?: number }).count ?? 100
      const conc = (req as { concurrency?: number }).concurrency ?? 1
      let next = 0
      let ok = 0
      let failed = 0
      const t0 = performance.now()
      const worker = async (): Promise<void> => {
        while (next < n) {
          next++
          try {
            await initiate(engine, peer)
            ok++
          } catch {
            failed++
          }
        }
      }
      await Promise.all(Array.from({ length: conc }, worker))
      const ms = performance.now() - t0
      for (const s of [...engine.sas.values()]) engine.dropSa(s, 'bench')
      return { ok, failed, ms, perSec: (ok * 1000) / ms }
    }
    case 'mobike': {
      // our address changed to `localAddress` (the test moved it): MOBIKE to every peer
      transport.setLocalAddress((req as { localAddress?: string }).localAddress ?? cfg.bind)
      await engine.updateAddresses()
      return engine.stats.mobikeUpdates
    }
    case 'list':
      return { sas: engine.list(), stats: engine.stats }
    case 'delayIkeRx':
      ikeRx.delayMs = (req as { ms?: number }).ms ?? 0
      return ikeRx.delayMs
    case 'exit':
      await engine.close()
      await sock.close()
      await plainSock?.close()
      setImmediate(() => process.exit(0))
      return true
    default:
      throw new Error(`unknown op ${req.op}`)
  }
})
out({ ev: 'ready', port: transport.local().port })
