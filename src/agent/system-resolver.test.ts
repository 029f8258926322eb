import assert from 'node:assert/strict'
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { nullLogger } from '../io/log.js'
import { type Run, SystemResolver } from './system-resolver.js'

const D = 'alice.members.example'

/** resolvectl as a recording stand-in: systemd-resolved cannot run here (no systemd); docs/resolver.md says so. */
function recorder(fail?: string): { run: Run; calls: string[][] } {
  const calls: string[][] = []
  return {
    calls,
    run: async (argv) => {
      calls.push([...argv])
      return argv[1] === fail
        ? { code: 1, stdout: '', stderr: 'Failed to set DNS configuration: Access denied' }
        : { code: 0, stdout: '', stderr: '' }
    },
  }
}

async function dir(t: import('node:test').TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'at-sysres-'))
  t.after(() => rm(d, { recursive: true, force: true }))
  return d
}

test('auto: systemd-resolved when it runs; per-link DNS on the ULA, search + routing-only domain, reverted', async (t) => {
  const d = await dir(t)
  const r = recorder()
  const s = new SystemResolver(
    { log: nullLogger, run: r.run, resolvedRuns: () => true },
    { mode: 'auto', stateDir: d, domain: D, tun: 'autotun0', resolvConf: join(d, 'resolv.conf') },
  )
  assert.equal(s.mode, 'resolved')
  await s.prepare({ address: '127.0.0.153', port: 53 })
  assert.deepEqual(s.upstreams, [], 'resolved keeps routing other names: no forwarding')
  const st = await s.install({ address: '127.0.0.153', port: 53 }, { address: 'fd00:1::1', port: 53 })
  assert.equal(st.state, 'set', st.detail)
  assert.deepEqual(r.calls, [
    ['resolvectl', 'dns', 'autotun0', 'fd00:1::1'],
    ['resolvectl', 'domain', 'autotun0', D, `~${D}`],
    ['resolvectl', 'default-route', 'autotun0', 'no'],
  ])
  await s.restore()
  assert.deepEqual(r.calls.at(-1), ['resolvectl', 'revert', 'autotun0'])
  await s.restore()
  assert.equal(r.calls.length, 4, 'reverted once')
})

test('resolved mode failures are shown with the cause: no TUN link, resolvectl refused', async (t) => {
  const d = await dir(t)
  const noTun = new SystemResolver(
    { log: nullLogger, run: recorder().run, resolvedRuns: () => true },
    { mode: 'auto', stateDir: d, domain: D, tun: undefined },
  )
  const a = await noTun.install({ address: '127.0.0.153', port: 53 })
  assert.equal(a.state, 'failed')
  assert.match(a.detail, /no TUN interface \(--no-tun\)/)
  const r = recorder('domain')
  const denied = new SystemResolver(
    { log: nullLogger, run: r.run, resolvedRuns: () => true },
    { mode: 'resolved', stateDir: d, domain: D, tun: 'autotun0' },
  )
  const b = await denied.install(undefined, { address: 'fd00:1::1', port: 5354 })
  assert.equal(b.state, 'failed')
  assert.match(b.detail, /`resolvectl domain autotun0 .*` failed: Failed to set DNS configuration: Access denied/)
  assert.deepEqual(r.calls[0], ['resolvectl', 'dns', 'autotun0', '[fd00:1::1]:5354'])
  await denied.restore()
  assert.equal(r.calls.length, 2, 'nothing to revert: the link was never set')
})

test('resolv.conf mode: upstreams from the file, port 53 required, a write error says what to do', async (t) => {
  const d = await dir(t)
  const conf = join(d, 'resolv.conf')
  await writeFile(conf, 'nameserver 192.0.2.53\nnameserver 127.0.0.153\n')
  const s = new SystemResolver(
    { log: nullLogger, resolvedRuns: () => false },
    { mode: 'auto', stateDir: d, domain: D, tun: 'autotun0', resolvConf: conf },
  )
  assert.equal(s.mode, 'resolv.conf')
  await s.prepare({ address: '127.0.0.153', port: 53 })
  assert.deepEqual(s.upstreams, [{ address: '192.0.2.53', port: 53 }], 'never ourselves')
  const wrongPort = await s.install({ address: '127.0.0.1', port: 5354 })
  assert.equal(wrongPort.state, 'failed')
  assert.match(wrongPort.detail, /cannot name a port: the resolver must listen on port 53/)
  const ro = new SystemResolver(
    { log: nullLogger, resolvedRuns: () => false },
    { mode: 'resolv.conf', stateDir: d, domain: D, tun: undefined, resolvConf: join(d, 'no-such-dir', 'resolv.conf') },
  )
  const e = await ro.install({ address: '127.0.0.153', port: 53 })
  assert.equal(e.state, 'failed')
  assert.match(e.detail, /cannot write .*resolv\.conf: ENOENT/)
  const ok = new SystemResolver(
    { log: nullLogger, resolvedRuns: () => false },
    { mode: 'resolv.conf', stateDir: d, domain: D, tun: undefined, resolvConf: conf },
  )
  const before = await readFile(conf)
  assert.equal((await ok.install({ address: '127.0.0.153', port: 53 })).state, 'set')
  await ok.restore()
  assert.deepEqual(await readFile(conf), before)
})

test('resolv.conf rewritten by another program (in place, or replaced by a rename) is set up again at once', async (t) => {
  const d = await dir(t)
  const conf = join(d, 'resolv.conf')
  await writeFile(conf, 'nameserver 192.0.2.53\n')
  const s = new SystemResolver(
    { log: nullLogger, resolvedRuns: () => false },
    { mode: 'resolv.conf', stateDir: d, domain: D, tun: undefined, resolvConf: conf },
  )
  await s.prepare({ address: '127.0.0.153', port: 53 })
  assert.equal((await s.install({ address: '127.0.0.153', port: 53 })).state, 'set')
  t.after(() => s.restore())
  const ours = async (): Promise<boolean> => /^nameserver 127\.0\.0\.153$/m.test(await readFile(conf, 'utf8'))
  /** Within 3 s: the safety re-read comes only every 60 s, so this is the file watch. */
  const backWithin = async (what: string, upstream?: string): Promise<void> => {
    const end = Date.now() + 3000
    while (!(await ours()) || (upstream && s.upstreams[0]?.address !== upstream)) {
      if (Date.now() > end) assert.fail(`${what}: resolv.conf not set up again within 3 s`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  assert.equal(await ours(), true)
  await writeFile(conf, 'nameserver 198.51.100.1\n')
  await backWithin('written in place', '198.51.100.1')
  assert.deepEqual(s.upstreams, [{ address: '198.51.100.1', port: 53 }], 'the new upstream is forwarded to')
  await writeFile(join(d, 'resolv.conf.dhcp'), 'nameserver 198.51.100.2\n')
  await rename(join(d, 'resolv.conf.dhcp'), conf)
  await backWithin('replaced by a rename', '198.51.100.2')
  assert.deepEqual(s.upstreams, [{ address: '198.51.100.2', port: 53 }])
  // and again on the new file (the watch moved to it)
  await writeFile(conf, 'nameserver 198.51.100.3\n')
  await backWithin('written in place after the rename', '198.51.100.3')
})
