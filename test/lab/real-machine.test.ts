// Issue 13's "Done when", end to end, as a person installing it on a VPS and two machines would: from a fresh lab
// (server on the internet, desktop at home, laptop in the cafe), `autotunnel server` on the wildcard address
// (0.0.0.0:53, TLS on 0.0.0.0:853) without --advertise; two agents started with only --server, --hostname,
// --key-file and --ca (no --domain, no resolver flags, no --state); then on the laptop `getent hosts desktop` gives
// the desktop's ULA and `ssh desktop` logs in; `autotunnel down` on both leaves each node's /etc/resolv.conf
// byte-identical. What the wildcard server advertised must not be a loopback address, seen from the laptop (dig)
// and in what the agents use (status).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { withLab } from '../../lab/index.js'
import { MAIN, SERVER_ADDR, startServer, waitFor, ZONE } from './agent-helpers.js'
import { hostStatus, resolvConf, upAsReadme, waitGone } from './readme-agent.js'
import { startSshd } from './tunnel-helpers.js'

const DOMAIN = `alice.${ZONE}`
const HOSTS = ['desktop', 'laptop'] as const
const re = (s: string): string => s.replaceAll('.', '\\.')

test('on a real machine: wildcard server, agents with four flags, getent and ssh by name, down restores resolv.conf', {
  timeout: 120_000,
}, async (t) => {
  await withLab(t, { sites: ['home', 'cafe'] }, async (lab) => {
    const srv = await startServer(lab, { wildcard: true, leaseMin: 30 })
    t.after(() => srv.stop())
    const before = new Map<string, Buffer>()
    for (const h of HOSTS) before.set(h, await resolvConf(lab, h))

    // What the server advertises, asked from the laptop: the update and Push servers' address, not loopback.
    const srvRecords = await lab.execOk('laptop', [
      'dig',
      `@${SERVER_ADDR}`,
      '+noall',
      '+answer',
      '+additional',
      '+time=1',
      '+tries=2',
      `_dnsupdate-tls._udp.${DOMAIN}`,
      'SRV',
      `_dns-push-tls._tcp.${DOMAIN}`,
      'SRV',
      `ns.${ZONE}`,
      'A',
    ])
    assert.match(srvRecords.stdout, new RegExp(`\\sSRV\\s+\\d+ \\d+ 853 ns\\.${re(ZONE)}\\.`), srvRecords.stdout)
    assert.match(srvRecords.stdout, new RegExp(`^ns\\.${re(ZONE)}\\.\\s+\\d+\\s+IN\\s+A\\s+${re(SERVER_ADDR)}$`, 'm'))
    assert.doesNotMatch(srvRecords.stdout, /\b127\.\d+\.\d+\.\d+\b/)

    const agents = new Map(HOSTS.map((h) => [h, upAsReadme(lab, srv, h)]))
    const dUla = (await waitFor('desktop status', () => hostStatus(lab, 'desktop'), 20_000, 100)).identity.ula
    const sLaptop = await waitFor(
      'the laptop to learn the desktop',
      async () => {
        const x = await hostStatus(lab, 'laptop')
        return x?.peers.some((p) => p.name === 'desktop' && p.ula === dUla) ? x : undefined
      },
      30_000,
      100,
    )
    // Both agents found the update server at the address the server advertised (no fall-back to --server needed).
    for (const h of HOSTS) {
      const s = h === 'laptop' ? sLaptop : await hostStatus(lab, h)
      assert.equal(s?.server.updateServer, `tls:${SERVER_ADDR}:853`, `${h}: ${JSON.stringify(s?.server)}`)
      assert.ok(!s?.server.advertised, `${h} fell back from ${s?.server.advertised}`)
      const sys = await waitFor(
        `${h}'s system resolver set`,
        async () => {
          const r = (await hostStatus(lab, h))?.datapath.resolver
          return r?.system.state === 'set' ? r : undefined
        },
        20_000,
        100,
      )
      assert.equal(sys.error, null)
      assert.equal(sys.system.mode, 'resolv.conf', sys.system.detail)
      assert.notDeepEqual(await resolvConf(lab, h), before.get(h), `${h}'s resolv.conf names the agent`)
    }

    const g = await lab.execOk('laptop', ['getent', 'hosts', 'desktop'])
    assert.match(g.stdout, new RegExp(`^${dUla}\\s+desktop\\.${re(DOMAIN)}`))

    const sshd = await startSshd(lab, 'desktop', dUla)
    t.after(() => sshd.stop())
    const ssh = await lab.exec('laptop', [...sshd.ssh, 'desktop', 'id -un; hostname -I'], { timeoutMs: 30_000 })
    assert.equal(ssh.code, 0, `ssh desktop: ${ssh.stderr}`)
    const [user, addrs] = ssh.stdout.split('\n')
    assert.equal(user, 'root')
    assert.ok(addrs?.split(/\s+/).includes(dUla), `the session runs on the desktop: ${ssh.stdout}`)

    for (const h of HOSTS) {
      const down = await lab.execOk(h, ['node', MAIN, 'down'])
      assert.match(down.stdout, /agent stopped/)
      await waitGone(agents.get(h)!)
      assert.deepEqual(await resolvConf(lab, h), before.get(h), `down restores ${h}'s resolv.conf byte-identical`)
    }
  })
})
