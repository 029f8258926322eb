// The agent's name service as one part (docs/resolver.md): the local resolver (resolver.ts) with its forwarder
// (forwarder.ts), in systemd-resolved mode a second one on the TUN interface's ULA (resolved sends a link's queries
// out of that link), and the system resolver pointed at them (system-resolver.ts). Started after the data path (the
// resolver answers from its peers), stopped first: the machine's own DNS is back before the resolver goes.
import type { DatagramSocket } from '../io/datagram.js'
import type { Logger } from '../io/log.js'
import { Forwarder } from './forwarder.js'
import { LocalResolver } from './resolver.js'
import { SystemResolver, type SystemResolverMode, type SystemResolverStatus } from './system-resolver.js'

const DNS_PORT = 53

export interface LocalDnsStatus {
  readonly address: string | null
  readonly port: number | null
  /** Why the resolver is not running, with what to do; null when it runs (or was not asked for). */
  readonly error: string | null
  readonly counters: LocalResolver['counters'] | null
  readonly forwarder: Forwarder['counters'] | null
  readonly system: SystemResolverStatus
}

/** A listen error as the user should read it: the cause and the fix. */
export function resolverListenError(at: { address: string; port: number }, e: NodeJS.ErrnoException): string {
  const where = `${at.address}:${at.port}`
  if (e.code === 'EACCES' && at.port < 1024)
    return `cannot listen on ${where}: port ${at.port} needs root or CAP_NET_BIND_SERVICE (or --resolver 127.0.0.1:5354 --system-resolver off)`
  if (e.code === 'EADDRINUSE')
    return `cannot listen on ${where}: another program has that address (ss -lunp 'sport = :${at.port}'); choose another with --resolver ADDR:53`
  if (e.code === 'EADDRNOTAVAIL') return `cannot listen on ${where}: no interface has that address`
  return `cannot listen on ${where}: ${e.code ?? e.message}`
}

export class LocalDns {
  readonly #log: Logger
  readonly #socket: () => DatagramSocket
  readonly #o: {
    domain: string
    resolver: { address: string; port: number } | undefined
    tun: string | undefined
    ula: string
  }
  readonly system: SystemResolver
  #main: LocalResolver | undefined
  #link: LocalResolver | undefined
  #forwarder: Forwarder | undefined
  #error: string | null = null
  #stopped = false

  constructor(
    deps: { log: Logger; socket: () => DatagramSocket; system?: SystemResolver },
    opts: {
      domain: string
      stateDir: string
      /** Where the resolver listens; undefined: --no-resolver. */
      resolver: { address: string; port: number } | undefined
      systemResolver: SystemResolverMode
      tun: string | undefined
      ula: string
      resolvConf?: string
    },
  ) {
    this.#log = deps.log
    this.#socket = deps.socket
    this.#o = { domain: opts.domain, resolver: opts.resolver, tun: opts.tun, ula: opts.ula }
    this.system =
      deps.system ??
      new SystemResolver(
        { log: deps.log.child({ c: 'system-resolver' }) },
        {
          mode: opts.resolver ? opts.systemResolver : 'off',
          stateDir: opts.stateDir,
          domain: opts.domain,
          tun: opts.tun,
          ...(opts.resolvConf ? { resolvConf: opts.resolvConf } : {}),
        },
      )
  }

  /** Recovers after a crash, starts the resolver(s), then points the system at them. Never throws for DNS set-up. */
  async start(ulaOf: (host: string) => string | undefined): Promise<void> {
    await this.system.recover()
    const at = this.#o.resolver
    if (!at) return
    await this.system.prepare(at)
    const mode = this.system.mode
    this.#forwarder = mode === 'resolv.conf' ? new Forwarder({ upstreams: () => this.system.upstreams }) : undefined
    const make = (forwarder?: Forwarder): LocalResolver =>
      new LocalResolver(
        { log: this.#log.child({ c: 'resolver' }) },
        { domain: this.#o.domain, ulaOf, ...(forwarder ? { forwarder } : {}) },
      )
    const main = make(this.#forwarder)
    try {
      await main.listen(this.#socket(), at.address, at.port)
      this.#main = main
    } catch (e) {
      this.#error = resolverListenError(at, e as NodeJS.ErrnoException)
      this.#log.warn('resolver.listen_failed', { ...at, err: this.#error })
    }
    let link: { address: string; port: number } | undefined
    if (mode === 'resolved' && this.#o.tun) {
      const r = make()
      try {
        link = await r.listen(this.#socket(), this.#o.ula, DNS_PORT)
        this.#link = r
      } catch (e) {
        this.#log.warn('resolver.link_listen_failed', {
          err: resolverListenError({ address: this.#o.ula, port: DNS_PORT }, e as NodeJS.ErrnoException),
        })
      }
    }
    if (this.#stopped) return
    await this.system.install(this.#main?.address, link)
  }

  status(): LocalDnsStatus {
    const a = this.#main?.address
    return {
      address: a?.address ?? this.#o.resolver?.address ?? null,
      port: a?.port ?? this.#o.resolver?.port ?? null,
      error: this.#error,
      counters: this.#main ? this.#main.counters : null,
      forwarder: this.#forwarder ? this.#forwarder.counters : null,
      system: this.system.status,
    }
  }

  /** The system's DNS put back first, then the resolvers closed. */
  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    await this.system
      .restore()
      .catch((e: Error) => this.#log.warn('system_resolver.restore_failed', { err: e.message }))
    await Promise.all([this.#main?.close(), this.#link?.close()])
  }
}
