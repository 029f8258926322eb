// Single sign-on in the agent (docs/sso.md): decides whether it runs (--no-sso, --sso-user, a local user named like
// the account, MIT Kerberos installed, the tunnel on), then runs src/sso/host.ts with the peers of the data path and
// stops it (restoring every system file) when the agent stops.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import type { UpdateSink } from '../dns/client/update.js'
import type { Clock } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import type { SignedQuery } from '../sso/enrol-client.js'
// Types only: the SSO host (certificates, the KDC) is loaded when SSO starts. @peculiar/x509 and its dependencies
// cost an agent 15 MiB of RSS, which one with SSO off (no Kerberos, --no-sso) should not carry (bench/idle).
import type { SsoHost, SsoPaths, SsoUser } from '../sso/host.js'
import { SSO_DEFAULT_ENV, ssoShareDir } from '../sso/share-dir.js'
import type { Agent } from './agent.js'
import type { Datapath } from './datapath.js'

const run = promisify(execFile)
/** What SSO runs (Debian: krb5-kdc, krb5-admin-server for kadmin.local, krb5-pkinit, krb5-user). */
export const SSO_BINARIES = ['/usr/sbin/krb5kdc', '/usr/sbin/kadmin.local', '/usr/sbin/kdb5_util', '/usr/bin/kinit']
const PKINIT_PLUGIN_GLOB = /pkinit\.so$/

export class SsoUsageError extends Error {
  override readonly name = 'SsoUsageError'
}

export async function lookupUser(name: string): Promise<SsoUser | undefined> {
  try {
    const { stdout } = await run('getent', ['passwd', name])
    const f = stdout.trim().split(':')
    const uid = Number(f[2])
    const gid = Number(f[3])
    if (f[0] !== name || !Number.isInteger(uid) || !Number.isInteger(gid)) return undefined
    return { name, uid, gid }
  } catch {
    return undefined
  }
}

async function pkinitInstalled(): Promise<boolean> {
  try {
    const { stdout } = await run('dpkg-query', ['-L', 'krb5-pkinit'])
    return stdout.split('\n').some((l) => PKINIT_PLUGIN_GLOB.test(l))
  } catch {
    return false
  }
}

/**
 * Whether SSO runs, and for which local user. An explicit --sso-user that cannot work is an error; the default
 * (a local user named like the account) quietly turns SSO off when that user or Kerberos is missing.
 */
export async function resolveSso(
  o: { sso?: boolean; ssoUser?: string; tun: string | false },
  account: string,
  log: Logger,
): Promise<SsoUser | undefined> {
  if (o.sso === false) return undefined
  const explicit = o.ssoUser !== undefined
  const off = (why: string): undefined => {
    if (explicit) throw new SsoUsageError(why)
    log.info('sso.off', { reason: why })
    return undefined
  }
  if (o.tun === false) return off('--sso-user needs the tunnel (the KDC listens on the ULA): drop --no-tun')
  // The lab's hosts share the machine's /etc/ssh and /etc/krb5.conf unless a test gives them overlays: there the
  // default is off, and only an explicit --sso-user turns SSO on (test/lab/sso.test.ts). A README walkthrough run in
  // the lab while a local user named like the account existed once wrote the machine's own /etc.
  if (!explicit && process.env[SSO_DEFAULT_ENV] === 'off')
    return off(`${SSO_DEFAULT_ENV}=off (the lab): --sso-user turns single sign-on on`)
  const name = o.ssoUser ?? account
  const user = await lookupUser(name)
  if (!user)
    return off(
      `no local user ${name}${explicit ? '' : ' (named like the account)'}: --sso-user names the local account`,
    )
  const missing = SSO_BINARIES.filter((b) => !existsSync(b))
  if (missing.length || !(await pkinitInstalled()))
    return off(
      `single sign-on needs MIT Kerberos (${missing.join(', ') || 'krb5-pkinit'} missing): apt-get install krb5-kdc krb5-admin-server krb5-pkinit krb5-user, or --no-sso`,
    )
  return user
}

/** Starts SSO on a started agent with its data path; it stops (and restores the system files) with the agent. */
export async function attachSso(
  agent: Agent,
  datapath: Datapath,
  d: {
    log: Logger
    clock: Clock
    sink: UpdateSink
    query: SignedQuery
    user: SsoUser
    stateDir: string
    domain: string
    zone: string
    host: string
    paths?: Partial<SsoPaths>
  },
): Promise<SsoHost> {
  const account = d.domain.split('.')[0] ?? ''
  const { SsoHost } = await import('../sso/host.js')
  const sso = new SsoHost(
    { log: d.log.child({ c: 'sso' }), clock: d.clock, sink: d.sink, query: d.query },
    {
      stateDir: d.stateDir,
      zone: d.zone,
      domain: d.domain,
      host: d.host,
      account,
      ssoUser: d.user,
      ula: agent.identity.ula,
      paths: { shareDir: ssoShareDir(), ...d.paths },
    },
  )
  const peers = () =>
    datapath.peers
      .peers()
      .filter((p) => p.ula)
      .map((p) => ({ fqdn: p.fqdn.toLowerCase(), ula: p.ula as string }))
  datapath.peers.onChange(() => sso.setPeers(peers()))
  datapath.peers.onGone(() => sso.setPeers(peers()))
  agent.onStopping(() => sso.stop())
  sso.setPeers(peers())
  await sso.start()
  return sso
}
