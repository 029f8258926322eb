// Moving a host between sites: new address from the new site, old one gone, the server reached from the new site's
// public address, and the host's open TCP sockets survive (the namespace stays; only its link changes).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Lab } from '../../lab/index.js'
import { SERVER, startReflector } from './helpers.js'

async function addresses(lab: Lab, host: string): Promise<string[]> {
  const r = await lab.execOk(host, ['ip', '-4', '-o', 'addr', 'show', 'scope', 'global'])
  return [...r.stdout.matchAll(/inet ([\d.]+)\//g)].map((m) => m[1]!)
}

/** The address the server's UDP reflector sees `host` as. UDP may lose the first datagram on a link that was just
 * made (neighbour resolution), so it asks up to three times; the answer, not its first-packet delivery, is tested. */
async function seenAs(lab: Lab, host: string): Promise<string> {
  let seen = ''
  for (let attempt = 0; attempt < 3 && !seen; attempt++) {
    const r = await lab.execOk(host, ['socat', '-T1', '-', `UDP4:${SERVER}:3480`], { input: '?' })
    seen = r.stdout.split(':')[0] ?? ''
  }
  return seen
}

describe('lab: move', () => {
  let lab: Lab
  before(async () => {
    lab = await Lab.up({ sites: ['home', 'cafe', 'public'] })
    await startReflector(lab)
  })
  after(async () => {
    await lab?.down()
  })

  it('moves laptop from cafe to home: new address, old gone, server reached from home, TCP socket kept', async () => {
    lab.spawn('server', ['socat', '-u', 'TCP-LISTEN:5000,reuseaddr', 'OPEN:/dev/null'], { logName: 'tcp-sink' })
    await lab.waitListening('server', 5000, { proto: 'tcp' })
    lab.spawn('laptop', ['socat', '-u', 'EXEC:sleep 600', `TCP:${SERVER}:5000`], { logName: 'tcp-client' })
    let est = ''
    for (let i = 0; i < 100 && !est; i++) {
      est = (await lab.exec('laptop', ['ss', '-Htn', 'state', 'established'])).stdout.trim()
      if (!est) await new Promise((r) => setTimeout(r, 10))
    }
    assert.match(est, /10\.20\.0\.10:\d+\s+198\.51\.100\.10:5000/)
    assert.equal(await seenAs(lab, 'laptop'), lab.publicIpOf('cafe'))

    await lab.move('laptop', 'home')
    assert.equal(lab.siteOf('laptop'), 'home')
    assert.equal(lab.addressOf('laptop'), '192.168.1.11')
    assert.deepEqual(await addresses(lab, 'laptop'), ['192.168.1.11'])
    const route = await lab.execOk('laptop', ['ip', 'route', 'show', 'default'])
    assert.match(route.stdout, /default via 192\.168\.1\.1 /)
    const ping = await lab.exec('laptop', ['ping', '-c1', '-W2', SERVER])
    assert.equal(ping.code, 0, ping.stdout)
    assert.equal(await seenAs(lab, 'laptop'), lab.publicIpOf('home'))
    const kept = await lab.execOk('laptop', ['ss', '-Htn', 'state', 'established'])
    assert.match(kept.stdout, /10\.20\.0\.10:\d+\s+198\.51\.100\.10:5000/, 'the TCP socket is still open')
    const g = await lab.execOk('laptop', ['natpmpc', '-g', lab.gatewayOf('home')])
    assert.match(g.stdout, /Public IP address : 203\.0\.113\.11\b/)
  })

  it('moves laptop on to the public site (public address) and back to cafe', async () => {
    await lab.move('laptop', 'public')
    assert.deepEqual(await addresses(lab, 'laptop'), ['198.51.100.138'])
    assert.equal(await seenAs(lab, 'laptop'), '198.51.100.138')
    await lab.move('laptop', 'cafe')
    assert.deepEqual(await addresses(lab, 'laptop'), ['10.20.0.10'])
    assert.equal(await seenAs(lab, 'laptop'), lab.publicIpOf('cafe'))
  })

  it('refuses to move an internet host or into an unknown site', async () => {
    await assert.rejects(lab.move('server', 'home'), /on the internet/)
    await assert.rejects(lab.move('laptop', 'nowhere'), /no site nowhere/)
  })
})
