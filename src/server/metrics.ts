// Prometheus text exposition format 0.0.4 on --metrics ADDR:PORT (GET /metrics). Counters are plain numbers
// bumped on the packet path; gauges are read through callbacks when scraped.
import { createServer, type Server } from 'node:http'
import { rcodeName } from '../dns/wire/header.js'
import { processStats } from '../io/process-stats.js'

type Labels = Record<string, string>

interface Family {
  readonly help: string
  readonly type: 'counter' | 'gauge'
  readonly values: Map<string, number>
  readonly read?: () => number
}

export function labelKey(labels: Labels | undefined): string {
  if (!labels) return ''
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
  return parts.length ? `{${parts.join(',')}}` : ''
}

export class Metrics {
  readonly #families = new Map<string, Family>()

  counter(name: string, help: string): (labels?: Labels, by?: number) => void {
    const f: Family = { help, type: 'counter', values: new Map() }
    this.#families.set(name, f)
    return (labels, by = 1) => {
      const k = labelKey(labels)
      f.values.set(k, (f.values.get(k) ?? 0) + by)
    }
  }

  /** A counter bumped by a precomputed labelKey() string: no per-call allocation on hot paths. */
  counterByKey(name: string, help: string): (key: string, by?: number) => void {
    const f: Family = { help, type: 'counter', values: new Map() }
    this.#families.set(name, f)
    return (k, by = 1) => {
      f.values.set(k, (f.values.get(k) ?? 0) + by)
    }
  }

  /** A series read when scraped; `type` 'counter' for monotonic values kept elsewhere. */
  gauge(name: string, help: string, read: () => number, type: 'gauge' | 'counter' = 'gauge'): void {
    this.#families.set(name, { help, type, values: new Map(), read })
  }

  /** Current value of a series (tests). */
  value(name: string, labels?: Labels): number {
    const f = this.#families.get(name)
    if (!f) return 0
    return f.read ? f.read() : (f.values.get(labelKey(labels)) ?? 0)
  }

  render(): string {
    const out: string[] = []
    for (const [name, f] of this.#families) {
      out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`)
      if (f.read) out.push(`${name} ${f.read()}`)
      else if (f.values.size === 0) out.push(`${name} 0`)
      else for (const [k, v] of f.values) out.push(`${name}${k} ${v}`)
    }
    return `${out.join('\n')}\n`
  }

  /** Serves render() on GET /metrics; resolves with the bound server. */
  listen(host: string, port: number): Promise<Server> {
    const srv = createServer((req, res) => {
      if (req.method === 'GET' && (req.url === '/metrics' || req.url === '/')) {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
        res.end(this.render())
      } else {
        res.writeHead(404).end()
      }
    })
    return new Promise((resolve, reject) => {
      srv.once('error', reject)
      srv.listen(port, host, () => {
        srv.off('error', reject)
        resolve(srv)
      })
    })
  }
}

/** The service's metric families, named once here so tests and docs agree. */
export class ServerMetrics {
  readonly registry = new Metrics()
  readonly #queries = this.registry.counterByKey(
    'autotunnel_dns_queries_total',
    'DNS queries answered, by transport and rcode',
  )
  readonly #queryKeys = new Map<string, string[]>()
  readonly updates = this.registry.counter('autotunnel_dns_updates_total', 'DNS UPDATE messages, by result rcode')
  readonly tsigFailures = this.registry.counter('autotunnel_tsig_failures_total', 'TSIG failures by kind')
  readonly leasesExpired = this.registry.counter('autotunnel_leases_expired_total', 'Records removed at lease expiry')
  readonly dropped = this.registry.counter('autotunnel_dns_dropped_total', 'Messages dropped, by reason')

  /** Counts one answered query (hot path: each label string is built once per transport and rcode). */
  query(transport: string, rcode: number): void {
    let byRcode = this.#queryKeys.get(transport)
    if (!byRcode) this.#queryKeys.set(transport, (byRcode = []))
    let k = byRcode[rcode]
    if (k === undefined) byRcode[rcode] = k = labelKey({ transport, rcode: rcodeName(rcode) })
    this.#queries(k)
  }
}

/**
 * The process's own figures (src/io/process-stats.ts), read when scraped: the Prometheus client conventions'
 * process_resident_memory_bytes and process_open_fds, and Node's ref'd timers and handles.
 */
export function registerProcessGauges(registry: Metrics): void {
  registry.gauge('process_resident_memory_bytes', 'Resident set size', () => processStats().rssBytes)
  registry.gauge('process_open_fds', 'Open file descriptors', () => processStats().openFds ?? 0)
  registry.gauge('nodejs_heap_used_bytes', 'V8 heap in use', () => processStats().heapUsedBytes)
  registry.gauge(
    'nodejs_active_timers',
    "Ref'd timers (process.getActiveResourcesInfo() 'Timeout')",
    () => processStats().activeResources.Timeout ?? 0,
  )
  registry.gauge('nodejs_active_resources', "Ref'd handles, requests and timers of every kind", () =>
    Object.values(processStats().activeResources).reduce((a, b) => a + b, 0),
  )
}
