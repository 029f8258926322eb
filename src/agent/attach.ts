// Wiring of the data path into a started agent (issue 7): the agent's socket shared with the tunnel, the host key,
// the `revoke` control command, and the agent's network and NAT changes forwarded to the Datapath. Kept apart from
// datapath.ts, which holds the Datapath itself.
import type { TsigKey, UpdateSink } from '../dns/client/update.js'
import type { WatcherOptions } from '../dns/client/watcher.js'
import type { Clock } from '../io/clock.js'
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import type { RelayConfig } from '../traversal/index.js'
import type { Agent } from './agent.js'
import { Datapath, type IkeAuth, type Primary } from './datapath.js'
import { LocalDns } from './local-dns.js'
import type { SignedQuery, WatchLike } from './peers.js'
import { parseResolverAddress } from './resolver.js'
import type { SystemResolverMode } from './system-resolver.js'

export interface AttachOptions {
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
  readonly query: SignedQuery
  /** The agent's watcher of the user's host list (PTR `_autotunnel._udp.D`); its options serve the peers too. */
  readonly hostList: WatchLike & { readonly opts: WatcherOptions }
  readonly key: TsigKey
  readonly tun: string | undefined
  /** "ADDR:PORT", or false for no resolver. */
  readonly resolver: string | false
  /** How the system resolver is pointed at it (system-resolver.ts). @default 'auto' */
  readonly systemResolver?: SystemResolverMode
  /** The file managed in resolv.conf mode. @default '/etc/resolv.conf' */
  readonly resolvConf?: string
  /** The agent's update client: publishes the key record, sends `revoke`. */
  readonly sink?: UpdateSink
  /** @default 'signature' */
  readonly ikeAuth?: IkeAuth
  /** @default true */
  readonly mobike?: boolean
  /** TURN relay fallback (docs/relay.md); undefined: none. */
  readonly relay?: RelayConfig
}

/** Starts peers, tunnel and resolver for a started agent; wires network changes; stops with the agent. */
export async function attachDatapath(agent: Agent, o: AttachOptions): Promise<Datapath> {
  const { Watcher } = await import('../dns/client/watcher.js')
  const { UdpSocket } = await import('../io/datagram.js')
  const cfg = agent.config
  const ikeAuth = o.ikeAuth ?? 'signature'
  const hostKey =
    ikeAuth === 'signature' && o.tun
      ? await (await import('../ike/hostkey.js')).loadOrCreateHostKey(cfg.stateDir)
      : undefined
  const udp = agent.udp
  // The tunnel reads datagrams through the agent's hook (so the agent keeps counting them) and sends on its socket.
  const shared: DatagramSocket & { raw?: unknown } = {
    bind: (port, address) => udp.bind(port, address),
    send: (buf, off, len, port, address, done) => udp.send(buf, off, len, port, address, done),
    onMessage: (h) => agent.onDatagram(h),
    address: () => udp.address(),
    close: () => udp.close(),
    raw: (udp as { raw?: unknown }).raw,
  }
  const dp = new Datapath(
    {
      clock: o.clock,
      random: o.random,
      log: o.log,
      udp: shared,
      query: o.query,
      watch: Object.assign(
        (name: string, type: number) => {
          const w = new Watcher({ log: o.log.child({ c: 'watch' }) }, { ...o.hostList.opts, name, type })
          // The watch's server went away (a killed cluster node, docs/cluster.md): re-publish through the next SRV
          // target now rather than when the lease is due (issue 12); one UPDATE however many watchers noticed.
          w.onLost(() => {
            agent.publisher.refreshNow()
            dp.refreshPublications()
          })
          return w
        },
        // rewatch (our address or the gateway's state changed): the shared DNS Push sessions may be dead.
        { renew: () => o.hostList.opts.pushSessions?.renew() },
      ),
      ...(o.sink ? { sink: o.sink } : {}),
    },
    {
      domain: cfg.domain,
      hostname: cfg.hostname,
      localUla: agent.identity.ula,
      tun: o.tun,
      key: o.key,
      local: () => ({ address: agent.reach?.local ?? '0.0.0.0', port: cfg.port }),
      ikeAuth,
      ...(hostKey ? { hostKey } : {}),
      zone: cfg.zone,
      leaseSec: cfg.leaseSec,
      ttlSec: cfg.ttlSec,
      mobike: o.mobike ?? true,
      selfNat: () => agent.selfNat,
      ...(agent.stunDemux ? { stunDemux: agent.stunDemux } : {}),
      ...(o.relay ? { relay: o.relay, onRelay: (r) => agent.setRelay(r) } : {}),
    },
  )
  // IKE Deletes and the key record's withdrawal happen before the agent withdraws the rest and closes its socket.
  agent.onStopping((clean) => dp.stopping(clean))
  const sink = o.sink
  if (sink)
    agent.addCommand('revoke', async (req) => {
      const { revokeHost } = await import('./revoke.js')
      const host = String(req.host ?? '')
      if (host.toLowerCase() === cfg.hostname.toLowerCase()) throw new Error('refusing to revoke this host itself')
      const r = await revokeHost({ query: o.query, sink }, { domain: cfg.domain, zone: cfg.zone, host })
      o.log.info('agent.revoked', { host: r.host, deleted: r.deleted.length, via: r.via })
      return r
    })
  await dp.start()
  const self = cfg.hostname.toLowerCase()
  const dns = new LocalDns(
    { log: o.log, socket: () => new UdpSocket() },
    {
      domain: cfg.domain,
      stateDir: cfg.stateDir,
      resolver: o.resolver === false ? undefined : parseResolverAddress(o.resolver),
      systemResolver: o.systemResolver ?? 'auto',
      tun: o.tun,
      ula: agent.identity.ula,
      ...(o.resolvConf ? { resolvConf: o.resolvConf } : {}),
    },
  )
  dp.resolverStatus = () => dns.status()
  // The machine's DNS is put back before anything else stops (and by the next start after a crash).
  agent.onStopping(() => dns.stop())
  await dns.start((h) => (h === self ? agent.identity.ula : dp.peers.get(h)?.ula))
  // `ping`, `ip`, `whois` (everyday.ts).
  const [{ registerEverydayCommands }, { parsePublicKeyRecord }] = await Promise.all([
    import('./everyday.js'),
    import('../ike/hostkey.js'),
  ])
  registerEverydayCommands({ agent, dp, parseKey: parsePublicKeyRecord, ...(hostKey ? { hostKey } : {}) })
  dp.notePrimary((agent.status() as { network?: { primary?: Primary } }).network?.primary)
  agent.onNetworkChange((net) => dp.networkChanged(net.primary))
  agent.onSelfNatChange(() => dp.selfNatChanged())
  return dp
}
