// Test tooling: our IKE engine driving the real data plane (src/tunnel with a Linux TUN device) in its own
// process inside a network namespace, so ping -6 and TCP run through ours <-> strongSwan's libipsec.
// Same JSON-lines protocol and config as peer-main.ts, plus { tun?: string }. The first packet routed into
// the TUN device towards a peer with no SA starts IKE (tunnel onNoSa -> engine.connect).

import { IkeEngine } from '../../src/ike/engine.js'
import { hostKeyFromPem } from '../../src/ike/hostkey.js'
import { DEFAULT_CHILD_POLICY, DEFAULT_IKE_POLICY } from '../../src/ike/proposals.js'
import { attachTunnel, tunnelEvents, tunnelTransport } from '../../src/ike/tunnel-glue.js'
import { SystemClock } from '../../src/io/clock.js'
import { UdpSocket } from '../../src/io/datagram.js'
import { jsonLogger, nullLogger } from '../../src/io/log.js'
import { SystemRandom } from '../../src/io/random.js'
import { LinuxTun } from '../../src/tunnel/tun/linux-tun.js'
import { Tunnel } from '../../src/tunnel/tunnel.js'
import { type LabMainConfig, out, peerTable, readLabConfig, serveRequests } from './main-common.js'

interface Config extends LabMainConfig {
  tun?: string
}

const cfg = readLabConfig<Config>()
const log = cfg.debug ? jsonLogger({ level: 'debug' }) : nullLogger
const clock = new SystemClock()
const random = new SystemRandom()
const tun = LinuxTun.open({ name: cfg.tun ?? 'autotun0', localUla: cfg.localUla })
const socket = new UdpSocket()
await socket.bind(cfg.port, cfg.bind)
const tunnel = new Tunnel({ tun, socket, clock, log, random }, { localUla: cfg.localUla })
const peers = peerTable(cfg.peers)
const byUla = new Map(cfg.peers.map((p) => [p.ula, p.id]))
const hostKey = cfg.hostKeyPem ? hostKeyFromPem(cfg.hostKeyPem, 'hostKeyPem') : undefined
const events = tunnelEvents(tunnel, (id) => peers.get(id)?.ula)
let localAddress = cfg.localAddress ?? cfg.bind
const engine = new IkeEngine(
  { transport: tunnelTransport(tunnel, () => ({ address: localAddress, port: cfg.port })), clock, random, log },
  {
    localId: cfg.localId,
    localUla: cfg.localUla,
    auth: cfg.auth,
    ...(hostKey ? { hostKey } : {}),
    ...(cfg.psk ? { psk: Buffer.from(cfg.psk, 'hex') } : {}),
    lookupPeer: async (id) => peers.get(id),
    ikePolicy: { ...DEFAULT_IKE_POLICY, ...(cfg.groups ? { groups: cfg.groups } : {}) },
    childPolicy: {
      ...DEFAULT_CHILD_POLICY,
      ...(cfg.childCiphers ? { ciphers: cfg.childCiphers } : {}),
      ...(cfg.esn ? { esn: cfg.esn } : {}),
    },
    dpdIntervalMs: 0,
  },
  {
    ...events,
    childUp: (k) => {
      events.childUp?.(k)
      out({ ev: 'childUp', spiIn: k.spiIn, spiOut: k.spiOut, alg: k.alg, esn: k.esn, replaces: k.replaces })
    },
    childDown: (d) => {
      events.childDown?.(d)
      out({ ev: 'childDown', ...d })
    },
    peerEndpoint: (e) => {
      events.peerEndpoint?.(e)
      out({ ev: 'peerEndpoint', ...e })
    },
    ikeUp: (s) => {
      events.ikeUp?.(s)
      out({ ev: 'ikeUp', spiI: s.spiI, spiR: s.spiR, suite: s.suite, initiator: s.initiator })
    },
  },
)
attachTunnel(engine, tunnel, (ula) => byUla.get(ula), log)
for (const p of cfg.peers) {
  tunnel.addPeer({ ula: p.ula, endpoint: { address: p.address, port: p.port } })
  tun.addRoute(p.ula)
}
tunnel.start()

serveRequests(cfg, async (req, peer) => {
  switch (req.op) {
    case 'connect':
      return (await engine.connect(peer)).spiIn
    case 'rekeyChild':
      return (await engine.rekeyChild(peer)).spiIn
    case 'rekeyIke':
      return engine.rekeyIke(peer)
    case 'mobike': {
      localAddress = (req as { localAddress?: string }).localAddress ?? localAddress
      const t0 = performance.now()
      await engine.updateAddresses()
      return { ms: performance.now() - t0, updates: engine.stats.mobikeUpdates }
    }
    case 'list':
      return { sas: engine.list(), stats: engine.stats, counters: tunnel.counters() }
    case 'exit':
      await engine.close()
      await tunnel.close()
      setImmediate(() => process.exit(0))
      return true
    default:
      throw new Error(`unknown op ${req.op}`)
  }
})
out({ ev: 'ready', port: cfg.port })
