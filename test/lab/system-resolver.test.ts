// Issue 13 finding 5 and its "Done when", in the lab: agents started with only --server, --domain, --hostname,
// --key-file and --ca (no --state, no resolver flags) make their host names resolve system-wide: `getent hosts
// desktop` (and the FQDN) and `ssh desktop` on the laptop right after `up`, other names still resolve (forwarded to
// the nameserver the host had), `down` leaves /etc/resolv.conf byte-identical, and after a SIGKILL the next start
// puts it back. Each lab host's /etc/resolv.conf is its own (/etc/netns/NS/resolv.conf, lab/etc.ts).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type Lab, type LabProcess, withLab } from '../../lab/index.js'
import { type LabServer, MAIN, startServer, waitFor, ZONE } from './agent-helpers.js'
import { resolvConf, hostStatus as status, upAsReadme, waitGone } from './readme-agent.js'
import { startSshd } from './tunnel-helpers.js'

const DOMAIN = `alice.${ZONE}`

const up = (lab: Lab, srv: LabServer, host: string, extra: string[] = []): LabProcess =>
  upAsReadme(lab, srv, host, { domain: DOMAIN, extra })

test('up sets the system resolver: getent hosts and ssh by name; down and a crash leave resolv.conf as it was', {
  timeout: 150_000,
}, async (t) => {
  await withLab(t, { sites: ['home', 'cafe'] }, async (lab) => {
    const srv = await startServer(lab, { leaseMin: 30 })
    try {
      const original = await resolvConf(lab, 'laptop')
      assert.match(original.toString(), /^nameserver 198\.51\.100\.10$/m, 'the lab host resolves through the lab')
      const desktop = up(lab, srv, 'desktop')
      const laptop = up(lab, srv, 'laptop')
      const dUla = (await waitFor('desktop status', () => status(lab, 'desktop'), 20_000, 100)).identity.ula
      const s = await waitFor(
        'the laptop to learn the desktop',
        async () => {
          const x = await status(lab, 'laptop')
          return x?.peers.some((p) => p.name === 'desktop' && p.ula === dUla) ? x : undefined
        },
        30_000,
        100,
      )
      assert.equal(s.datapath.resolver.error, null)
      assert.equal(s.datapath.resolver.system.state, 'set', s.datapath.resolver.system.detail)
      assert.equal(s.datapath.resolver.system.mode, 'resolv.conf')

      // Name resolution through the system resolver (glibc getaddrinfo), as any program does it.
      for (const name of ['desktop', `desktop.${DOMAIN}`]) {
        const g = await lab.execOk('laptop', ['getent', 'hosts', name])
        assert.match(g.stdout, new RegExp(`^${dUla}\\s+desktop\\.${DOMAIN.replaceAll('.', '\\.')}`), name)
      }
      const v4 = await lab.exec('laptop', ['getent', 'ahostsv4', 'desktop'])
      assert.equal(v4.code, 2, 'no IPv4 address for a host: an immediate NODATA, not a timeout')
      // Other names: forwarded to the nameserver the laptop had (the lab's server answers its own zone).
      const soa = await lab.execOk('laptop', ['dig', '+short', '+time=2', ZONE, 'SOA'])
      assert.match(soa.stdout, new RegExp(`^ns\\.${ZONE.replace('.', '\\.')}\\. `))
      const ns = await lab.execOk('laptop', ['getent', 'ahostsv4', `ns.${ZONE}`])
      assert.match(ns.stdout, /^198\.51\.100\.10\s/)

      // ssh by its short name: getaddrinfo -> the agent's resolver -> the desktop's ULA -> the tunnel.
      const sshd = await startSshd(lab, 'desktop', dUla)
      t.after(() => sshd.stop())
      const ssh = await lab.exec('laptop', [...sshd.ssh, 'root@desktop', 'echo ssh-by-name; hostname -I'], {
        timeoutMs: 30_000,
      })
      assert.equal(ssh.code, 0, `ssh root@desktop: ${ssh.stderr}`)
      assert.match(ssh.stdout, /ssh-by-name/)
      assert.ok(ssh.stdout.includes(dUla), 'the session runs on the desktop')

      // down: the original back, byte for byte.
      const down = await lab.execOk('laptop', ['node', MAIN, 'down'])
      assert.match(down.stdout, /agent stopped/)
      await waitGone(laptop)
      assert.deepEqual(await resolvConf(lab, 'laptop'), original, 'down restores resolv.conf byte-identical')

      // A crash (SIGKILL) leaves ours in place; the next start puts the original back first, even one that is
      // told to leave the system resolver alone.
      const crashed = up(lab, srv, 'laptop')
      await waitFor(
        'the laptop resolver set',
        async () => (await status(lab, 'laptop'))?.datapath.resolver.system.state === 'set',
        20_000,
        100,
      )
      assert.notDeepEqual(await resolvConf(lab, 'laptop'), original)
      process.kill(crashed.pid, 'SIGKILL')
      await waitGone(crashed)
      assert.notDeepEqual(await resolvConf(lab, 'laptop'), original, 'nothing restored by a killed agent')
      const next = up(lab, srv, 'laptop', ['--system-resolver', 'off'])
      // Restored once the next agent holds its state directory (after its lock, before its resolver starts).
      await waitFor(
        'the next start to restore resolv.conf',
        async () => (await resolvConf(lab, 'laptop')).equals(original),
        20_000,
        50,
      )
      await waitFor('the next laptop agent', () => status(lab, 'laptop'), 20_000, 100)
      assert.deepEqual(await resolvConf(lab, 'laptop'), original, 'and left alone by --system-resolver off')
      await lab.execOk('laptop', ['node', MAIN, 'down'])
      await waitGone(next)
      assert.deepEqual(await resolvConf(lab, 'laptop'), original)

      // And a restart after a crash that manages it again ends, at down, with the original too.
      const again = up(lab, srv, 'laptop')
      await waitFor(
        'resolver set again',
        async () => (await status(lab, 'laptop'))?.datapath.resolver.system.state === 'set',
        20_000,
        100,
      )
      process.kill(again.pid, 'SIGKILL')
      await waitGone(again)
      const last = up(lab, srv, 'laptop')
      await waitFor(
        'resolver set after the crash',
        async () => (await status(lab, 'laptop'))?.datapath.resolver.system.state === 'set',
        20_000,
        100,
      )
      assert.equal((await lab.execOk('laptop', ['getent', 'hosts', 'desktop'])).stdout.split(/\s/)[0], dUla)
      await lab.execOk('laptop', ['node', MAIN, 'down'])
      await waitGone(last)
      assert.deepEqual(await resolvConf(lab, 'laptop'), original)
      desktop.stop()
    } finally {
      await srv.stop()
    }
  })
})
