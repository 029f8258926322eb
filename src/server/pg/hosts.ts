// The hosts of a postgres:// store URL (docs/cluster.md, Deploying). libpq takes a list of hosts and connects to
// the first one that suits `target_session_attrs`; the `pg` client takes one host, so the list is parsed here and
// primary.ts picks the writable server among them. Two libpq forms are accepted:
//
//   postgres://USER:PASSWORD@HOST1:PORT1,HOST2:PORT2/DB?target_session_attrs=read-write   (hosts in the authority)
//   postgres://USER:PASSWORD@/DB?host=HOST1,HOST2&port=PORT1,PORT2                       (host= and port= lists)
//
// A `port=` list holds one port for every host or one per host; hosts may be names, IPv4, [IPv6] or (in host=) the
// directory of a unix socket. target_session_attrs may be read-write or primary (both mean the writable primary to
// autotunnel, which writes) or absent; libpq's key=value form (`host=a,b dbname=...`) is not accepted.
// No import of pg here: store-spec.ts checks a URL before anything connects.
import { StoreError } from '../db.js'

export interface PgHost {
  /** A name, an address (IPv6 without brackets) or a unix socket directory. */
  readonly host: string
  /** undefined: pg's default (PGPORT or 5432). */
  readonly port: number | undefined
}

export interface PgUrl {
  /**
   * What pg parses (user, password, database, sslmode and the other parameters), without target_session_attrs. With
   * several hosts, host and port are left out and set per connection (primary.ts); with one, it is the URL as given.
   */
  readonly connectionString: string
  /** The hosts in the URL's order; one entry for a single-host URL (its host as written, '' for pg's default). */
  readonly hosts: readonly PgHost[]
}

const SCHEME = /^(postgres(?:ql)?:\/\/)([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/i
const SESSION_ATTRS = new Set(['read-write', 'primary'])
const MAX_PORT = 65535

function bad(what: string): StoreError {
  return new StoreError(`store URL: ${what}`)
}

function port(text: string, where: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > MAX_PORT)
    throw bad(`port ${JSON.stringify(text)} ${where} is not a port number (1-${MAX_PORT})`)
  return Number(text)
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    throw bad(`${JSON.stringify(text)} is not valid percent-encoding`)
  }
}

/** One `host[:port]` or `[v6][:port]` of the authority. */
function authorityHost(item: string, n: number): { host: string; port: string | undefined } {
  if (item.startsWith('[')) {
    const m = /^\[([^\]]+)\](?::(.*))?$/.exec(item)
    if (!m) throw bad(`host ${n} ${JSON.stringify(item)}: an IPv6 address is written [ADDRESS] or [ADDRESS]:PORT`)
    return { host: m[1]!, port: m[2] }
  }
  const colon = item.lastIndexOf(':')
  if (colon < 0) return { host: decode(item), port: undefined }
  return { host: decode(item.slice(0, colon)), port: item.slice(colon + 1) }
}

/** Parses the host list of a postgres:// URL; throws StoreError saying what to write instead. */
export function parsePgUrl(url: string): PgUrl {
  const m = SCHEME.exec(url)
  if (!m) throw bad('want postgres://USER:PASSWORD@HOST[:PORT][,HOST2[:PORT2]...]/DB')
  const [, scheme, authority, path, query = '', fragment = ''] = m as unknown as [
    string,
    string,
    string,
    string,
    string?,
    string?,
  ]
  const at = authority.lastIndexOf('@')
  const userinfo = at < 0 ? '' : authority.slice(0, at + 1)
  const hostPart = authority.slice(at + 1)
  const params = new URLSearchParams(query.slice(1))

  const attrs = params.get('target_session_attrs')
  if (attrs !== null && !SESSION_ATTRS.has(attrs))
    throw bad(
      `target_session_attrs=${attrs}: autotunnel writes, so it needs the writable primary: ` +
        'use target_session_attrs=read-write (or primary), or leave it out',
    )

  const hostParam = params.get('host') ?? ''
  const portParam = params.get('port') ?? ''
  const many = (t: string): boolean => t.includes(',')
  if (!many(hostPart) && !many(hostParam) && !many(portParam)) {
    // One host: pg parses the URL as before (its defaults for what is left out, host= over the authority's host).
    params.delete('target_session_attrs')
    const q = params.toString()
    const host = hostParam || decode(hostPart.replace(/:\d*$/, '').replace(/^\[(.*)\]$/, '$1'))
    const p = portParam || /:(\d*)$/.exec(hostPart)?.[1] || ''
    return {
      connectionString: attrs === null ? url : `${scheme}${authority}${path}${q ? `?${q}` : ''}${fragment}`,
      hosts: [{ host, port: p === '' ? undefined : port(p, `of ${host || 'the host'}`) }],
    }
  }

  let items: { host: string; port: string | undefined }[]
  if (hostParam !== '') {
    if (hostPart !== '')
      throw bad(`hosts given twice (${JSON.stringify(hostPart)} and host=${hostParam}): give them in one place`)
    items = hostParam.split(',').map((h) => ({ host: h, port: undefined }))
  } else items = hostPart === '' ? [] : hostPart.split(',').map((h, i) => authorityHost(h, i + 1))
  items.forEach((h, i) => {
    if (h.host === '') throw bad(`host ${i + 1} of ${items.length} is empty (a stray comma?)`)
  })
  if (portParam !== '') {
    if (items.some((h) => h.port !== undefined))
      throw bad(`ports given twice (after the hosts and in port=${portParam}): give them in one place`)
    const ports = portParam.split(',')
    if (items.length <= 1) throw bad(`port=${portParam} lists several ports for one host`)
    if (ports.length !== 1 && ports.length !== items.length)
      throw bad(`${items.length} hosts but ${ports.length} ports in port=${portParam}: give one port, or one per host`)
    items = items.map((h, i) => ({ host: h.host, port: ports.length === 1 ? ports[0] : ports[i] }))
  }
  const hosts: PgHost[] = items.map((h, i) => ({
    host: h.host,
    port: h.port === undefined || h.port === '' ? undefined : port(h.port, `of host ${i + 1} (${h.host})`),
  }))
  for (const k of ['target_session_attrs', 'host', 'port']) params.delete(k)
  const q = params.toString()
  // A placeholder host: primary.ts sets each connection's host and port.
  return { connectionString: `${scheme}${userinfo}localhost${path}${q ? `?${q}` : ''}`, hosts }
}

/** HOST:PORT for messages ([v6]:PORT, the socket directory, "(default host)"). */
export function hostLabel(h: PgHost): string {
  const host = h.host === '' ? '(default host)' : h.host.includes(':') ? `[${h.host}]` : h.host
  return h.port === undefined ? host : `${host}:${h.port}`
}
