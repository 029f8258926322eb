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
  const u = renderUnit({ kind: 'agent', exec: EXEC, args: AGENT })
  assert.deepEqual(directives(u, 'CapabilityBoundingSet'), ['CAP_NET_ADMIN CAP_NET_BIND_SERVICE'])
  assert.deepEqual(directives(u, 'AmbientCapabilities'), ['CAP_NET_ADMIN CAP_NET_BIND_SERVICE'])
  assert.deepEqual(directives(u, 'ProtectSystem'), ['strict'])
  assert.deepEqual(directives(u, 'StateDirectory'), ['autotunnel'])
  assert.deepEqual(directives(u, 'DynamicUser'), ['yes'])
  assert.deepEqual(directives(u, 'LoadCredential'), ['key-file:/etc/autotunnel/alice.key.json'])
  assert.deepEqual(directives(u, 'DeviceAllow'), ['/dev/net/tun rw'])
  assert.deepEqual(directives(u, 'ExecStart'), [
    '/usr/bin/node /opt/autotunnel/dist/src/cli/main.js up --state /var/lib/autotunnel --server ns.example.net ' +
      `--domain alice.members.example --hostname desktop --key-file ${CRED}/key-file ` +
      '--service _ssh._tcp:22',
  ])
  assert.equal(directives(u, 'ProtectKernelTunables').length, 0, 'the agent sets its TUN sysctls')
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
})

test('units refuse what a service cannot run with', () => {
  const bad: [string[], RegExp][] = [
    [['--password-stdin', ...AGENT], /no stdin/],
    [['--state', '/tmp/x', ...AGENT], /drop --state/],
    [AGENT.filter((a) => a !== '--hostname' && a !== 'desktop'), /needs --hostname/],
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
    for (const [kind, args] of [
      ['agent', AGENT],
      ['server', SERVER],
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
      t.diagnostic(`systemd-analyze security ${kind}: ${score[1]} ${score[2]}`)
      assert.ok(Number(score[1]) <= 3, `${kind} exposure ${score[1]}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

function __filename_js(): string {
  return new URL(import.meta.url).pathname
}
