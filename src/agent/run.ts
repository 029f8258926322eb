// `autotunnel up|status|down|browse` (src/cli/agent.ts): wiring of the real edges (system clock, random, iproute2,
// node:dgram, the PortMapper, the UPDATE client) around Agent, and the three control-socket clients.
import { mkdir, readFile } from 'node:fs/promises'
import { accountKeyName, deriveTsigKeyAsync, isAccountAlgorithm } from '../dns/account-key.js'
import { PushSessionPool } from '../dns/client/push-session.js'
import { type TsigKey, UpdateClient } from '../dns/client/update.js'
import { Watcher } from '../dns/client/watcher.js'
import { RRType } from '../dns/wire/rr-table.js'
import { SystemClock } from '../io/clock.js'
import { UdpSocket } from '../io/datagram.js'
import { splitHostPort } from '../io/host-port.js'
import { jsonLogger, type LogLevel } from '../io/log.js'
import { SystemRandom } from '../io/random.js'
import { openToOthers } from '../io/secret-file.js'
import { type PortMapChangeReason, PortMapper } from '../portmap/index.js'
import { Agent, type AgentStun } from './agent.js'
import { browseServices } from './browse.js'
import { type AgentLocks, acquireAgentLocks } from './lock.js'
import { NetMonitor, systemReader } from './netmon.js'
import type { UpOptions } from './options.js'
import { AUTOTUNNEL_SERVICE, parseServiceSpec, presentRR } from './records.js'

export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/**
 * A configuration error the server reported (wrong key, domain not in the account: src/dns/client/explain.ts): `up`
 * exits 1 with the message at once, without waiting for retries still under way (src/cli/agent.ts).
 */
export class FatalConfigError extends Error {
  override readonly name = 'FatalConfigError'
}

const HOST_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i
/** Mapper events after which the gateway's connection tracking is gone (Datapath.gatewayStateLost). */
const GATEWAY_STATE_LOST: ReadonlySet<PortMapChangeReason> = new Set(['recreated', 'external-changed'])

/** "host", "host:port", "[v6]:port" -> {host, port}. */
export function parseHostPort(s: string, defaultPort: number): { host: string; port: number } {
  const hp = splitHostPort(s, defaultPort)
  if (!hp) throw new UsageError(`bad address ${JSON.stringify(s)}: want HOST[:PORT], the port from 1 to 65535`)
  return hp
}

export function intOption(name: string, v: string, min: number, max: number): number {
  const n = Number(v)
  if (!/^\d+$/.test(v) || n < min || n > max) throw new UsageError(`--${name} must be an integer in [${min}, ${max}]`)
  return n
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '')
}

/** The TSIG key from `account add --json` output, or derived from a password (docs/server.md, account-key.ts). */
export async function loadKey(
  o: { keyFile?: string; passwordStdin?: boolean; keyAlgorithm?: string },
  domain: string,
  readPassword: () => Promise<string> = readStdin,
): Promise<TsigKey> {
  if (!!o.keyFile === !!o.passwordStdin) throw new UsageError('give exactly one of --key-file and --password-stdin')
  const user = domain.split('.')[0] ?? ''
  const zone = domain.slice(user.length + 1)
  if (o.keyFile) {
    const j = JSON.parse(await readFile(o.keyFile, 'utf8')) as Record<string, unknown>
    const { keyName, algorithm, secret } = j
    if (typeof keyName !== 'string' || typeof algorithm !== 'string' || typeof secret !== 'string')
      throw new UsageError(`${o.keyFile}: want the JSON of \`autotunnel account add --json\``)
    return { name: keyName, algorithm, secret: Buffer.from(secret, 'base64') }
  }
  const password = await readPassword()
  if (!password) throw new UsageError('empty password on stdin')
  const algorithm = o.keyAlgorithm ?? 'hmac-sha256'
  if (!isAccountAlgorithm(algorithm)) throw new UsageError(`unsupported key algorithm ${algorithm}`)
  return {
    name: accountKeyName(user, zone),
    algorithm,
    secret: await deriveTsigKeyAsync(user, zone, password, algorithm),
  }
}

/**
 * The user's domain: --domain, else the key file's (`domain`, or its key name, which is the domain: docs/server.md).
 * A --domain that differs from the key file's is an error: every UPDATE would be refused (issue 13 finding 3).
 */
export async function resolveDomain(o: {
  domain?: string
  keyFile?: string
  passwordStdin?: boolean
}): Promise<string> {
  const norm = (d: string): string => d.toLowerCase().replace(/\.$/, '')
  if (!!o.keyFile === !!o.passwordStdin) throw new UsageError('give exactly one of --key-file and --password-stdin')
  if (!o.keyFile) {
    if (!o.domain)
      throw new UsageError('--domain USER.ZONE is needed with --password-stdin (the key is derived from it)')
    return norm(o.domain)
  }
  let j: Record<string, unknown>
  try {
    j = JSON.parse(await readFile(o.keyFile, 'utf8')) as Record<string, unknown>
  } catch (e) {
    throw new UsageError(`${o.keyFile}: ${(e as Error).message}; want the JSON of \`autotunnel account add --json\``)
  }
  const fromKey = typeof j.domain === 'string' ? j.domain : typeof j.keyName === 'string' ? j.keyName : undefined
  if (!fromKey) {
    if (o.domain) return norm(o.domain)
    throw new UsageError(`${o.keyFile}: no domain in it; want the JSON of \`autotunnel account add --json\``)
  }
  if (o.domain && norm(o.domain) !== norm(fromKey))
    throw new UsageError(
      `--domain ${o.domain} does not match the key file's domain ${norm(fromKey)} (${o.keyFile}): this key can only ` +
        `update ${norm(fromKey)}; drop --domain, or use the key file of ${norm(o.domain)}`,
    )
  return norm(fromKey)
}

export async function runUp(o: UpOptions): Promise<void> {
  const log = jsonLogger(o.logLevel ? { level: o.logLevel as LogLevel } : {})
  const domain = await resolveDomain(o)
  const labels = domain.split('.')
  if (labels.length < 2 || !labels.every((l) => HOST_LABEL.test(l)))
    throw new UsageError(`--domain ${domain}: want USER.ZONE, e.g. alice.members.example`)
  if (!HOST_LABEL.test(o.hostname)) throw new UsageError(`--hostname ${o.hostname}: want one DNS label`)
  const port = intOption('port', o.port, 1, 0xffff)
  const leaseSec = intOption('lease', o.lease, 1, 0x7fffffff)
  const ttlSec = intOption('ttl', o.ttl, 0, 0x7fffffff)
  const services = o.service.map(parseServiceSpec)
  const server = parseHostPort(o.server, 53)
  const key = await loadKey(o, domain)
  // Without CAP_NET_ADMIN the TUN device cannot be made: say so and stop before anything is published.
  if (o.tun !== false) {
    const problem = (await import('../tunnel/tun/linux-tun.js')).tunPermissionProblem(o.tun)
    if (problem) throw new UsageError(problem)
  }
  const { resolveSso, SsoUsageError } = await import('./sso.js')
  const ssoUser = await resolveSso(o, labels[0] ?? '', log).catch((e: unknown) => {
    throw e instanceof SsoUsageError ? new UsageError(e.message) : e
  })
  const { planAgentHttp } = await import('./http.js')
  const httpPlan = planAgentHttp(o)
  if (o.keyFile && openToOthers(o.keyFile) & 0o044)
    log.warn('agent.key_file_mode', { file: o.keyFile, hint: 'group or others can read the account key: chmod 600 it' })
  await mkdir(o.state, { recursive: true, mode: 0o700 })
  // Before anything in the state directory or on the network is touched (issue 13 finding 4): a refused start
  // changes nothing.
  const locks = await acquireAgentLocks(o.state, {
    allowSecond: o.allowSecondAgent === true,
    log: (msg) => log.info('agent.lock_wait', { msg }),
  })
  try {
    await upLocked(o, { log, domain, labels, port, leaseSec, ttlSec, services, server, key, locks, ssoUser, httpPlan })
  } finally {
    await locks.release()
  }
}

async function upLocked(
  o: UpOptions,
  c: {
    log: ReturnType<typeof jsonLogger>
    domain: string
    labels: string[]
    port: number
    leaseSec: number
    ttlSec: number
    services: ReturnType<typeof parseServiceSpec>[]
    server: { host: string; port: number }
    key: TsigKey
    locks: AgentLocks
    /** The local account single sign-on maps the owner to; undefined: SSO off (resolveSso). */
    ssoUser: Awaited<ReturnType<typeof import('./sso.js').resolveSso>>
    /** --metrics and --status-page, checked before anything was touched (http.ts). */
    httpPlan: ReturnType<typeof import('./http.js').planAgentHttp>
  },
): Promise<void> {
  const { log, domain, labels, port, leaseSec, ttlSec, services, server, key, locks, ssoUser, httpPlan } = c
  const clock = new SystemClock()
  const random = new SystemRandom()
  const tunName = o.tun === false ? undefined : o.tun
  const net = new NetMonitor({ clock, log: log.child({ c: 'netmon' }), read: systemReader(tunName ? [tunName] : []) })
  const updates = new UpdateClient(
    { clock, log: log.child({ c: 'update' }), random },
    {
      bootstrap: server,
      domain,
      key,
      tls: o.tls
        ? {
            ...(o.ca ? { ca: await readFile(o.ca) } : {}),
            ...(o.tlsFingerprint ? { fingerprint256: o.tlsFingerprint } : {}),
            insecure: o.insecureTls ?? false,
          }
        : undefined,
    },
  )
  // The user's host list (records.ts): the one name a host watches to learn about the others (issue 7 builds peers
  // on it); shown in status as the watcher in use and the mechanism it got (DNS Push, LLQ or polling).
  const tlsOpts = o.tls
    ? {
        ...(o.ca ? { ca: await readFile(o.ca) } : {}),
        rejectUnauthorized: !(o.insecureTls || o.tlsFingerprint),
      }
    : undefined
  const hostList = new Watcher(
    { log: log.child({ c: 'watch' }) },
    {
      name: `${AUTOTUNNEL_SERVICE}.${domain}.`,
      type: RRType.PTR,
      domain,
      server: { host: server.host, port: server.port },
      key,
      // Every watcher of this agent (the host list's and, through attach.ts, each peer's) subscribes on one DNS Push
      // session per server (push-session.ts): one TLS connection and keepalive instead of one per watched name.
      pushSessions: new PushSessionPool(),
      ...(tlsOpts ? { tls: tlsOpts } : { llqTransports: ['udp'] as const, mechanisms: ['llq', 'poll'] as const }),
      ...(o.tlsFingerprint ? { fingerprint256: o.tlsFingerprint } : {}),
    },
  )
  const udp = new UdpSocket()
  const relay = await relayConfig(o, { log, query: updates, zone: labels.slice(1).join('.'), domain })
  const stun = await makeStun(
    { clock, random, log, udp, query: updates, zone: labels.slice(1).join('.') },
    o.stun ?? [],
  )
  let agent: Agent | undefined
  let datapath: import('./datapath.js').Datapath | undefined
  let sso: import('../sso/host.js').SsoHost | undefined
  const mapper = o.portmap
    ? new PortMapper(
        {
          clock,
          random,
          log: log.child({ c: 'portmap' }),
          network: {
            primary: async () => {
              const p = net.state.primary
              return p?.ipv4 ? { ifname: p.ifname, address: p.ipv4, gateway: p.gateway } : undefined
            },
          },
        },
        {
          internalPort: port,
          onChange: (ev) => {
            agent?.mappingChanged()
            if (GATEWAY_STATE_LOST.has(ev.reason)) datapath?.gatewayStateLost(ev.reason)
          },
        },
      )
    : undefined
  agent = new Agent(
    {
      clock,
      random,
      log,
      net,
      sink: updates,
      udp,
      stun,
      ...(mapper ? { mapper } : {}),
      browse: (type) => browseServices(updates, domain, type),
      peers: () => datapath?.status() ?? [],
      datapath: () => {
        const x = datapath?.extraStatus()
        return x ? { ...(x as object), sso: sso?.status() ?? null } : null
      },
      watchers: () => {
        const w = datapath?.peers.hostListWatcher
        return [
          {
            name: hostList.opts.name,
            type: 'PTR',
            purpose: "the user's host list",
            via: w?.mechanism ?? 'connecting',
            ...(w?.lastError ? { lastError: w.lastError } : {}),
            records: (w?.rrset ?? []).map(presentRR),
          },
        ]
      },
    },
    {
      stateDir: o.state,
      hostname: o.hostname.toLowerCase(),
      domain,
      zone: labels.slice(1).join('.'),
      port,
      leaseSec,
      ttlSec,
      services,
      portmap: o.portmap,
      serverInfo: () => updates.status(),
    },
  )
  // `autotunnel netcheck` measures the servers this agent uses (src/agent/netcheck.ts).
  agent.addCommand('servers', async () => {
    const { parseStunServer, STUN_DEFAULT_PORT } = await import('../traversal/stun.js')
    const zone = labels.slice(1).join('.')
    const [stunList, relays] = await Promise.all([
      srvServers(updates, `_stun._udp.${zone}.`, (o.stun ?? []).map(parseStunServer), STUN_DEFAULT_PORT),
      relay.servers().catch(() => []),
    ])
    return { dns: server, zone, stun: stunList, relays }
  })
  const stop = (sig: string): void => {
    log.info('agent.signal', { signal: sig })
    void agent?.shutdown({ clean: true })
  }
  agent.onStopping(async () => locks.setStopping())
  process.once('SIGTERM', () => stop('SIGTERM'))
  process.once('SIGINT', () => stop('SIGINT'))
  try {
    await agent.start()
  } catch (e) {
    await agent.shutdown({ clean: false }).catch(() => {})
    throw e
  }
  // hostList is not started: its options serve the peers' watchers, and PeerManager runs the one host-list watcher
  // (status shows that one).
  // Issue 7: peers from DNS, the tunnel on the agent's port (unless --no-tun), the local resolver (datapath.ts).
  const dp = await import('./attach.js')
  const attaching = dp.attachDatapath(agent, {
    clock,
    random,
    log,
    query: updates,
    hostList,
    key,
    tun: tunName,
    resolver: o.resolver,
    systemResolver: o.systemResolver ?? 'auto',
    sink: updates,
    ikeAuth: o.ikeAuth ?? 'signature',
    mobike: o.mobike ?? true,
    relay,
  })
  try {
    // A configuration error found by the first UPDATE stops the agent while the data path may still be starting
    // (its watchers retry for seconds with a key the server refuses): exit at once rather than after them.
    const first = await Promise.race([attaching, agent.done.then(() => undefined)])
    if (!first && agent.fatalError) {
      attaching.then((d) => d.close()).catch(() => {})
      void hostList.close()
      updates.close()
      throw new FatalConfigError(agent.fatalError)
    }
    datapath = first ?? (await attaching)
  } catch (e) {
    await agent.shutdown({ clean: true }).catch(() => {})
    await hostList.close()
    updates.close()
    throw e
  }
  // Single sign-on (docs/sso.md): the host's KDC and the krb5/ssh drop-ins; stopped with the agent (onStopping).
  if (ssoUser) {
    const { attachSso } = await import('./sso.js')
    sso = await attachSso(agent, datapath, {
      log,
      clock,
      sink: updates,
      query: updates,
      user: ssoUser,
      stateDir: o.state,
      domain,
      zone: labels.slice(1).join('.'),
      host: o.hostname.toLowerCase(),
    })
  }
  // --metrics, --status-page (http.ts): after the data path, so the first scrape already has the peer table.
  const { startAgentHttp } = await import('./http.js')
  const http = await startAgentHttp(httpPlan, { status: () => agent?.status(), log: log.child({ c: 'http' }) }).catch(
    async (e: Error) => {
      await agent?.shutdown({ clean: true }).catch(() => {})
      await datapath?.close()
      await hostList.close()
      updates.close()
      throw e
    },
  )
  await agent.done
  await Promise.allSettled(http.map((h) => h.close()))
  await datapath.close()
  await hostList.close()
  updates.close()
  // A configuration error is fatal: exit non-zero with the message, so a service manager shows it.
  if (agent.fatalError) throw new FatalConfigError(agent.fatalError)
}

/**
 * The TURN relay (docs/relay.md): --relay servers, else SRV _turn._udp.ZONE (RFC 5928) through the bootstrap
 * server, looked up on each allocation attempt (only ever made behind a symmetric NAT). Credentials:
 * --relay-user and the first line of --relay-password-file, else the ephemeral ones of our signed TXT query
 * _turn-credentials.DOMAIN (the server's --turn-secret-file, coturn's REST scheme).
 */
async function relayConfig(
  o: UpOptions,
  d: { log: ReturnType<typeof jsonLogger>; query: UpdateClient; zone: string; domain: string },
): Promise<import('../traversal/index.js').RelayConfig> {
  if (!o.relayUser !== !o.relayPasswordFile) throw new UsageError('--relay-user and --relay-password-file go together')
  let fixed: { username: string; password: string } | undefined
  if (o.relayUser && o.relayPasswordFile) {
    const password = (await readFile(o.relayPasswordFile, 'utf8')).split(/\r?\n/)[0] ?? ''
    if (!password) throw new UsageError(`${o.relayPasswordFile}: empty TURN password`)
    fixed = { username: o.relayUser, password }
  }
  const { parseTurnServer, TURN_DEFAULT_PORT } = await import('../traversal/index.js')
  const specs = (o.relay ?? []).map(parseTurnServer)
  return {
    servers: () => srvServers(d.query, `_turn._udp.${d.zone}.`, specs, TURN_DEFAULT_PORT),
    credentials: async () => {
      if (fixed) return fixed
      const m = await d.query.query(`_turn-credentials.${d.domain}.`, RRType.TXT)
      const strings = m.answers
        .filter((r) => r.type === RRType.TXT)
        .flatMap((r) => (r.data as { strings: Buffer[] }).strings.map(String))
      const username = strings.find((s) => s.startsWith('username='))?.slice('username='.length)
      const password = strings.find((s) => s.startsWith('password='))?.slice('password='.length)
      return username && password ? { username, password } : undefined
    },
  }
}

/**
 * STUN and TURN servers: `specs` resolved to IPv4 addresses, or when there are none, the targets of SRV `name` in
 * priority order (RFC 8489 section 8, RFC 5928), resolved through the bootstrap server.
 */
async function srvServers(
  query: UpdateClient,
  name: string,
  specs: readonly { host: string; port: number }[],
  defaultPort: number,
): Promise<{ address: string; port: number }[]> {
  const { isIP } = await import('node:net')
  let list = specs
  if (list.length === 0) {
    const m = await query.query(name, RRType.SRV).catch(() => undefined)
    list = (m?.answers ?? [])
      .filter((r) => r.type === RRType.SRV)
      .map((r) => r.data as { priority: number; port: number; target: string })
      .sort((a, b) => a.priority - b.priority)
      .map((s) => ({ host: s.target, port: s.port || defaultPort }))
  }
  const out: { address: string; port: number }[] = []
  for (const s of list) {
    let address: string | undefined = s.host
    if (isIP(s.host) !== 4) {
      const m = await query.query(s.host.endsWith('.') ? s.host : `${s.host}.`, RRType.A).catch(() => undefined)
      address = (m?.answers.find((r) => r.type === RRType.A)?.data as { address?: string } | undefined)?.address
    }
    if (address) out.push({ address, port: s.port })
  }
  return out
}

/**
 * STUN on the agent's shared socket (docs/punch.md): the --stun servers, else those of SRV _stun._udp.ZONE found
 * through the bootstrap server (RFC 8489 section 8), looked up again on each probe until some are found.
 */
async function makeStun(
  d: {
    clock: SystemClock
    random: SystemRandom
    log: ReturnType<typeof jsonLogger>
    udp: UdpSocket
    query: UpdateClient
    zone: string
  },
  configured: readonly string[],
): Promise<AgentStun> {
  const { StunClient, probeNat, parseStunServer, STUN_DEFAULT_PORT } = await import('../traversal/index.js')
  const log = d.log.child({ c: 'stun' })
  const client = new StunClient({
    clock: d.clock,
    random: d.random,
    log,
    send: (b, port, address) => d.udp.send(b, 0, b.length, port, address),
  })
  const specs = configured.map(parseStunServer)
  return {
    demux: client,
    probe: async () => {
      const list = await srvServers(d.query, `_stun._udp.${d.zone}.`, specs, STUN_DEFAULT_PORT)
      if (list.length === 0) {
        log.debug('stun.no_server', { configured: specs.length })
        return undefined
      }
      return probeNat(client, list)
    },
    close: () => client.close(),
  }
}
