import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { failOnLeakedResources } from '../src/io/leak-check.js'
import { linkRules } from './nft.js'
import { dev, linkBatch, nsScripts, planState } from './plan.js'
import { newRunName, nsName, validRunName } from './state.js'
import {
  isDocumentationAddress,
  parseCidr,
  resolveTopology,
  standardTopology,
  type Topology,
  TopologyError,
} from './topology.js'

failOnLeakedResources()

describe('lab topology', () => {
  it('resolves the standard topology with its documented addresses', () => {
    const t = resolveTopology(standardTopology())
    assert.deepEqual(t.core, { router: '192.0.2.254', stun: ['192.0.2.1', '192.0.2.2'] })
    const hosts = t.sites.flatMap((s) => s.hosts.map((h) => [s.name, s.nat, s.wan, h.name, h.address]))
    assert.deepEqual(hosts, [
      ['home', 'upnp', '203.0.113.11', 'desktop', '192.168.1.10'],
      ['cafe', 'upnp', '203.0.113.12', 'laptop', '10.20.0.10'],
      ['hotel', 'eim', '203.0.113.13', 'hotel-guest', '10.30.0.10'],
      ['mobile', 'symmetric', '203.0.113.14', 'phone', '10.40.0.10'],
      ['office', 'double', '203.0.113.15', 'workstation', '192.168.5.10'],
      ['public', 'none', '198.51.100.2', 'vps', '198.51.100.130'],
    ])
    assert.deepEqual(t.internet, [{ name: 'server', address: '198.51.100.10' }])
    assert.deepEqual(t.sites[0]!.upnp, { natpmp: true, pcp: true, upnp: true, minLifetimeSec: 120 })
    assert.deepEqual(
      t.sites.filter((s) => s.miniupnpd).map((s) => s.name),
      ['home', 'cafe'],
    )
    const office = standardTopology()
    office.sites[4]!.upnp = {}
    assert.equal(resolveTopology(office).sites[4]!.miniupnpd, true)
    office.sites[0]!.upnp = { natpmp: false, pcp: false, upnp: false }
    assert.equal(resolveTopology(office).sites[0]!.miniupnpd, false)
  })

  it('keeps only the requested sites', () => {
    const t = resolveTopology(standardTopology(), ['hotel', 'home'])
    assert.deepEqual(
      t.sites.map((s) => s.name),
      ['home', 'hotel'],
    )
    assert.throws(() => resolveTopology(standardTopology(), ['moon']), TopologyError)
  })

  const bad: [string, (t: Topology) => void, RegExp][] = [
    ['non-documentation public address', (t) => (t.sites[0]!.wan = '8.8.8.8'), /not in a documentation range/],
    ['duplicate public address', (t) => (t.sites[1]!.wan = t.sites[0]!.wan), /used twice/],
    ['duplicate name', (t) => (t.sites[1]!.hosts = ['desktop']), /name used twice/],
    ['reserved name', (t) => (t.sites[1]!.name = 'core'), /reserved/],
    ['bad name', (t) => (t.sites[1]!.hosts = ['Laptop!']), /bad name/],
    ['unknown nat', (t) => ((t.sites[1] as { nat: string }).nat = 'cone'), /unknown nat/],
    ['host outside lan', (t) => (t.sites[0]!.hosts = [{ name: 'x', address: '10.9.9.9' }]), /not in/],
    ['private lan on public site', (t) => (t.sites[5]!.lan = '10.0.0.0/24'), /lan must be public/],
    ['bad cidr', (t) => (t.sites[0]!.lan = '192.168.1.1/24'), /host bits/],
  ]
  for (const [name, mutate, re] of bad) {
    it(`rejects a topology with ${name}`, () => {
      const t = standardTopology()
      mutate(t)
      assert.throws(() => resolveTopology(t), re)
    })
  }

  it('knows the documentation ranges', () => {
    assert.ok(isDocumentationAddress('192.0.2.77'))
    assert.ok(isDocumentationAddress('198.51.100.255'))
    assert.ok(isDocumentationAddress('203.0.113.0'))
    assert.ok(!isDocumentationAddress('203.0.114.1'))
    assert.ok(!isDocumentationAddress('10.0.0.1'))
    assert.deepEqual(parseCidr('10.20.0.0/24'), { network: 0x0a140000, prefixLen: 24, size: 256 })
  })

  it('plans names that fit interface limits and a route to every public address', () => {
    const name = 'abcdefghij0123456789'
    assert.ok(validRunName(name))
    assert.ok(!validRunName('Bad_Name'))
    assert.match(newRunName(), /^r[0-9a-f]{6}$/)
    const s = planState(name, 'lzzz', '/nonexistent', resolveTopology(standardTopology()), null)
    assert.equal(s.nodes['hotel-guest']!.ns, nsName(name, 'hotel-guest'))
    const devs = linkBatch(s).match(/\blzzz-[a-z0-9]+/g) ?? []
    assert.ok(devs.length > 20)
    for (const d of devs) assert.ok(d.length <= 15, d)
    const core = nsScripts(s).get('core')!
    for (const a of ['198.51.100.10/32', '203.0.113.11/32', '203.0.113.15/32', '198.51.100.128/25 via 198.51.100.2']) {
      assert.ok(core.includes(`route add ${a}`), a)
    }
    assert.doesNotMatch(core, /route add default/)
    assert.match(nsScripts(s).get('mobile')!, /masquerade fully-random/)
    assert.doesNotMatch(nsScripts(s).get('hotel')!, /fully-random/)
    assert.equal(dev.port('lzzz', 12), 'lzzz-h12')
  })

  it('writes numgen loss rules in 0.1 % steps and removes them at 0', () => {
    assert.match(linkRules('l1-eth0', false, 12.5), /numgen random mod 1000 < 125 drop/)
    assert.match(linkRules('l1-eth0', true, 0), /in_l1_eth0 drop$/m)
    assert.doesNotMatch(linkRules('l1-eth0', false, 0), /hook ingress/)
  })
})
