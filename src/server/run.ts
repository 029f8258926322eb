// `autotunnel server`: opens the store, removes leases that ran out while it was down, binds the listeners,
// prints one line per listener on stdout when ready and runs until SIGTERM/SIGINT.
import { statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { fqdn } from '../dns/account-key.js'
import { type Clock, SystemClock, type TimerHandle } from '../io/clock.js'
import { jsonLogger, type Logger, type LogLevel } from '../io/log.js'
import { SystemRandom } from '../io/random.js'
import { openToOthers } from '../io/secret-file.js'
import { KeyRing } from './accounts.js'
import { isLoopback, localAddresses, WILDCARDS } from './advertise.js'
import { type AddrPort, parseAddrPort, type ServiceConfig } from './config.js'
import type { SyncMode } from './db.js'
import { registerProcessGauges, ServerMetrics } from './metrics.js'
import { type NotifyCliOptions, NotifyService, notifyOptions } from './notify-service.js'
import { PgStore } from './pg/store.js'
import { RevokedHostsFile } from './revoked-hosts.js'
import { DnsService } from './service.js'
import { FileSsoState } from './sso-ca-store.js'
import { SsoService } from './sso-service.js'
import type { SsoState } from './sso-state.js'
import { Store } from './store.js'
import { redact, resolveStore } from './store-spec.js'
import { DEFAULT_MAX_CONNECTIONS, StreamListener } from './stream-listener.js'
import { ensureSelfSigned, loadTls } from './tls-cert.js'
import { MIN_REPLAY_CACHE_ENTRIES } from './tsig-replay.js'
import { UdpListener } from './udp-listener.js'
import type { ZoneStore } from './zone-tx.js'

/** `autotunnel server` options as commander parses them: names follow the flags, so units are in the comments. */
export interface ServerOptions extends NotifyCliOptions {
  zone: string
  /** --data DIR: the SQLite store and the self-signed certificate (with a PostgreSQL store: the certificate only). */
  data?: string
  /** --store URL: postgres://... (a cluster of nodes, docs/cluster.md) or sqlite:DIR; else AUTOTUNNEL_STORE. */
  store?: string
  listen: string[]
  tlsListen: string[]
  tlsCert?: string
  tlsKey?: string
  /** --lease-min, seconds. */
  leaseMin: number
  /** --lease-max, seconds. */
  leaseMax: number
  metrics?: string
  advertise: string[]
  /** --stun ADDR[:PORT] (repeatable): STUN servers advertised as SRV _stun._udp.ZONE. */
  stun?: string[]
  /** --turn ADDR[:PORT] (repeatable): TURN servers advertised as SRV _turn._udp.ZONE (docs/relay.md). */
  turn?: string[]
  /** --turn-secret-file F: coturn's static-auth-secret; users get ephemeral credentials (docs/relay.md). */
  turnSecretFile?: string
  /** --turn-credential-ttl S. */
  turnCredentialTtl?: number
  hostmaster?: string
  /** --ttl, seconds. */
  ttl: number
  /** --negative-ttl, seconds. */
  negativeTtl: number
  /** --fudge, seconds. */
  fudge: number
  /** --tsig-replay-cache N: MACs remembered against replays. @default 200000 */
  tsigReplayCache?: number
  /** --max-update-records N. @default 100 */
  maxUpdateRecords?: number
  /** --max-records N: an account's record quota unless `account limit` set its own. @default 1000 */
  maxRecords?: number
  /** --require-lease: refuse UPDATEs that add records without an update lease. */
  requireLease?: boolean
  /** --tcp-idle-timeout, milliseconds. */
  tcpIdleTimeout: number
  /** Open connections per TCP or TLS listener. @default 1000 */
  maxConnections?: number
  /** --max-connections-per-source N. @default 64 */
  maxConnectionsPerSource?: number
  /** --tls-handshake-timeout, milliseconds. @default 5000 */
  tlsHandshakeTimeout?: number
  /** --tcp-message-timeout, milliseconds. @default 5000 */
  tcpMessageTimeout?: number
  sync: SyncMode
  logLevel?: LogLevel
}

export interface RunningServer {
  readonly service: DnsService
  /** Bound addresses by kind: "udp 127.0.0.1:5300", ... */
  readonly lines: string[]
  stop(): Promise<void>
}

const EXTERNAL_CHECK_MS = 1000
const PORT_ATTEMPTS = 10

/** Parses `--advertise HOST:ADDR` or `--advertise ADDR` into the server name and its addresses. */
export function parseAdvertise(list: readonly string[], zone: string): { host: string | undefined; addrs: string[] } {
  let host: string | undefined
  const addrs: string[] = []
  for (const a of list) {
    if (isIP(a)) {
      addrs.push(a)
      continue
    }
    const i = a.indexOf(':')
    if (i <= 0 || !isIP(a.slice(i + 1)))
      throw new TypeError(`--advertise wants HOST:ADDR or ADDR, got ${JSON.stringify(a)}`)
    const h = fqdn(a.slice(0, i).includes('.') ? a.slice(0, i) : `${a.slice(0, i)}.${zone}`)
    if (host && host !== h) throw new TypeError(`--advertise names two hosts: ${host} and ${h}`)
    host = h
    addrs.push(a.slice(i + 1))
  }
  return { host, addrs }
}

export async function startServer(
  o: ServerOptions,
  deps: { clock?: Clock; log?: Logger } = {},
): Promise<RunningServer> {
  const clock = deps.clock ?? new SystemClock()
  const log = deps.log ?? jsonLogger(o.logLevel ? { level: o.logLevel } : {})
  const zone = fqdn(o.zone)
  if (!(o.leaseMin > 0 && o.leaseMax >= o.leaseMin)) throw new TypeError('need 0 < --lease-min <= --lease-max')
  const listens: AddrPort[] = (o.listen.length ? o.listen : ['127.0.0.1:5300']).map((s) => parseAddrPort(s, 53))
  const tlsListens: AddrPort[] = o.tlsListen.map((s) => parseAddrPort(s, 853))
  const maxConnections = o.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  if (!(Number.isInteger(maxConnections) && maxConnections > 0)) throw new TypeError('need --max-connections >= 1')
  if (o.tsigReplayCache !== undefined && o.tsigReplayCache < MIN_REPLAY_CACHE_ENTRIES)
    throw new TypeError(`need --tsig-replay-cache >= ${MIN_REPLAY_CACHE_ENTRIES}`)
  const streamOpts = {
    maxConnections,
    ...(o.maxConnectionsPerSource !== undefined ? { maxPerSource: o.maxConnectionsPerSource } : {}),
    ...(o.tlsHandshakeTimeout !== undefined ? { handshakeTimeoutMs: o.tlsHandshakeTimeout } : {}),
    ...(o.tcpMessageTimeout !== undefined ? { messageTimeoutMs: o.tcpMessageTimeout } : {}),
  }
  const adv = parseAdvertise(o.advertise, zone)
  const nsName = adv.host ?? `ns.${zone}`
  let nsAddrs = adv.addrs
  // Wildcard listeners without --advertise: answer with the address each query arrived on (advertise.ts), never
  // 127.0.0.1 to everyone (issue 13 finding 1).
  const wildcards = [...listens, ...tlsListens].map((l) => l.host).filter((h) => WILDCARDS.has(h))
  const advertiseLocal = nsAddrs.length === 0 && wildcards.length > 0
  if (nsAddrs.length === 0) {
    const fixed = [...listens, ...tlsListens].map((l) => l.host).filter((h) => !WILDCARDS.has(h))
    const local = wildcards.flatMap((w) => localAddresses(w))
    nsAddrs = [...new Set([...fixed, ...local.filter((a) => !isLoopback(a)), ...local.filter(isLoopback)])]
    if (advertiseLocal)
      log.info('server.advertise_local', {
        msg: 'listening on a wildcard address without --advertise: each answer gives the address its query arrived on',
        addresses: nsAddrs,
      })
  }

  const spec = resolveStore(o)
  const dataDir = spec.dir
  if (tlsListens.length && !(o.tlsCert && o.tlsKey) && dataDir === undefined)
    throw new TypeError('--tls-listen without --tls-cert/--tls-key needs --data DIR for the self-signed certificate')
  let store: ZoneStore
  let keys: KeyRing
  let closeStore: () => void | Promise<void>
  let pgStore: PgStore | undefined
  if (spec.kind === 'sqlite') {
    const s = new Store({ clock, log }, { dir: spec.dir, zone, sync: o.sync })
    store = s
    closeStore = () => s.close()
    keys = new KeyRing({ db: s.db, clock, checkExternal: () => s.checkExternal() })
  } else {
    log.info('server.store', { store: redact(spec.url) })
    const s = await PgStore.open(
      { clock, log },
      { url: spec.url, zone, nodeInfo: { pid: process.pid, listen: o.listen, tlsListen: o.tlsListen } },
    )
    store = s
    pgStore = s
    closeStore = () => s.close()
    const ring = new KeyRing({ list: () => s.accounts(), clock, checkExternal: () => s.takeAccountsChanged() })
    // An account changed through any node or the CLI is in force here as soon as the feed brings it.
    s.onAccounts(() => ring.refresh(true, 0))
    keys = ring
  }
  // The secret files in it are 0600 (db.ts); a directory others can enter still lets them see names and sizes,
  // and a later file created by hand there would be readable: warn, do not refuse (systemd's StateDirectory=
  // defaults to 0755; docs/security.md).
  if (dataDir !== undefined && openToOthers(dataDir))
    log.warn('server.data_dir_mode', {
      dir: dataDir,
      mode: (statSync(dataDir).mode & 0o777).toString(8),
      hint: 'group or others can enter the data directory: chmod 700 it (or StateDirectoryMode=0700)',
    })
  for (const f of [o.tlsKey, o.turnSecretFile])
    if (f && openToOthers(f) & 0o044)
      log.warn('server.secret_file_mode', { file: f, hint: 'group or others can read this secret: chmod 600 it' })
  const metrics = new ServerMetrics()
  const streams: StreamListener[] = []
  metrics.registry.gauge('autotunnel_stream_connections', 'Open TCP and TLS connections', () =>
    streams.reduce((n, l) => n + l.connections, 0),
  )
  metrics.registry.gauge(
    'autotunnel_stream_connections_refused_total',
    'TCP and TLS connections closed at once because --max-connections were open',
    () => streams.reduce((n, l) => n + l.dropped, 0),
    'counter',
  )
  metrics.registry.gauge(
    'autotunnel_stream_connections_refused_per_source_total',
    'TCP and TLS connections closed at once because their source held --max-connections-per-source',
    () => streams.reduce((n, l) => n + l.droppedPerSource, 0),
    'counter',
  )
  metrics.registry.gauge(
    'autotunnel_stream_timeouts_total',
    'TCP and TLS connections closed because a message or the TLS handshake was not complete in time',
    () => streams.reduce((n, l) => n + l.timedOut, 0),
    'counter',
  )
  registerProcessGauges(metrics.registry)
  const closers: (() => Promise<void> | void)[] = []
  const lines: string[] = []
  let service: DnsService | undefined
  let extTimer: TimerHandle | undefined
  try {
    // Bind the plain listeners first: with port 0 the real port is only known afterwards, and the SRV
    // records advertise it.
    const sinkRef: { fn: (b: Buffer, c: never) => void } = { fn: () => {} }
    const sink = (b: Buffer, c: Parameters<DnsService['handle']>[1]): void => sinkRef.fn(b, c as never)
    const bound: { kind: string; addr: string; port: number; extra?: string }[] = []
    for (const l of listens) {
      // With port 0 the UDP port is picked first and TCP must get the same number: retry if it is taken.
      for (let attempt = 1; ; attempt++) {
        const udp = new UdpListener({ log, sink })
        const wild = advertiseLocal && WILDCARDS.has(l.host)
        const addr = await udp.listen(l.host, l.port, { reuseAddr: wild })
        const tcp = new StreamListener({ log, sink }, { ...streamOpts, idleTimeoutMs: o.tcpIdleTimeout })
        let taddr: string
        try {
          taddr = await tcp.listen(l.host, udp.port)
        } catch (e) {
          await udp.close()
          if (l.port === 0 && attempt < PORT_ATTEMPTS) continue
          throw e
        }
        streams.push(tcp)
        closers.push(
          () => udp.close(),
          () => tcp.close(),
        )
        bound.push({ kind: 'udp', addr, port: udp.port }, { kind: 'tcp', addr: taddr, port: udp.port })
        // One socket per local address beside the wildcard one: its datagrams say where they arrived (no
        // IP_PKTINFO in node's dgram). Addresses added later reach the wildcard socket.
        if (wild)
          for (const a of localAddresses(l.host)) {
            const one = new UdpListener({ log, sink })
            try {
              await one.listen(a, udp.port, { reuseAddr: true })
              closers.push(() => one.close())
            } catch (e) {
              log.warn('server.udp_per_address_failed', { address: a, err: String(e) })
            }
          }
        break
      }
    }
    if (tlsListens.length) {
      const tls = o.tlsCert && o.tlsKey ? loadTls(o.tlsCert, o.tlsKey) : ensureSelfSigned(dataDir!, nsName, nsAddrs)
      if (tls.created)
        log.info(tls.replaced ? 'tls.self_signed_remade' : 'tls.self_signed_created', {
          cert: tls.certFile,
          sha256: tls.fingerprint256,
          names: [nsName, ...nsAddrs],
          ...(tls.replaced
            ? {
                previous: tls.replaced,
                hint: 'the old certificate did not cover the advertised names: give agents the new DIR/tls.crt (--ca) or fingerprint',
              }
            : {}),
        })
      for (const l of tlsListens) {
        const t = new StreamListener({ log, sink }, { ...streamOpts, idleTimeoutMs: o.tcpIdleTimeout, tls })
        const addr = await t.listen(l.host, l.port)
        streams.push(t)
        closers.push(() => t.close())
        bound.push({
          kind: 'tls',
          addr,
          port: Number(addr.slice(addr.lastIndexOf(':') + 1)),
          extra: `sha256=${tls.fingerprint256}`,
        })
      }
    }
    // SSO state (sso-state.ts): a cluster's nodes share it in the database; one SQLite node keeps it beside its
    // store, and the UPDATE path reads the revoked list from there (cached; revoked-hosts.ts).
    const revokedFile = !pgStore && dataDir ? new RevokedHostsFile(dataDir) : undefined
    const revoked = pgStore ? pgStore.revokedHosts : revokedFile
    const ssoState: SsoState | undefined = pgStore
      ? pgStore.ssoState(dataDir)
      : dataDir
        ? new FileSsoState(dataDir, revokedFile)
        : undefined
    const cfg: ServiceConfig = {
      ...(revoked ? { revokedHosts: revoked } : {}),
      zone,
      nsName,
      nsAddrs,
      advertiseLocal,
      hostmaster: o.hostmaster ? fqdn(o.hostmaster.replace('@', '.')) : `hostmaster.${zone}`,
      dnsPort: bound.find((b) => b.kind === 'udp')!.port,
      tlsPort: bound.find((b) => b.kind === 'tls')?.port,
      leaseMinSec: o.leaseMin,
      leaseMaxSec: o.leaseMax,
      infraTtlSec: o.ttl,
      negativeTtlSec: o.negativeTtl,
      fudgeSec: o.fudge,
      ...(o.tsigReplayCache !== undefined ? { replayCacheEntries: o.tsigReplayCache } : {}),
      ...(o.maxUpdateRecords !== undefined ? { maxUpdateRecords: o.maxUpdateRecords } : {}),
      ...(o.maxRecords !== undefined ? { maxAccountRecords: o.maxRecords } : {}),
      requireLease: o.requireLease === true,
      stun: (o.stun ?? []).map((s) => {
        const a = parseAddrPort(s, 3478)
        if (!isIP(a.host)) throw new TypeError(`--stun wants ADDR[:PORT] with an IP address, got ${JSON.stringify(s)}`)
        return a
      }),
      ...(o.turnSecretFile
        ? {
            turnSecret: Buffer.from((await readFile(o.turnSecretFile, 'utf8')).split(/\r?\n/)[0] ?? ''),
            turnCredentialTtlSec: o.turnCredentialTtl ?? 86_400,
          }
        : {}),
      turn: (o.turn ?? []).map((s) => {
        const a = parseAddrPort(s, 3478)
        if (!isIP(a.host)) throw new TypeError(`--turn wants ADDR[:PORT] with an IP address, got ${JSON.stringify(s)}`)
        return a
      }),
      ...(pgStore ? { peers: () => pgStore!.peers() } : {}),
    }
    service = new DnsService({ store, keys, clock, log, metrics }, cfg)
    if (pgStore) {
      const svc = service
      pgStore.onPeers(() => svc.invalidateAnswers())
      pgStore.setNodeInfo({ nsName, nsAddrs, dnsPort: cfg.dnsPort, tlsPort: cfg.tlsPort })
    }
    service.start()
    // notify (LLQ + DNS Push), src/server/notify-service.ts
    const notify = new NotifyService({ host: service, clock, random: new SystemRandom(), log }, notifyOptions(o))
    service.use(notify.handler)
    // SSO enrolment (docs/sso.md): the per-account CA, certificates for TSIG-signed CSRs.
    if (ssoState) service.use(new SsoService({ log, state: ssoState }, { zone: cfg.zone }).handler)
    service.useDso((raw, ctx) => notify.handleDso(raw, ctx))
    notify.registerMetrics(metrics.registry)
    closers.push(() => notify.close())
    sinkRef.fn = service.handle as never
    if (o.metrics) {
      const m = parseAddrPort(o.metrics)
      const srv = await metrics.registry.listen(m.host, m.port)
      closers.push(() => new Promise<void>((r) => srv.close(() => r())))
      const a = srv.address()
      bound.push({
        kind: 'metrics',
        addr: `http://${m.host.includes(':') ? `[${m.host}]` : m.host}:${typeof a === 'object' && a ? a.port : m.port}/metrics`,
        port: 0,
      })
    }
    const tick = (): void => {
      keys.refresh(true, 0)
      extTimer = clock.setTimeout(tick, EXTERNAL_CHECK_MS)
    }
    extTimer = clock.setTimeout(tick, EXTERNAL_CHECK_MS)
    for (const b of bound) lines.push(`listening ${b.kind} ${b.addr}${b.extra ? ` ${b.extra}` : ''}`)
    log.info('server.ready', {
      zone,
      nsName,
      nsAddrs,
      listeners: lines,
      serial: store.serial,
      records: store.index.recordCount,
    })
  } catch (e) {
    for (const c of closers.reverse()) await c()
    await closeStore()
    throw e
  }
  const svc = service
  let stopped = false
  return {
    service: svc,
    lines,
    async stop() {
      if (stopped) return
      stopped = true
      clock.clearTimeout(extTimer)
      for (const c of closers.reverse()) await c()
      svc.stop()
      await closeStore()
      log.info('server.stopped', {})
    },
  }
}

/** The CLI action: start, print the listener lines, stop cleanly on SIGTERM/SIGINT. */
export async function runServer(o: ServerOptions): Promise<void> {
  const log = jsonLogger(o.logLevel ? { level: o.logLevel } : {})
  const srv = await startServer(o, { log })
  for (const l of srv.lines) process.stdout.write(`${l}\n`)
  await new Promise<void>((resolve) => {
    const onSig = (sig: string): void => {
      log.info('server.signal', { sig })
      process.off('SIGTERM', onSig)
      process.off('SIGINT', onSig)
      srv.stop().then(resolve, (e) => {
        log.error('server.stop_failed', { err: String(e) })
        resolve()
      })
    }
    process.on('SIGTERM', onSig)
    process.on('SIGINT', onSig)
  })
}
