// The systemd units `autotunnel install-service` writes (issue 17): one for the host agent (`autotunnel up`), one for
// the DNS service (`autotunnel server`), each with the least privilege the process needs:
//   - DynamicUser (no root, a UID that exists only while the unit runs) and, as ambient capabilities and the whole
//     bounding set: the agent CAP_NET_ADMIN (TUN device, its address and routes) + CAP_NET_BIND_SERVICE (a resolver
//     on port 53), the server CAP_NET_BIND_SERVICE only (ports 53 and 853);
//   - but an agent that manages /etc/resolv.conf (the default) or runs single sign-on (--sso-user) runs as UID 0
//     with the same capabilities and no others (noroot securebits; SSO adds CAP_CHOWN, CAP_FOWNER and
//     CAP_DAC_READ_SEARCH), and ReadWritePaths= for what it writes (agentIntegration); without --sso-user the unit
//     adds --no-sso; test/systemd/check.sh runs all of them under a real systemd (`make systemd-check`);
//   - StateDirectory= for --state/--data (0700), everything else read-only (ProtectSystem=strict, ProtectHome);
//   - secrets named by options (--key-file, --relay-password-file, --tls-key, --turn-secret-file) passed with
//     LoadCredential=, so the dynamic user reads them from $CREDENTIALS_DIRECTORY and never from /etc directly;
//   - the usual sandbox (kernel, clock, hostname, namespaces, realtime, SUID, personality, address families, the
//     @system-service syscall set). Not set, on purpose: MemoryDenyWriteExecute (V8's JIT and koffi need W+X
//     pages), PrivateUsers and PrivateNetwork (the capabilities must act on the host's network), and for the agent
//     PrivateDevices (it needs /dev/net/tun: DevicePolicy=closed with that one device instead) and
//     ProtectKernelTunables (it sets its TUN device's sysctls).
// `systemd-analyze security` scores, and what `make systemd-check` ran under a real systemd: docs/agent.md.

import { dirname } from 'node:path'
import { RESOLV_CONF } from '../agent/resolv-conf.js'
import { DEFAULT_SSO_SHARE_DIR } from '../sso/share-dir.js'

export type ServiceKind = 'agent' | 'server'

export interface UnitOptions {
  readonly kind: ServiceKind
  /** node and the CLI entry point, e.g. ['/usr/bin/node', '/opt/autotunnel/dist/src/cli/main.js']. */
  readonly exec: readonly string[]
  /** The options for `autotunnel up` or `autotunnel server`, as the user gave them. */
  readonly args: readonly string[]
  /** A fixed system user instead of DynamicUser (e.g. one that also runs `autotunnel account`). */
  readonly user?: string
}

export class ServiceUsageError extends Error {
  override readonly name = 'ServiceUsageError'
}

/** Unit names and directories (the agent's is root's default state directory, state-dir.ts, so `status` finds it). */
export const SERVICE = {
  agent: { unit: 'autotunnel-agent.service', state: 'autotunnel-agent', stateOption: '--state', subcommand: 'up' },
  server: {
    unit: 'autotunnel-server.service',
    state: 'autotunnel-server',
    stateOption: '--data',
    subcommand: 'server',
  },
} as const

/** Options whose value is a secret file: passed as a credential. */
const CREDENTIAL_OPTIONS: Record<ServiceKind, readonly string[]> = {
  agent: ['--key-file', '--relay-password-file', '--ca'],
  server: ['--tls-key', '--tls-cert', '--turn-secret-file'],
}
// The agent's --domain comes from its --key-file (a unit has no stdin for --password-stdin, so the key file is a must).
const REQUIRED: Record<ServiceKind, readonly string[]> = {
  agent: ['--server', '--hostname', '--key-file'],
  server: ['--zone'],
}

/** What the agent writes in place (resolv-conf.ts), and the parent of SSO's share directory (made by the agent). */
const RESOLV_CONF_PATH = RESOLV_CONF
const SSO_SHARE_PARENT = dirname(DEFAULT_SSO_SHARE_DIR)

/**
 * What of the system outside its state directory the agent will change with these options (docs/agent.md, "Running
 * it as a service"): /etc/resolv.conf unless its resolver or the system-resolver step is off or systemd-resolved is
 * asked for by name (auto picks resolv.conf on a machine without resolved); single sign-on only with --sso-user.
 */
export function agentIntegration(args: readonly string[]): { resolvConf: boolean; sso: boolean } {
  const a = splitEquals(args)
  const i = a.lastIndexOf('--system-resolver')
  const mode = i >= 0 ? a[i + 1] : 'auto'
  return {
    resolvConf: !a.includes('--no-resolver') && (mode === 'auto' || mode === 'resolv.conf'),
    sso: a.includes('--sso-user') && !a.includes('--no-sso'),
  }
}

/** One ExecStart= word (systemd.service(5) "Command lines"): quoted when needed, $ and % escaped. */
export function quoteWord(w: string): string {
  const esc = w.replace(/%/g, '%%').replace(/\$(?!\{CREDENTIALS_DIRECTORY\})/g, '$$$$')
  if (/^[A-Za-z0-9_@%+=:,./${}-]+$/.test(esc)) return esc
  return `"${esc.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

/** "--opt=value" -> ["--opt", "value"]; everything else as is. */
function splitEquals(args: readonly string[]): string[] {
  return args.flatMap((a) => {
    const m = /^(--[a-z-]+)=(.*)$/s.exec(a)
    return m ? [m[1] ?? '', m[2] ?? ''] : [a]
  })
}

/** The unit file text. Throws ServiceUsageError for options a unit cannot run with. */
export function renderUnit(o: UnitOptions): string {
  const s = SERVICE[o.kind]
  const args = splitEquals(o.args)
  if (args.includes('--password-stdin'))
    throw new ServiceUsageError('a service has no stdin for --password-stdin: give --key-file (see account add --json)')
  if (args.includes(s.stateOption))
    throw new ServiceUsageError(
      `drop ${s.stateOption}: the unit keeps its state in /var/lib/${s.state} (StateDirectory=${s.state})`,
    )
  for (const r of REQUIRED[o.kind])
    if (!args.includes(r)) throw new ServiceUsageError(`autotunnel ${s.subcommand} needs ${r} in the service options`)
  const integ = o.kind === 'agent' ? agentIntegration(args) : { resolvConf: false, sso: false }
  // /etc/resolv.conf and the SSO files are root's: the agent writes them as UID 0, holding no capability but its own
  // (no CAP_DAC_OVERRIDE), so it can change root's files only where ReadWritePaths= lets it.
  const asRoot = integ.resolvConf || integ.sso
  if (asRoot && o.user && o.user !== 'root')
    throw new ServiceUsageError(
      `--user ${o.user} cannot write ${integ.sso ? '/etc/krb5.conf and /etc/ssh (--sso-user)' : '/etc/resolv.conf'}: ` +
        'drop --user (the unit then runs as root with only its two capabilities), or give the agent ' +
        `${integ.sso ? '--no-sso' : '--system-resolver off (or resolved)'}`,
    )
  const creds: string[] = []
  const exec: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? ''
    exec.push(a)
    if (!CREDENTIAL_OPTIONS[o.kind].includes(a)) continue
    const file = args[++i]
    if (!file?.startsWith('/'))
      throw new ServiceUsageError(`${a} wants an absolute path in a service (got ${JSON.stringify(file ?? '')})`)
    const id = a.slice(2)
    creds.push(`LoadCredential=${id}:${file}`)
    exec.push(`\${CREDENTIALS_DIRECTORY}/${id}`)
  }
  // Single sign-on is on by default where a local user is named like the account; a unit turns it on only with
  // --sso-user (its sandbox is wider), so without that it says --no-sso rather than fail on a read-only /etc.
  if (o.kind === 'agent' && !integ.sso && !args.includes('--no-sso')) exec.push('--no-sso')
  // SSO gives the SSO user its certificate, key and ticket hook (src/sso/host.ts, system-files.ts): CAP_CHOWN to give
  // them, CAP_FOWNER to chmod them once they are the user's, CAP_DAC_READ_SEARCH to read them back (mode 0600) for
  // the restore journal. Under systemd without the last two SSO failed (EPERM on chmod, EACCES on the read).
  const ssoCaps = ' CAP_CHOWN CAP_FOWNER CAP_DAC_READ_SEARCH'
  const caps =
    o.kind === 'agent' ? `CAP_NET_ADMIN CAP_NET_BIND_SERVICE${integ.sso ? ssoCaps : ''}` : 'CAP_NET_BIND_SERVICE'
  const writable = [
    ...(integ.resolvConf ? [RESOLV_CONF_PATH] : []),
    // SSO makes files that may not exist yet (/etc/krb5.keytab, /etc/ssh/ssh_known_hosts, the host certificate):
    // a new file needs its directory writable, so /etc is (the rest of the system stays read-only).
    // '-': systemd sets up the mount namespace for ExecStartPre= too, '+' or not, before that has made the directory.
    ...(integ.sso ? ['/etc', `-${SSO_SHARE_PARENT}`] : []),
  ]
  const cmd = [...o.exec, s.subcommand, s.stateOption, `/var/lib/${s.state}`, ...exec].map(quoteWord).join(' ')
  const lines = [
    '# Written by `autotunnel install-service`; see docs/commands.md. Edit the options with',
    `# \`autotunnel install-service --${o.kind} ...\` again rather than by hand.`,
    '[Unit]',
    o.kind === 'agent'
      ? 'Description=autotunnel host agent (identity, port mapping, publication, tunnel)'
      : 'Description=autotunnel DNS service (updates, leases, LLQ, DNS Push, DoT)',
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${cmd}`,
    // SIGTERM is the agent's clean stop (records and mapping deleted, IKE Deletes sent), as `autotunnel down`.
    'Restart=on-failure',
    'RestartSec=5s',
    'TimeoutStopSec=30s',
    // SIGTERM to the agent alone: it stops its children itself (`ip monitor`, SSO's krb5kdc) after withdrawing its
    // records; with the default control-group mode they got SIGTERM at the same moment (netmon.monitor_exit warned
    // on every stop under systemd). Whatever is left after it exits gets SIGKILL.
    ...(o.kind === 'agent' ? ['KillMode=mixed'] : []),
    ...(asRoot
      ? [
          `# Root (UID 0) for ${integ.sso ? '/etc/resolv.conf, /etc/krb5.conf, /etc/krb5.keytab and /etc/ssh' : '/etc/resolv.conf'}, with no capability but those below;`,
          '# `--system-resolver off` (and no --sso-user) gives a dynamic user instead.',
          'User=root',
        ]
      : o.user
        ? [`User=${o.user}`]
        : ['DynamicUser=yes']),
    ...(integ.sso ? [`ExecStartPre=+/bin/mkdir -p -m 0755 ${SSO_SHARE_PARENT}`] : []),
    `StateDirectory=${s.state}`,
    'StateDirectoryMode=0700',
    'UMask=0077',
    ...creds,
    `CapabilityBoundingSet=${caps}`,
    `AmbientCapabilities=${caps}`,
    'NoNewPrivileges=yes',
    'SecureBits=noroot-locked',
    'ProtectSystem=strict',
    ...(writable.length ? [`ReadWritePaths=${writable.join(' ')}`] : []),
    'ProtectHome=yes',
    'PrivateTmp=yes',
    ...(o.kind === 'agent' ? ['DevicePolicy=closed', 'DeviceAllow=/dev/net/tun rw'] : ['PrivateDevices=yes']),
    'PrivateIPC=yes',
    // The agent writes its TUN device's IPv6 sysctls (accept_ra, accept_dad: linux-tun.ts) once the device exists,
    // so /proc/sys stays writable for it (CAP_NET_ADMIN covers net sysctls of its namespace); the server's is not.
    ...(o.kind === 'server' ? ['ProtectKernelTunables=yes', 'ProcSubset=pid'] : []),
    'ProtectKernelModules=yes',
    'ProtectKernelLogs=yes',
    'ProtectControlGroups=yes',
    'ProtectClock=yes',
    'ProtectHostname=yes',
    'ProtectProc=invisible',
    'RestrictNamespaces=yes',
    'RestrictRealtime=yes',
    'RestrictSUIDSGID=yes',
    'LockPersonality=yes',
    'RemoveIPC=yes',
    'KeyringMode=private',
    // AF_NETLINK for both: the agent's `ip` and netmon, and getifaddrs(3) behind node's os.networkInterfaces(),
    // which the server calls on a wildcard listener to bind one socket per local address (advertise.ts). Without
    // CAP_NET_ADMIN a netlink socket only reads.
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
    'SystemCallArchitectures=native',
    'SystemCallFilter=@system-service',
    'SystemCallFilter=~@mount @swap @reboot @obsolete @cpu-emulation @debug @raw-io',
    'SystemCallErrorNumber=EPERM',
    ...(o.kind === 'server' ? ['LimitNOFILE=65536'] : []),
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ]
  return lines.join('\n')
}
