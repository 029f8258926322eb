// The real `bin/autotunnel server` for the notify interop tests and bench/notify: ServerProcess on fixed
// loopback ports, so it can be restarted in place (a watcher must survive that), with TLS and metrics; plus
// watcher helpers.
import type { TsigKey } from '../../src/dns/tsig.js'
import { type AccountJson, freePort, type Ports, run, ServerProcess, tsigArg, ZONE } from './server-harness.js'

export { type AccountJson, run, tsigArg, ZONE }

export class NotifyServer extends ServerProcess {
  readonly extra: string[]
  #fixed: Ports | undefined

  constructor(extra: string[] = []) {
    super()
    this.extra = extra
  }

  get dnsPort(): number {
    return this.ports.dns
  }
  get tlsPort(): number {
    return this.ports.tls ?? 0
  }
  get metricsPort(): number {
    return this.ports.metrics ?? 0
  }

  /** Starts with `extra`, TLS and metrics; the ports are picked on the first start and kept for restarts. */
  override async start(): Promise<Ports> {
    this.#fixed ??= { dns: await freePort(), tls: await freePort(), metrics: await freePort() }
    return super.start(this.extra, { metrics: true, ports: this.#fixed })
  }
}

export function tsigKey(a: AccountJson): TsigKey {
  return { name: a.keyName, algorithm: a.algorithm, secret: Buffer.from(a.secret, 'base64') }
}

/** Resolves with the first value `pick` returns for an event, or rejects after `ms`. */
export function waitFor<E, T>(
  subscribe: (h: (e: E) => void) => () => void,
  pick: (e: E) => T | undefined,
  ms: number,
  what: string,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let off: () => void = () => {}
    const timer = setTimeout(() => {
      off()
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
    }, ms)
    off = subscribe((e) => {
      const v = pick(e)
      if (v === undefined) return
      clearTimeout(timer)
      off()
      resolve(v)
    })
  })
}
