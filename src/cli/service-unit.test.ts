import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { parseInstallArgs } from './service-run.js'
import { quoteWord, renderUnit, ServiceUsageError } from './service-unit.js'

const CRED = '$' + '{CREDENTIALS_DIRECTORY}'
const EXEC = ['/usr/bin/node', '/opt/autotunnel/dist/src/cli/main.js']
const AGENT = [
  '--server',
  'ns.example.net',
  '--domain',
  'alice.members.example',
  '--hostname',
  'desktop',
  '--key-file',
  '/etc/autotunnel/alice.key.json',
  '--service',
  '_ssh._tcp:22',
]
const SERVER = ['--zone', 'members.example', '--listen', '0.0.0.0:53', '--turn-secret-file=/etc/autotunnel/turn']

const directives = (unit: string, key: string): string[] =>
  unit
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1))

test('agent unit: least capabilities, state directory, key file as a credential', () => {
  const u = renderUnit({ kind: 'agent', exec: EXEC, args: [...AGENT, '--system-resolver', 'off'] })
  assert.deepEqual(directives(u, 'CapabilityBoundingSet'), ['CAP_NET_ADMIN CAP_NET_BIND_SERVICE'])
  assert.deepEqual(directives(u, 'AmbientCapabilities'), ['CAP_NET_ADMIN CAP_NET_BIND_SERVICE'])
  assert.deepEqual(directives(u, 'ProtectSystem'), ['strict'])
  assert.deepEqual(directives(u, 'ReadWritePaths'), [], 'nothing of the system is written')
  assert.deepEqual(directives(u, 'StateDirectory'), ['autotunnel-agent'])
  assert.deepEqual(directives(u, 'DynamicUser'), ['yes'])
  assert.deepEqual(directives(u, 'User'), [])
  assert.deepEqual(directives(u, 'LoadCredential'), ['key-file:/etc/autotunnel/alice.key.json'])
  assert.deepEqual(directives(u, 'DeviceAllow'), ['/dev/net/tun rw'])
  assert.deepEqual(directives(u, 'ExecStart'), [
    '/usr/bin/node /opt/autotunnel/dist/src/cli/main.js up --state /var/lib/autotunnel-agent --server ns.example.net ' +
      `--domain alice.members.example --hostname desktop --key-file ${CRED}/key-file ` +
      '--service _ssh._tcp:22 --system-resolver off --no-sso',
  ])
  assert.equal(directives(u, 'ProtectKernelTunables').length, 0, 'the agent sets its TUN sysctls')
  assert.deepEqual(directives(u, 'KillMode'), ['mixed'], 'SIGTERM to the agent only: it stops its children')
})

test('agent unit managing /etc/resolv.conf: UID 0 with the same two capabilities, that one file writable', () => {
  // The default --system-resolver (auto) and resolv.conf write /etc/resolv.conf, in place (resolv-conf.ts).
  for (const extra of [[], ['--system-resolver', 'resolv.conf'], ['--system-resolver=auto']]) {
    const u = renderUnit({ kind: 'agent', exec: EXEC, args: [...AGENT, ...extra] })
    assert.deepEqual(directives(u, 'User'), ['root'], extra.join(' '))
    assert.deepEqual(directives(u, 'DynamicUser'), [])
    assert.deepEqual(directives(u, 'ReadWritePaths'), ['/etc/resolv.conf'])
    assert.deepEqual(directives(u, 'CapabilityBoundingSet'), ['CAP_NET_ADMIN CAP_NET_BIND_SERVICE'])
    assert.deepEqual(directives(u, 'SecureBits'), ['noroot-locked'], 'root gets no capability from its UID')
    assert.match(directives(u, 'ExecStart')[0] ?? '', / --no-sso$/)
  }
  // resolved (D-Bus, CAP_NET_ADMIN) and no resolver at all leave /etc alone: a dynamic user.
  for (const extra of [['--system-resolver', 'resolved'], ['--no-resolver'], ['--system-resolver=off']]) {
    const u = renderUnit({ kind: 'agent', exec: EXEC, args: [...AGENT, ...extra] })
    assert.deepEqual(directives(u, 'DynamicUser'), ['yes'], extra.join(' '))
    assert.deepEqual(directives(u, 'ReadWritePaths'), [])
  }
  assert.throws(
    () => renderUnit({ kind: 'agent', exec: EXEC, args: AGENT, user: 'autotunnel' }),
    /--user autotunnel cannot write \/etc\/resolv\.conf.*--system-resolver off/,
  )
  const fixed = renderUnit({ kind: 'agent', exec: EXEC, args: [...AGENT, '--no-resolver'], user: 'autotunnel' })
  assert.deepEqual(directives(fixed, 'User'), ['autotunnel'])
})

test('agent unit with --sso-user: /etc and the share directory writable, CAP_CHOWN/FOWNER/DAC_READ_SEARCH, no --no-sso', () => {
  const u = renderUnit({ kind: 'agent', exec: EXEC, args: [...AGENT, '--sso-user', 'alice'] })
  assert.deepEqual(directives(u, 'User'), ['root'])
  assert.deepEqual(directives(u, 'ReadWritePaths'), ['/etc/resolv.conf /etc -/var/lib/autotunnel'])
  assert.deepEqual(directives(u, 'ExecStartPre'), ['+/bin/mkdir -p -m 0755 /var/lib/autotunnel'])
  assert.deepEqual(directives(u, 'CapabilityBoundingSet'), [
    'CAP_NET_ADMIN CAP_NET_BIND_SERVICE CAP_CHOWN CAP_FOWNER CAP_DAC_READ_SEARCH',
  ])
  assert.doesNotMatch(directives(u, 'ExecStart')[0] ?? '', /--no-sso/)
  const off = renderUnit({ kind: 'agent', exec: EXEC, args: [...AGENT, '--sso-user', 'alice', '--no-sso'] })
  assert.deepEqual(directives(off, 'ReadWritePaths'), ['/etc/resolv.conf'])
  assert.equal((directives(off, 'ExecStart')[0] ?? '').match(/--no-sso/g)?.length, 1, 'given once, not added')
})

test('server unit: CAP_NET_BIND_SERVICE only, --data is the state directory, --opt=value split', () => {
  const u = renderUnit({ kind: 'server', exec: EXEC, args: SERVER, user: 'autotunnel' })
  assert.deepEqual(directives(u, 'CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE'])
  assert.deepEqual(directives(u, 'User'), ['autotunnel'])
  assert.deepEqual(directives(u, 'DynamicUser'), [])
  assert.deepEqual(directives(u, 'StateDirectory'), ['autotunnel-server'])
  assert.deepEqual(directives(u, 'LoadCredential'), ['turn-secret-file:/etc/autotunnel/turn'])
  assert.match(
    directives(u, 'ExecStart')[0] ?? '',
    / server --data \/var\/lib\/autotunnel-server --zone members\.example /,
  )
  assert.deepEqual(directives(u, 'PrivateDevices'), ['yes'])
  // os.networkInterfaces() (getifaddrs) on a wildcard listener needs a netlink socket: without it the server died.
  assert.deepEqual(directives(u, 'RestrictAddressFamilies'), ['AF_UNIX AF_INET AF_INET6 AF_NETLINK'])
})

test('agent unit without --domain: the key file names it (README step 4)', () => {
  const args = AGENT.filter((a) => a !== '--domain' && a !== 'alice.members.example')
  assert.doesNotMatch(directives(renderUnit({ kind: 'agent', exec: EXEC, args }), 'ExecStart')[0] ?? '', /--domain/)
})

test('units refuse what a service cannot run with', () => {
  const bad: [string[], RegExp][] = [
    [['--password-stdin', ...AGENT], /no stdin/],
    [['--state', '/tmp/x', ...AGENT], /drop --state/],
    [AGENT.filter((a) => a !== '--hostname' && a !== 'desktop'), /needs --hostname/],
    [AGENT.slice(0, 6), /needs --key-file/],
    [[...AGENT.slice(0, 6), '--key-file', 'relative.json'], /absolute path/],
  ]
  for (const [args, re] of bad)
    assert.throws(
      () => renderUnit({ kind: 'agent', exec: EXEC, args }),
      (e: Error) => e instanceof ServiceUsageError && re.test(e.message),
    )
})

test('ExecStart words: specifiers, dollars, spaces and quotes escaped (systemd.service(5))', () => {
  assert.equal(quoteWord('plain/path:1'), 'plain/path:1')
  assert.equal(quoteWord('100%'), '100%%')
  assert.equal(quoteWord('a$b'), 'a$$b')
  assert.equal(quoteWord(`${CRED}/k`), `${CRED}/k`)
  assert.equal(quoteWord('two words'), '"two words"')
  assert.equal(quoteWord('say "hi"\\'), '"say \\"hi\\"\\\\"')
})

test('install-service arguments: ours before --agent/--server, the service options after', () => {
  const a = parseInstallArgs(['--dry-run', '--user', 'at', '--agent', ...AGENT])
  assert.equal(a.kind, 'agent')
  assert.equal(a.dryRun, true)
  assert.equal(a.user, 'at')
  assert.deepEqual(a.args, AGENT)
  assert.throws(() => parseInstallArgs(['--dry-run', '--hostname', 'x']), /give --agent or --server/)
  // The first of --agent/--server picks the unit: the agent's own --server option comes after --agent.
  assert.equal(parseInstallArgs(['--agent', ...AGENT]).kind, 'agent')
  assert.throws(() => parseInstallArgs(['--bogus', '--server', ...SERVER]), /unknown option --bogus/)
  assert.throws(() => parseInstallArgs(['--dry-run', '--output', 'x', '--server', ...SERVER]), /writes nothing/)
})

// systemd-analyze (Debian package systemd, scripts/deps.sh) checks the units offline: no systemd as PID 1 needed.
// A warning on stderr (unknown key, bad value) fails the test: verify itself exits 0 on those.
test('systemd-analyze verify accepts both units without a warning; security scores them', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'at-unit-'))
  try {
    // Every variant: the agent that manages /etc/resolv.conf (the default), the one that leaves /etc alone, the one
    // with single sign-on, and the server.
    for (const [kind, variant, args, limit] of [
      ['agent', 'resolv.conf', AGENT, 3.5],
      ['agent', 'off', [...AGENT, '--system-resolver', 'off'], 3],
      ['agent', 'sso', [...AGENT, '--sso-user', 'alice'], 4.5],
      ['server', '', SERVER, 3],
    ] as const) {
      // ExecStart must name an executable file that exists for verify: use node itself with a real script path.
      const unit = join(dir, `autotunnel-${kind}.service`)
      writeFileSync(unit, renderUnit({ kind, exec: [process.execPath, __filename_js()], args }))
      const v = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', cwd: dir })
      assert.equal(v.status, 0, v.stderr)
      assert.equal(v.stderr.trim(), '', `systemd-analyze verify ${kind}:\n${v.stderr}`)
      const sec = execFileSync('systemd-analyze', ['security', '--offline=yes', unit], { encoding: 'utf8', cwd: dir })
      const score = /Overall exposure level for \S+: ([\d.]+) (\S+)/.exec(sec)
      assert.ok(score, sec.slice(-300))
      t.diagnostic(`systemd-analyze security ${kind} ${variant}: ${score[1]} ${score[2]}`)
      assert.ok(Number(score[1]) <= limit, `${kind} ${variant} exposure ${score[1]}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

function __filename_js(): string {
  return new URL(import.meta.url).pathname
}
