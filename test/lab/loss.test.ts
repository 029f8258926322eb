// Packet loss (nftables numgen) and cut/restore on host links and site uplinks, measured with ping.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Lab } from '../../lab/index.js'
import { pingLost, SERVER } from './helpers.js'

const N = 1000

/** Lost count of N pings must lie within 5 standard deviations of a binomial(N, p). */
function assertAbout(lost: number, p: number): void {
  const sd = Math.sqrt(N * p * (1 - p))
  assert.ok(Math.abs(lost - N * p) <= 5 * sd, `lost ${lost} of ${N}, expected ${N * p} +- ${Math.round(5 * sd)}`)
}

describe('lab: loss, cut, restore', () => {
  let lab: Lab
  before(async () => {
    lab = await Lab.up({ sites: ['hotel'] })
  })
  after(async () => {
    await lab?.down()
  })

  it('10% loss in one direction on a host link drops about 10% of 1000 pings', async () => {
    assert.equal(await pingLost(lab, 'hotel-guest', SERVER, 200), 0)
    await lab.loss('hotel-guest', 10, { direction: 'up' })
    assertAbout(await pingLost(lab, 'hotel-guest', SERVER, N), 0.1)
  })

  it('10% loss in both directions on a site uplink drops about 19% of 1000 pings', async () => {
    await lab.loss('hotel-guest', 0)
    await lab.loss('hotel', 10)
    assertAbout(await pingLost(lab, 'hotel-guest', SERVER, N), 1 - 0.9 * 0.9)
  })

  it('loss 0 removes the drop rules', async () => {
    await lab.loss('hotel', 0)
    assert.equal(await pingLost(lab, 'hotel-guest', SERVER, 300), 0)
    const r = await lab.execOk('hotel', ['nft', 'list', 'ruleset'])
    assert.doesNotMatch(r.stdout, /numgen/)
  })

  it('cut stops all traffic on a link and restore brings it back, for a host link and an uplink', async () => {
    for (const link of ['hotel-guest', 'hotel', 'server']) {
      await lab.cut(link)
      assert.equal(await pingLost(lab, 'hotel-guest', SERVER, 20), 20, `${link} cut`)
      await lab.restore(link)
      assert.equal(await pingLost(lab, 'hotel-guest', SERVER, 20), 0, `${link} restored`)
    }
  })

  it('rejects unknown links and bad percentages', async () => {
    await assert.rejects(lab.loss('nowhere', 5), /no link nowhere/)
    await assert.rejects(lab.loss('hotel', 101), /loss must be 0\.\.100/)
  })
})
