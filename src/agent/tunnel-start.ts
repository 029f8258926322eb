// Starting the agent's tunnel (Datapath.start() with a TUN device): the TUN device, the Tunnel on the agent's
// UDP socket (wrapped for the TURN relay when one is configured), the hole-punching keepalives and the IKEv2
// engine that keys it. Kept apart from datapath.ts, which reacts to peers and the network once this runs: this
// file is the wiring of the parts, done once, and changes with them.
import type { IkeEngine } from '../ike/engine.js'
import { Puncher, RelayManager } from '../traversal/index.js'
import type { LinuxTun } from '../tunnel/tun/linux-tun.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import type { DatapathDeps, DatapathOptions, IkeAuth } from './datapath.js'
import type { Peer, PeerManager } from './peers.js'

/**
 * `--tunnel-threads`: 'off' = everything on the main thread (the default since the TUN offloads), 'on' = send
 * thread + TUN I/O thread, 'send' = the send thread reads the TUN device itself.
 */
export type TunnelThreads = 'on' | 'send' | 'off'

/**
 * The mode the tunnel runs in: the option, else AUTOTUNNEL_TUNNEL_THREADS (set by `up --tunnel-threads`), else
 * the older AUTOTUNNEL_TX_THREAD=0|1, else 'off'. Figures behind the default: docs/tunnel.md "Thread modes in
 * the agent" (with the TUN offloads one thread has the most TCP throughput and the least latency in bench/tunnel;
 * the threads keep more small-packet throughput).
 */
export function tunnelThreadsMode(opt?: TunnelThreads, env: NodeJS.ProcessEnv = process.env): TunnelThreads {
  if (opt) return opt
  const e = env.AUTOTUNNEL_TUNNEL_THREADS
  if (e === 'on' || e === 'send' || e === 'off') return e
  if (env.AUTOTUNNEL_TX_THREAD === '1') return 'on'
  return 'off'
}

export interface TunnelParts {
  readonly tun: LinuxTun
  readonly tunnel: Tunnel
  readonly engine: IkeEngine
  /** TURN relay fallback, when configured. */
  readonly relay: RelayManager | undefined
  /** NAT keepalive bursts toward peers we punch to. */
  readonly puncher: Puncher
}

/** What startTunnel needs of the Datapath that runs it. */
export interface TunnelContext {
  readonly peers: PeerManager
  /** The running tunnel (for the relay manager, once this has returned). */
  readonly tunnel: () => Tunnel | undefined
  /** The endpoint IKE should use for a peer (the data path's path decision). */
  readonly endpointOf: (p: Peer) => { address: string; port: number } | undefined
  readonly ikeAuth: IkeAuth
}

/** Opens the TUN device `name` and starts the tunnel and its IKE engine. */
export async function startTunnel(
  name: string,
  d: DatapathDeps,
  o: DatapathOptions,
  c: TunnelContext,
): Promise<TunnelParts> {
  const { clock, random, log, udp } = d
  const [{ LinuxTun }, { Tunnel }, { IkeEngine }, glue, { derivePsk }, { publicKeysFromTxt }] = await Promise.all([
    import('../tunnel/tun/linux-tun.js'),
    import('../tunnel/tunnel.js'),
    import('../ike/engine.js'),
    import('../ike/tunnel-glue.js'),
    import('../ike/auth.js'),
    import('../ike/hostkey.js'),
  ])
  const tun = LinuxTun.open({ name, localUla: o.localUla })
  const { NAT_KEEPALIVE } = await import('../tunnel/udp-encap.js')
  let udpOut = udp
  let relay: RelayManager | undefined
  if (o.relay) {
    const onRelay = o.onRelay
    relay = new RelayManager(
      {
        clock,
        random,
        log: log.child({ c: 'relay' }),
        udp,
        tunnel: () => c.tunnel(),
        onRelay: (r) => onRelay?.(r),
      },
      o.relay,
    )
    // IKE, keepalives and punches to relayed peers leave wrapped for the TURN server (ESP: the Sender itself).
    udpOut = relay.socket()
  }
  const puncher = new Puncher({
    clock,
    log: log.child({ c: 'punch' }),
    send: (ep) => udpOut.send(NAT_KEEPALIVE, 0, 1, ep.port, ep.address),
  })
  // One thread by default since the TUN offloads (tunnelThreadsMode above; figures in docs/tunnel.md).
  const mode = tunnelThreadsMode(o.tunnelThreads)
  const tunnel = new Tunnel(
    { tun, socket: udpOut, clock, random, log: log.child({ c: 'tunnel' }) },
    {
      localUla: o.localUla,
      txThread: mode !== 'off',
      ...(mode === 'send' ? { tunReadIn: 'send' as const } : { tunReadIn: 'io' as const }),
    },
  )
  const user = o.domain.split('.')[0] ?? ''
  const ikeLog = log.child({ c: 'ike' })
  const ulaOf = (id: string): string | undefined => c.peers.get(id)?.ula
  const engine: IkeEngine = new IkeEngine(
    { transport: glue.tunnelTransport(tunnel, o.local), clock, random, log: ikeLog },
    {
      localId: `${o.hostname}.${o.domain}`.toLowerCase(),
      localUla: o.localUla,
      // Signature mode accepts signatures only: a PSK anyone with the account secret can compute would
      // let a revoked host back in. PSK mode signs nothing but accepts both.
      auth: c.ikeAuth,
      ...(c.ikeAuth === 'signature' && o.hostKey ? { hostKey: o.hostKey } : {}),
      ...(c.ikeAuth === 'psk' ? { psk: derivePsk(o.key.secret, user) } : {}),
      mobike: o.mobike ?? true,
      lookupPeer: async (id) => {
        const p = await c.peers.lookup(id)
        if (!p?.ula) return undefined
        const ep = c.endpointOf(p)
        return {
          id: p.fqdn,
          ula: p.ula,
          publicKeys: publicKeysFromTxt(p.publicKeys),
          ...(ep ? { endpoint: ep } : {}),
        }
      },
    },
    {
      ...glue.tunnelEvents(tunnel, ulaOf),
      ikeUp: (s) => {
        glue.tunnelEvents(tunnel, ulaOf).ikeUp?.(s)
        ikeLog.info('ike.up', {
          peer: s.peerId,
          initiator: s.initiator,
          suite: s.suite,
          nat: s.natLocal,
          auth: c.ikeAuth,
          peerAuth: s.peerAuth,
          mobike: s.mobike,
        })
      },
    },
  )
  glue.attachTunnel(engine, tunnel, (ula) => c.peers.byUla(ula)?.fqdn, ikeLog)
  tunnel.setStunDemux(o.stunDemux)
  tunnel.start()
  log.info('datapath.tunnel', { tun: tun.name, mtu: tun.mtu, ula: o.localUla, ikeAuth: c.ikeAuth })
  return { tun, tunnel, engine, relay, puncher }
}
