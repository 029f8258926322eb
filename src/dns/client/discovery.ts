// Where a watcher's notification service is (RFC 8765 section 6.1, RFC 8764 section 3.1): the SRV targets of
// `_dns-push-tls._tcp`, `_dns-llq-tls._udp` or `_dns-llq._udp` under the user's domain, in the order RFC 2782
// gives (the next target on failure), with two fall-backs that keep a watcher working when a server node is lost:
// SRV look-ups go to the other nodes a cluster lists when the bootstrap server does not answer (docs/cluster.md),
// and an advertised address that cannot be reached is retried on the bootstrap address (issue 13 finding 1).
// Apart from watcher.ts, whose state machine only asks "which targets, in what order".

import type { Logger } from '../../io/log.js'
import { explainTransport } from './explain.js'
import { DnsTimeoutError, isPlainStandIn, lookupSrv, type ServerAddr, type SrvTarget } from './query.js'
import type { StreamTarget } from './stream.js'

export const LLQ_PLAIN_SERVICE = '_dns-llq._udp'

/** The SRV look-up of a mechanism got no answer at all: the server is away, not the mechanism. */
export class ServerSilentError extends Error {
  override readonly name = 'ServerSilentError'
}

export interface DiscoveryOptions {
  /** The watched name (for logs). */
  readonly name: string
  /** The domain whose SRV records name the notification server. */
  readonly domain: string
  /** Bootstrap server for SRV look-ups. */
  readonly server: ServerAddr
  readonly tls?: StreamTarget['tls']
  readonly fingerprint256?: string
  readonly timeoutMs?: number
}

export class ServiceDiscovery {
  readonly opts: DiscoveryOptions
  readonly #log: Logger
  /** DNS servers learned from the plain-LLQ SRV answer, tried for look-ups when the bootstrap does not answer. */
  #lookupServers: ServerAddr[] = []

  constructor(opts: DiscoveryOptions, log: Logger) {
    this.opts = opts
    this.#log = log
  }

  /**
   * SRV look-up through the bootstrap server, else through the nodes the last plain-LLQ SRV answer named: a
   * cluster lists every live node (docs/cluster.md), so losing the bootstrap node does not lose discovery.
   */
  async #srv(name: string): Promise<SrvTarget[]> {
    let last: unknown
    const others = this.#lookupServers
    for (const server of [this.opts.server, ...others]) {
      try {
        // With other nodes to ask, one unanswered attempt per server is enough to move on.
        return await lookupSrv(server, name, others.length ? { ...this.#xopts(), attempts: 1 } : this.#xopts())
      } catch (e) {
        last = e
      }
    }
    throw last
  }

  #learn(plain: readonly SrvTarget[]): void {
    const b = this.opts.server
    this.#lookupServers = plain
      .filter((t) => t.addrs[0] !== undefined && t.port !== 0)
      .map((t) => ({ host: t.addrs[0]!, port: t.port, transport: 'udp' as const }))
      .filter((s) => s.host !== b.host || s.port !== b.port)
  }

  /** Every usable target of the service, in the SRV answer's order (RFC 2782: the next one on failure). */
  async targets(srv: string, tls: boolean): Promise<StreamTarget[]> {
    const domain = fqdn(this.opts.domain)
    const [targets, plainAll] = await Promise.all([
      this.#srv(`${srv}.${domain}`).catch((e: unknown) => {
        throw e instanceof DnsTimeoutError ? new ServerSilentError(e.message) : e
      }),
      // A -tls name that only repeats the plain LLQ service's target and port names no TLS listener: skip it
      // rather than wait for a TLS handshake that never completes.
      srv === LLQ_PLAIN_SERVICE ? undefined : this.#srv(`${LLQ_PLAIN_SERVICE}.${domain}`).catch(() => undefined),
    ])
    const plainList = srv === LLQ_PLAIN_SERVICE ? targets : (plainAll ?? [])
    if (plainList.length) this.#learn(plainList)
    const out: StreamTarget[] = []
    for (const t of targets) {
      const host = t.addrs[0] ?? (t.target === domain ? this.opts.server.host : undefined)
      if (!host || t.port === 0) continue
      if (
        tls &&
        isPlainStandIn(
          t,
          plainList.find((p) => p.target.toLowerCase() === t.target.toLowerCase()),
        )
      )
        continue
      out.push({
        host,
        port: t.port,
        // The certificate is checked against the server's name (as the update client does), so a fall-back to the
        // bootstrap address below, or a certificate that names no addresses, still verifies.
        ...(tls ? { tls: { servername: t.target.replace(/\.$/, ''), ...(this.opts.tls ?? {}) } } : {}),
        ...(this.opts.fingerprint256 ? { fingerprint256: this.opts.fingerprint256 } : {}),
      })
    }
    return out
  }

  /**
   * Runs `attempt` on the advertised target; when that cannot be reached and the bootstrap server is another
   * address, once more on the bootstrap address (the address the user gave reaches the same service: issue 13
   * finding 1, a server that advertised an address only it can reach).
   */
  async withFallback<T>(t: StreamTarget, what: string, attempt: (t: StreamTarget) => Promise<T>): Promise<T> {
    try {
      return await attempt(t)
    } catch (e) {
      const boot = this.opts.server.host
      const x = explainTransport(e, { via: `${what}:${t.host}:${t.port}` })
      if (x.kind !== 'unreachable' || t.host === boot) throw e
      this.#log.warn('watch.server_fallback', {
        name: this.opts.name,
        advertised: `${t.host}:${t.port}`,
        fallback: `${boot}:${t.port}`,
        why: x.message,
      })
      return attempt({ ...t, host: boot })
    }
  }

  #xopts(): { timeoutMs?: number } {
    return this.opts.timeoutMs ? { timeoutMs: this.opts.timeoutMs } : {}
  }
}

function fqdn(n: string): string {
  return n.endsWith('.') ? n : `${n}.`
}
