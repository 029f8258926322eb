// The systemd units `autotunnel install-service` writes (issue 17): one for the host agent (`autotunnel up`), one for
// the DNS service (`autotunnel server`), each with the least privilege the process needs:
//   - DynamicUser (no root, a UID that exists only while the unit runs) and, as ambient capabilities and the whole
//     bounding set: the agent CAP_NET_ADMIN (TUN device, its address and routes) + CAP_NET_BIND_SERVICE (a resolver
//     on port 53), the server CAP_NET_BIND_SERVICE only (ports 53 and 853);
//   - StateDirectory= for --state/--data (0700), everything else read-only (ProtectSystem=strict, ProtectHome);
//   - secrets named by options (--key-file, --relay-password-file, --tls-key, --turn-secret-file) passed with
//     LoadCredential=, so the dynamic user reads them from $CREDENTIALS_DIRECTORY and never from /etc directly;
//   - the usual sandbox (kernel, clock, hostname, namespaces, realtime, SUID, personality, address families, the
//     @system-service syscall set). Not set, on purpose: MemoryDenyWriteExecute (V8's JIT and koffi need W+X
//     pages), PrivateUsers and PrivateNetwork (the capabilities must act on the host's network), and for the agent
//     PrivateDevices (it needs /dev/net/tun: DevicePolicy=closed with that one device instead) and
//     ProtectKernelTunables (it sets its TUN device's sysctls).
// `systemd-analyze security` scores are in docs/commands.md.

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

/** Unit names and directories (the agent's state directory is the CLI's default, everyday-client.ts). */
export const SERVICE = {
  agent: { unit: 'autotunnel-agent.service', state: 'autotunnel', stateOption: '--state', subcommand: 'up' },
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
const REQUIRED: Record<ServiceKind, readonly string[]> = {
  agent: ['--server', '--domain', '--hostname'],
  server: ['--zone'],
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
  const caps = o.kind === 'agent' ? 'CAP_NET_ADMIN CAP_NET_BIND_SERVICE' : 'CAP_NET_BIND_SERVICE'
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
    ...(o.user ? [`User=${o.user}`] : ['DynamicUser=yes']),
    `StateDirectory=${s.state}`,
    'StateDirectoryMode=0700',
    'UMask=0077',
    ...creds,
    `CapabilityBoundingSet=${caps}`,
    `AmbientCapabilities=${caps}`,
    'NoNewPrivileges=yes',
    'SecureBits=noroot-locked',
    'ProtectSystem=strict',
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
    `RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6${o.kind === 'agent' ? ' AF_NETLINK' : ''}`,
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
