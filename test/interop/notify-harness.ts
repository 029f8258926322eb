// The real `bin/autotunnel server` for the notify interop tests and bench/notify: ServerProcess on fixed
// loopback ports, so it can be restarted in place (a watcher must survive that), with TLS and metrics; plus
// watcher helpers.
import { spawn } from 'node:child_process'
import { after, before } from 'node:test'
import type { WatcherOptions } from '../../src/dns/client/watcher.js'
import type { TsigKey } from '../../src/dns/tsig.js'
import { RRType } from '../../src/dns/wire/rr-table.js'
import { PgCluster } from './pg-cluster.js'
import { retryOnAddrInUse } from './ports.js'
import { type AccountJson, freePorts, type Ports, run, ServerProcess, tsigArg, ZONE } from './server-harness.js'

export { type AccountJson, run, tsigArg, ZONE }

const PORT_ATTEMPTS = 5

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

  /**
   * Starts with `extra`, TLS and metrics; the ports are picked on the first start and kept for restarts. Another
   * process may take a picked port before the server binds it: the first start then tries new ones.
   */
  override async start(): Promise<Ports> {
    if (this.#fixed) return super.start(this.extra, { metrics: true, ports: this.#fixed })
    return retryOnAddrInUse(async () => {
      const [dns, tls, metrics] = (await freePorts(3)) as [number, number, number]
      const p = await super.start(this.extra, { metrics: true, ports: { dns, tls, metrics } })
      this.#fixed = { dns, tls, metrics }
      return p
    }, PORT_ATTEMPTS)
  }
}

/**
 * Three `autotunnel server` nodes (with `extra`; node i advertises its own server name nsi) sharing one throwaway
 * PostgreSQL, and the account alice: started before the calling file's tests, removed after them.
 */
export function threeNodeCluster(extra: string[] = []): {
  readonly nodes: [NotifyServer, NotifyServer, NotifyServer]
  readonly pg: PgCluster
  readonly alice: AccountJson
} {
  const nodes = [1, 2, 3].map((i) => new NotifyServer([...extra, '--advertise', `ns${i}:127.0.0.1`])) as [
    NotifyServer,
    NotifyServer,
    NotifyServer,
  ]
  let pg: PgCluster | undefined
  let alice: AccountJson | undefined
  before(async () => {
    pg = await PgCluster.start()
    for (const n of nodes) n.store = pg.url
    alice = await nodes[0].addAccount('alice')
    await Promise.all(nodes.map((n) => n.start()))
  })
  after(async () => {
    await Promise.all(nodes.map((n) => n.cleanup()))
    await pg?.destroy()
  })
  return {
    nodes,
    get pg() {
      return pg!
    },
    get alice() {
      return alice!
    },
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

/** Runs `python3 -c CODE` (dnspython and psycopg checks); resolves with its stdout, rejects with its stderr. */
export function runPython(code: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/python3', ['-c', code], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString()
    })
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString()
    })
    p.once('exit', (c) => (c === 0 ? resolve(out) : reject(new Error(`python failed: ${err}`))))
  })
}

/**
 * Options for a Watcher of `name` (AAAA) in `acct`'s domain on `srv` over loopback: signed with the account key, TLS
 * pinned by the server's fingerprint, LLQ over UDP, a short back-off (200 ms to 1 s) and a 2 s timeout; `extra`
 * overrides any of them.
 */
export function watcherOptions(
  srv: NotifyServer,
  acct: AccountJson,
  name: string,
  extra: Partial<WatcherOptions> = {},
): WatcherOptions {
  return {
    name,
    type: RRType.AAAA,
    domain: `${acct.user}.${ZONE}`,
    server: { host: '127.0.0.1', port: srv.dnsPort },
    key: tsigKey(acct),
    tls: { rejectUnauthorized: false },
    fingerprint256: srv.fingerprint,
    llqTransports: ['udp'],
    retryMinMs: 200,
    retryMaxMs: 1000,
    timeoutMs: 2000,
    ...extra,
  }
}
