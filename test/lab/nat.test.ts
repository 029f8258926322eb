// NAT behaviour of the lab's gateway kinds, checked with real traffic: hole punching through endpoint-independent
// NATs works, through the symmetric NAT it fails; the double NAT and the public site reach the server.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Lab } from '../../lab/index.js'
import { punch, SERVER, startReflector } from './helpers.js'

describe('lab: NAT kinds', () => {
  let lab: Lab
  before(async () => {
    lab = await Lab.up({ sites: ['cafe', 'hotel', 'mobile', 'office', 'public'] })
    await startReflector(lab)
  })
  after(async () => {
    await lab?.down()
  })

  it("is isolated: only lo and the run's own interfaces in every namespace, no default route in the core", async () => {
    const tag = lab.state.tag
    for (const node of Object.keys(lab.state.nodes)) {
      const r = await lab.execOk(node, ['ip', '-o', 'link', 'show'])
      const names = [...r.stdout.matchAll(/^\d+: ([^:@]+)[:@]/gm)].map((m) => m[1]!)
      assert.ok(names.includes('lo'), node)
      assert.deepEqual(
        names.filter((n) => n !== 'lo' && !n.startsWith(`${tag}-`)),
        [],
        node,
      )
    }
    const core = await lab.execOk('core', ['ip', 'route', 'show', 'default'])
    assert.equal(core.stdout.trim(), '')
    const out = await lab.exec('core', ['ping', '-c1', '-W1', '9.9.9.9'])
    assert.notEqual(out.code, 0)
  })

  it('every host reaches the server and appears there with its site public address', async () => {
    for (const [host, site] of [
      ['laptop', 'cafe'],
      ['hotel-guest', 'hotel'],
      ['phone', 'mobile'],
      ['workstation', 'office'],
    ] as const) {
      const r = await lab.execOk(host, ['socat', '-T1', '-', `UDP4:${SERVER}:3480`], { input: '?' })
      assert.equal(r.stdout.split(':')[0], lab.publicIpOf(site), host)
    }
    const v = await lab.execOk('vps', ['socat', '-T1', '-', `UDP4:${SERVER}:3480`], { input: '?' })
    assert.equal(v.stdout.split(':')[0], '198.51.100.130')
  })

  it('the stun client classifies hotel as independent mapping and mobile as dependent (symmetric)', async () => {
    const hotel = await lab.exec('hotel-guest', ['stun', lab.state.topology.core.stun[0]], { timeoutMs: 10_000 })
    assert.match(hotel.stdout, /Primary: Independent Mapping, Port Dependent Filter, preserves ports/)
    const mobile = await lab.exec('phone', ['stun', lab.state.topology.core.stun[0]], { timeoutMs: 10_000 })
    assert.match(mobile.stdout, /Primary: Dependent Mapping, random port/)
    const open = await lab.exec('vps', ['stun', lab.state.topology.core.stun[0]], { timeoutMs: 10_000 })
    assert.match(open.stdout, /Primary: Open/)
  })

  it('hole punching between two endpoint-independent NATs (hotel, cafe) works both ways', async () => {
    const r = await punch(lab, 'hotel-guest', 'laptop')
    assert.equal(r.a.endpoint, `${lab.publicIpOf('hotel')}:41000`, 'hotel preserves the port')
    assert.equal(r.b.endpoint, `${lab.publicIpOf('cafe')}:42000`, 'cafe preserves the port')
    assert.ok(r.a.received.length > 5, `hotel-guest received ${r.a.received.length}`)
    assert.ok(r.b.received.length > 5, `laptop received ${r.b.received.length}`)
    assert.ok(r.a.received.every((x) => x.startsWith(r.b.endpoint)))
  })

  it('hole punching from behind the double NAT to the hotel works', async () => {
    const r = await punch(lab, 'workstation', 'hotel-guest')
    assert.ok(r.a.received.length > 5 && r.b.received.length > 5, JSON.stringify(r))
  })

  it('the same hole punching from behind the symmetric NAT (mobile) fails', async () => {
    const r = await punch(lab, 'phone', 'hotel-guest')
    assert.equal(r.a.endpoint.split(':')[0], lab.publicIpOf('mobile'))
    assert.deepEqual([r.a.received.length, r.b.received.length], [0, 0])
  })
})
