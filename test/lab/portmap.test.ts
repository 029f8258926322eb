// Port mapping through the lab's miniupnpd gateway with the real clients (natpmpc, upnpc, a PCP MAP request), and
// what a gateway restart, a public address change and switched-off protocols do to it.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Lab, withLab } from '../../lab/index.js'
import { UDP_PEER, udpReceiver, udpSend } from './helpers.js'

describe('lab: miniupnpd gateway (site home)', () => {
  let lab: Lab
  before(async () => {
    lab = await Lab.up({ sites: ['home'] })
  })
  after(async () => {
    await lab?.down()
  })

  it('natpmpc gets the external address and a mapping that the server can reach', async () => {
    const gw = lab.gatewayOf('home')
    const g = await lab.execOk('desktop', ['natpmpc', '-g', gw])
    assert.match(g.stdout, /Public IP address : 203\.0\.113\.11\b/)
    const m = await lab.execOk('desktop', ['natpmpc', '-g', gw, '-a', '40000', '50000', 'udp', '600'])
    assert.match(m.stdout, /Mapped public port 40000 protocol UDP to local port 50000/)
    const got = await udpReceiver(lab, 'desktop', 50000)
    await udpSend(lab, 'server', lab.publicIpOf('home'), 40000, 'hello via nat-pmp')
    assert.equal(await got.received(), 'hello via nat-pmp')
  })

  it('upnpc -i discovers the IGD by SSDP, reads the external address and maps a port the server can reach', async () => {
    const s = await lab.execOk('desktop', ['upnpc', '-i', '-s'], { timeoutMs: 15_000 })
    assert.match(s.stdout, /ExternalIPAddress = 203\.0\.113\.11\b/)
    const a = await lab.execOk('desktop', [
      'upnpc',
      '-i',
      '-e',
      'lab',
      '-a',
      lab.addressOf('desktop'),
      '50001',
      '40001',
      'UDP',
      '600',
    ])
    assert.match(a.stdout, /external 203\.0\.113\.11:40001 UDP is redirected to internal 192\.168\.1\.10:50001/)
    const got = await udpReceiver(lab, 'desktop', 50001)
    await udpSend(lab, 'server', '203.0.113.11', 40001, 'hello via upnp')
    assert.equal(await got.received(), 'hello via upnp')
  })

  it('answers a PCP MAP request with the external address', async () => {
    const r = await lab.execOk('desktop', [
      'node',
      UDP_PEER,
      'pcp-map',
      lab.gatewayOf('home'),
      lab.addressOf('desktop'),
      '17',
      '50002',
      '40002',
      '600',
    ])
    const a = JSON.parse(r.stdout) as Record<string, unknown>
    assert.deepEqual(
      { result: a.result, nonceOk: a.nonceOk, ext: a.externalAddress, port: a.externalPort },
      { result: 0, nonceOk: true, ext: '203.0.113.11', port: 40002 },
    )
  })

  it('after set-public-ip the gateway reports the new address and the mapping works there', async () => {
    await lab.setPublicIp('home', '203.0.113.111')
    assert.equal(lab.publicIpOf('home'), '203.0.113.111')
    const g = await lab.execOk('desktop', ['natpmpc', '-g', lab.gatewayOf('home')])
    assert.match(g.stdout, /Public IP address : 203\.0\.113\.111\b/)
    const got = await udpReceiver(lab, 'desktop', 50000)
    await udpSend(lab, 'server', '203.0.113.111', 40000, 'hello at the new address')
    assert.equal(await got.received(), 'hello at the new address')
    const seen = await lab.execOk('server', ['ping', '-c1', '-W1', '203.0.113.111'])
    assert.match(seen.stdout, /1 received/)
  })

  it('after restart-gateway the old mappings are gone and the epoch restarts', async () => {
    const before = await lab.execOk('desktop', [
      'upnpc',
      '-i',
      '-u',
      `http://${lab.gatewayOf('home')}:2189/rootDesc.xml`,
      '-l',
    ])
    assert.match(before.stdout, /40001->192\.168\.1\.10:50001/)
    await lab.restartGateway('home')
    const l = await lab.execOk('desktop', [
      'upnpc',
      '-i',
      '-u',
      `http://${lab.gatewayOf('home')}:2189/rootDesc.xml`,
      '-l',
    ])
    assert.doesNotMatch(l.stdout, /->192\.168\.1\.10:/)
    const nft = await lab.execOk('home', ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd'])
    assert.doesNotMatch(nft.stdout, /dnat/)
    const got = await udpReceiver(lab, 'desktop', 50000, 1000)
    await udpSend(lab, 'server', lab.publicIpOf('home'), 40000, 'must not arrive')
    assert.equal(await got.received(), null)
    const g = await lab.execOk('desktop', ['natpmpc', '-g', lab.gatewayOf('home')])
    const epoch = Number(/epoch = (\d+)/.exec(g.stdout)?.[1])
    assert.ok(epoch < 5, `epoch ${epoch} after restart`)
  })
})

describe('lab: miniupnpd protocols can be switched off', () => {
  it('without NAT-PMP natpmpc gets no answer while UPnP and PCP still work', async () => {
    const topology = {
      internet: [{ name: 'server', address: '198.51.100.10' }],
      sites: [
        {
          name: 'home',
          nat: 'upnp' as const,
          wan: '203.0.113.11',
          lan: '192.168.1.0/24',
          hosts: ['desktop'],
          upnp: { natpmp: false },
        },
        {
          name: 'cafe',
          nat: 'upnp' as const,
          wan: '203.0.113.12',
          lan: '10.20.0.0/24',
          hosts: ['laptop'],
          upnp: { upnp: false, pcp: false },
        },
      ],
    }
    await withLab(null, { topology }, async (lab) => {
      const n = await lab.exec('desktop', ['timeout', '3', 'natpmpc', '-g', lab.gatewayOf('home')])
      assert.doesNotMatch(n.stdout, /Public IP address/)
      const p = await lab.execOk('desktop', [
        'node',
        UDP_PEER,
        'pcp-map',
        lab.gatewayOf('home'),
        lab.addressOf('desktop'),
        '17',
        '50002',
        '40002',
        '600',
      ])
      assert.equal((JSON.parse(p.stdout) as { result: number }).result, 0)
      const u = await lab.execOk('desktop', ['upnpc', '-i', '-u', 'http://192.168.1.1:2189/rootDesc.xml', '-s'])
      assert.match(u.stdout, /ExternalIPAddress = 203\.0\.113\.11\b/)
      const c = await lab.execOk('laptop', ['natpmpc', '-g', lab.gatewayOf('cafe')])
      assert.match(c.stdout, /Public IP address : 203\.0\.113\.12\b/)
      const pc = await lab.exec('laptop', [
        'node',
        UDP_PEER,
        'pcp-map',
        lab.gatewayOf('cafe'),
        lab.addressOf('laptop'),
        '17',
        '50002',
        '40002',
        '600',
      ])
      assert.match(pc.stdout, /timeout/)
      const cu = await lab.exec('laptop', ['upnpc', '-i', '-u', 'http://10.20.0.1:2189/rootDesc.xml', '-s'], {
        timeoutMs: 10_000,
      })
      assert.doesNotMatch(cu.stdout, /ExternalIPAddress = 203/)
    })
  })
})

describe('lab: miniupnpd behind the carrier NAT of a double-NAT site', () => {
  it('learns by STUN that the carrier NAT filters and refuses every mapping', async () => {
    const topology = {
      internet: [{ name: 'server', address: '198.51.100.10' }],
      sites: [
        {
          name: 'office',
          nat: 'double' as const,
          wan: '203.0.113.15',
          lan: '192.168.5.0/24',
          hosts: ['workstation'],
          upnp: {},
        },
      ],
    }
    await withLab(null, { topology }, async (lab) => {
      const log = await lab.execOk('server', ['cat', `${lab.dir}/miniupnpd-office.log`])
      assert.match(log.stdout, /behind restrictive or symmetric NAT with public IP address 203\.0\.113\.15/)
      const m = await lab.exec('workstation', [
        'natpmpc',
        '-g',
        lab.gatewayOf('office'),
        '-a',
        '40000',
        '50000',
        'udp',
        '60',
      ])
      assert.doesNotMatch(m.stdout, /Mapped public port/)
      const u = await lab.exec('workstation', [
        'upnpc',
        '-i',
        '-u',
        'http://192.168.5.1:2189/rootDesc.xml',
        '-a',
        lab.addressOf('workstation'),
        '50000',
        '40000',
        'UDP',
        '60',
      ])
      assert.doesNotMatch(u.stdout, /is redirected to internal/)
      const ping = await lab.exec('workstation', ['ping', '-c1', '-W2', '198.51.100.10'])
      assert.equal(ping.code, 0)
    })
  })
})
