// The lab's own daemons: coturn (a two-address RFC 5780 STUN server in the core) and one miniupnpd per `upnp`
// gateway. Configs follow RECIPES.md sections 1 and 5: miniupnpd learns its documentation-range WAN address by
// STUN (it refuses such addresses otherwise) and needs all four RFC 5780 answers, hence coturn's two addresses.
import { spawn } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inNs, pidAlive, run, sleep } from './sh.js'
import type { ProcState } from './state.js'

export class LabDaemonError extends Error {
  override name = 'LabDaemonError'
}

/** Starts argv in `ns` in its own process group, stdout and stderr appended to `log`. Survives our exit. */
export function spawnLogged(ns: string, argv: string[], name: string, log: string, env?: NodeJS.ProcessEnv): ProcState {
  const fd = openSync(log, 'a')
  try {
    const [cmd, ...args] = inNs(ns, argv)
    const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', fd, fd], env: env ?? process.env })
    child.on('error', () => {})
    child.unref()
    if (child.pid === undefined) throw new LabDaemonError(`could not start ${argv.join(' ')}`)
    return { pid: child.pid, name, ns, log }
  } finally {
    closeSync(fd)
  }
}

export const STUN_PORT = 3478
export const STUN_ALT_PORT = 3479

export function coturnConfig(dir: string, stun: [string, string]): string {
  return `# STUN-only coturn for the lab core (RFC 5389 + RFC 5780: two addresses, alternate port)
listening-ip=${stun[0]}
listening-ip=${stun[1]}
listening-port=${STUN_PORT}
alt-listening-port=${STUN_ALT_PORT}
stun-only
no-tls
no-dtls
no-cli
no-software-attribute
userdb=${join(dir, 'turndb')}
log-file=stdout
simple-log
pidfile=${join(dir, 'turnserver.pid')}
`
}

/** A TURN server (RFC 8656) with the long-term credential mechanism, for the relay lab and interop tests. */
export interface TurnSpec {
  readonly listen: string
  /** Address relayed allocations are made on (the host's public address). @default listen */
  readonly relayIp?: string
  /** @default STUN_PORT */
  readonly port?: number
  readonly user: string
  readonly password: string
  readonly realm: string
  /**
   * coturn's REST scheme instead of the static user (use-auth-secret + static-auth-secret; coturn 4.6 then refuses
   * static users): the autotunnel server hands out ephemeral credentials (`server --turn-secret-file`).
   */
  readonly secret?: string
  /** Relayed port range (two servers on one host need disjoint ones). */
  readonly ports?: readonly [number, number]
  /** Relaying to 127.0.0.1 peers (loopback interop tests). @default false */
  readonly allowLoopback?: boolean
}

export function turnConfig(dir: string, t: TurnSpec): string {
  return `# TURN (lt-cred-mech) for the relay scenario (docs/relay.md)
listening-ip=${t.listen}
relay-ip=${t.relayIp ?? t.listen}
listening-port=${t.port ?? STUN_PORT}
lt-cred-mech
${t.secret ? `use-auth-secret\nstatic-auth-secret=${t.secret}` : `user=${t.user}:${t.password}`}
realm=${t.realm}
${t.ports ? `min-port=${t.ports[0]}\nmax-port=${t.ports[1]}` : ''}
fingerprint
no-tls
no-dtls
no-cli
no-tcp-relay
${t.allowLoopback ? 'allow-loopback-peers\n' : ''}userdb=${join(dir, 'turndb')}
log-file=stdout
simple-log
pidfile=${join(dir, 'turnserver.pid')}
`
}

export function startCoturn(dir: string, ns: string, stun: [string, string]): ProcState {
  const conf = join(dir, 'turnserver.conf')
  writeFileSync(conf, coturnConfig(dir, stun))
  return spawnLogged(ns, ['turnserver', '-c', conf], 'coturn', join(dir, 'coturn.log'))
}

/** Resolves when coturn listens on both addresses (checked with `ss` in its namespace). */
export async function waitCoturn(
  ns: string,
  stun: [string, string],
  proc: ProcState,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const r = await run(inNs(ns, ['ss', '-Hnlu']))
    const want = [`${stun[0]}:${STUN_PORT}`, `${stun[1]}:${STUN_PORT}`, `${stun[0]}:${STUN_ALT_PORT}`]
    if (want.every((w) => r.stdout.includes(w))) return
    if (!pidAlive(proc.pid)) throw new LabDaemonError(`coturn exited; see ${proc.log}`)
    await sleep(20)
  }
  throw new LabDaemonError(`coturn not listening after ${timeoutMs} ms; see ${proc.log}`)
}

export interface MiniupnpdSpec {
  site: string
  wan: string
  lan: string
  lanCidr: string
  stunHost: string
  natpmp: boolean
  upnp: boolean
  minLifetimeSec: number
  /** Behind the carrier NAT STUN fails: wait for miniupnpd to disable forwarding instead of enabling it. */
  behindNat?: boolean
}

export function miniupnpdFiles(dir: string, site: string): { conf: string; leases: string; pid: string; log: string } {
  return {
    conf: join(dir, `miniupnpd-${site}.conf`),
    leases: join(dir, `miniupnpd-${site}.leases`),
    pid: join(dir, `miniupnpd-${site}.pid`),
    log: join(dir, `miniupnpd-${site}.log`),
  }
}

export function miniupnpdConfig(dir: string, m: MiniupnpdSpec): string {
  const f = miniupnpdFiles(dir, m.site)
  const uuid = `3a1b2c4d-0000-4000-8000-${Buffer.from(m.site).toString('hex').padEnd(12, '0').slice(0, 12)}`
  return `# miniupnpd for lab site ${m.site} (RECIPES.md section 1)
ext_ifname=${m.wan}
ext_perform_stun=yes
ext_stun_host=${m.stunHost}
ext_stun_port=${STUN_PORT}
listening_ip=${m.lan}
http_port=2189
enable_natpmp=${m.natpmp ? 'yes' : 'no'}
enable_upnp=${m.upnp ? 'yes' : 'no'}
secure_mode=yes
system_uptime=no
lease_file=${f.leases}
uuid=${uuid}
friendly_name=autotunnel lab ${m.site}
min_lifetime=${m.minLifetimeSec}
max_lifetime=86400
allow 1024-65535 ${m.lanCidr} 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`
}

/**
 * Starts miniupnpd in the gateway namespace and waits for its STUN verdict (port forwarding enabled or, behind a
 * carrier NAT, disabled) and for its sockets (HTTP for UPnP, 5351 for NAT-PMP/PCP) to be open.
 */
export async function startMiniupnpd(dir: string, ns: string, m: MiniupnpdSpec): Promise<ProcState> {
  const timeoutMs = m.behindNat ? 25_000 : 10_000
  const f = miniupnpdFiles(dir, m.site)
  writeFileSync(f.conf, miniupnpdConfig(dir, m))
  const start = existsSync(f.log) ? readFileSync(f.log).length : 0
  const proc = spawnLogged(ns, ['miniupnpd', '-f', f.conf, '-P', f.pid, '-d'], `miniupnpd-${m.site}`, f.log)
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const text = readFileSync(f.log).subarray(start).toString()
    const enabled = text.includes('Port forwarding is now enabled')
    const disabled = text.includes('Port forwarding is now disabled')
    // The STUN verdict comes from init(), before miniupnpd opens its HTTP and NAT-PMP/PCP sockets: a client that
    // asks in between gets ICMP port unreachable ("connection refused" from natpmpc), which made cli-gateway's
    // set-public-ip case fail now and then on a loaded machine. Ready means listening too.
    const listening =
      (!m.natpmp || text.includes('Listening for NAT-PMP/PCP traffic')) && (!m.upnp || text.includes('HTTP listening'))
    if ((m.behindNat ? disabled : enabled) && listening) return proc
    if ((m.behindNat ? enabled : disabled) || text.includes('EXITING')) {
      throw new LabDaemonError(`miniupnpd ${m.site} failed; see ${f.log}`)
    }
    if (!pidAlive(proc.pid)) throw new LabDaemonError(`miniupnpd ${m.site} exited; see ${f.log}`)
    await sleep(20)
  }
  throw new LabDaemonError(`miniupnpd ${m.site} not ready after ${timeoutMs} ms; see ${f.log}`)
}
