// Interop: our IKEv2 (src/ike) against strongSwan 5.9.8 charon with kernel-libipsec, in two network
// namespaces (recipes: ../shared/peers/RECIPES.md section 2). Ours as initiator and as responder, PSK
// and RFC 7427 signatures (Ed25519, ECDSA P-256; charon holds our raw public key via swanctl `pubkeys`),
// KE groups 31, 19, 20, Child SA and IKE SA rekeys started by each side, INVALID_KE_PAYLOAD both ways,
// Delete both ways. Each Child SA is proven by an ICMPv6 echo inside ESP-in-UDP that charon's
// libipsec decrypts, answers and encrypts back to us.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { derivePsk } from '../../src/ike/auth.js'
import {
  CHARON_SIDE,
  type CharonConn,
  charonConnection,
  IkeLab,
  LAB_ADDR,
  LAB_ID,
  LAB_ULA,
  labAvailable,
  OURS_SIDE,
  type OurPeer,
} from '../ike-lab/strongswan.js'

const run = promisify(execFile)
/** How late charon's IKE messages reach our engine in the rekey collision test: longer than our reaction time. */
const CROSS_DELAY_MS = 300
/** charon starting a Child SA rekey, in its log. */
const CHARON_REKEY_REQUEST = /generating CREATE_CHILD_SA request \d+ \[ N\(REKEY_SA\)/g
/** charon resolving a Child SA rekey collision (RFC 7296 2.8.1), in its log. */
const CHARON_REKEY_COLLISION = /CHILD_SA rekey collision (won|lost)/g
const count = (text: string, re: RegExp): number => text.match(re)?.length ?? 0
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const PSK = derivePsk('interop account secret', 'ike-test').toString('hex')
type Alg = 'ed25519' | 'ecdsa'

function keys(alg: Alg): { privPem: string; pubPem: string } {
  const kp = alg === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return {
    privPem: kp.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    pubPem: kp.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  }
}

/** The state charon shows for the Child SA whose inbound SPI is `spi` (our outbound), or undefined. */
function childState(list: string, spi: number): string | undefined {
  const hex = spi.toString(16).padStart(8, '0')
  for (const block of list.split(/\n(?=\s+inner: )/))
    if (block.includes(`in  ${hex}`)) return /, (\w+), TUNNEL/.exec(block)?.[1]
  return undefined
}

interface Case {
  auth: 'psk' | Alg
  ike: string
  esp: string
  groups?: number[]
  childCiphers?: string[]
  esn?: boolean[]
  mobike?: boolean
}

describe('IKEv2 interop with strongSwan charon', {
  skip: !labAvailable() && 'needs root for network namespaces',
}, () => {
  let lab: IkeLab
  before(async () => {
    lab = await IkeLab.create(`ik${process.pid % 100000}`)
    await lab.startCharon()
  })
  after(async () => {
    await lab?.destroy()
  })

  async function setup(
    c: Case,
    extraOurs: Record<string, unknown> = {},
    extraConn: Partial<CharonConn> = {},
  ): Promise<OurPeer> {
    const conn: CharonConn = {
      name: 'ours',
      auth: c.auth === 'psk' ? 'psk' : 'pubkey',
      ike: c.ike,
      esp: c.esp,
      pskHex: PSK,
      ...extraConn,
    }
    const files: Record<string, string> = {}
    const ourCfg: Record<string, unknown> = {
      localId: LAB_ID.ours,
      localUla: LAB_ULA.ours,
      bind: LAB_ADDR.ours,
      port: 4500,
      auth: c.auth === 'psk' ? 'psk' : 'signature',
      psk: PSK,
      ...(c.groups ? { groups: c.groups } : {}),
      ...(c.childCiphers ? { childCiphers: c.childCiphers } : {}),
      ...(c.esn ? { esn: c.esn } : {}),
      ...extraOurs,
    }
    const peer: Record<string, unknown> = {
      id: LAB_ID.charon,
      ula: LAB_ULA.charon,
      address: LAB_ADDR.charon,
      port: extraOurs.peerPort ?? 4500,
    }
    if (c.auth !== 'psk') {
      const ours = keys(c.auth)
      const theirs = keys(c.auth)
      files['pubkey/ours.pem'] = ours.pubPem
      files['pubkey/charon.pem'] = theirs.pubPem
      files['pkcs8/charon.pem'] = theirs.privPem
      conn.localPubkey = 'charon.pem'
      conn.remotePubkey = 'ours.pem'
      ourCfg.hostKeyPem = ours.privPem
      peer.publicKeyPem = theirs.pubPem
    }
    if (c.mobike !== undefined) conn.mobike = c.mobike
    await lab.loadCharonConfig(charonConnection(conn), files)
    ourCfg.peers = [peer]
    return lab.startOurs(ourCfg)
  }

  async function teardown(p: OurPeer): Promise<void> {
    await lab.swanctl(['--terminate', '--ike', 'ours', '--force', '--timeout', '2']).catch(() => '')
    await p.call('exit').catch(() => {})
    p.kill()
  }

  async function charonSas(): Promise<string> {
    return lab.swanctl(['--list-sas'])
  }

  async function pingOk(p: OurPeer): Promise<void> {
    const r = await p.call<{ rttMs: number }>('ping', { timeoutMs: 3000 })
    assert.ok(r.rttMs < 1000)
  }

  const initiatorCases: [string, Case][] = [
    [
      'PSK, group 31, aes128gcm16 / ESP aes128gcm16',
      { auth: 'psk', ike: 'aes128gcm16-prfsha256-x25519', esp: 'aes128gcm16' },
    ],
    [
      'PSK, group 19, aes256gcm16-prfsha384 / ESP chacha20poly1305',
      { auth: 'psk', ike: 'aes256gcm16-prfsha384-ecp256', esp: 'chacha20poly1305' },
    ],
    [
      'PSK, group 20, aes256gcm16-prfsha512 / ESP aes256gcm16',
      { auth: 'psk', ike: 'aes256gcm16-prfsha512-ecp384', esp: 'aes256gcm16' },
    ],
    [
      'Ed25519, group 31, chacha20poly1305 / ESP chacha20poly1305',
      { auth: 'ed25519', ike: 'chacha20poly1305-prfsha256-x25519', esp: 'chacha20poly1305' },
    ],
    [
      'ECDSA P-256, group 19 / ESP aes128gcm16',
      { auth: 'ecdsa', ike: 'aes128gcm16-prfsha256-ecp256', esp: 'aes128gcm16' },
    ],
    [
      'Ed25519, group 20 / ESP aes256gcm16',
      { auth: 'ed25519', ike: 'aes256gcm16-prfsha384-ecp384', esp: 'aes256gcm16' },
    ],
  ]
  for (const [name, c] of initiatorCases) {
    test(`ours initiates: ${name}`, async (t) => {
      const p = await setup(c)
      t.after(() => teardown(p))
      const k = await p.call<{ spiIn: number; spiOut: number }>('connect')
      const sas = await charonSas()
      assert.match(sas, /ESTABLISHED/)
      assert.match(sas, /INSTALLED/)
      assert.match(sas, new RegExp(`in  ${k.spiOut.toString(16).padStart(8, '0')}`))
      await pingOk(p)
    })
  }

  const responderCases: [string, Case][] = [
    ['PSK, group 31', { auth: 'psk', ike: 'aes128gcm16-prfsha256-x25519', esp: 'aes128gcm16' }],
    ['PSK, group 19', { auth: 'psk', ike: 'aes128gcm16-prfsha256-ecp256', esp: 'chacha20poly1305' }],
    ['Ed25519, group 20', { auth: 'ed25519', ike: 'aes256gcm16-prfsha384-ecp384', esp: 'aes256gcm16' }],
    ['ECDSA P-256, group 31', { auth: 'ecdsa', ike: 'chacha20poly1305-prfsha256-x25519', esp: 'aes128gcm16' }],
  ]
  for (const [name, c] of responderCases) {
    test(`charon initiates, ours responds: ${name}`, async (t) => {
      const p = await setup(c)
      t.after(() => teardown(p))
      await lab.swanctl(['--initiate', '--child', 'inner', '--ike', 'ours', '--timeout', '10'])
      await p.waitEvent((e) => e.ev === 'childUp')
      assert.match(await charonSas(), /INSTALLED/)
      await pingOk(p)
    })
  }

  test('ESN: charon selects EXT_SEQ from our proposal; kernel-libipsec cannot install it, IKE SA stays', async (t) => {
    const p = await setup({ auth: 'psk', ike: 'aes128gcm16-prfsha256-x25519', esp: 'aes128gcm16-esn' })
    t.after(() => teardown(p))
    await assert.rejects(p.call('connect'), /IkePeerError: Child SA refused/)
    const log = await lab.charonLog()
    assert.match(log, /selected proposal: ESP:AES_GCM_16_128\/EXT_SEQ/)
    assert.match(log, /ESN not supported/)
    assert.match(await charonSas(), /ESTABLISHED/)
    assert.equal((await p.call<{ sas: unknown[] }>('list')).sas.length, 1)
    // the same IKE SA then carries a Child SA without ESN, made with CREATE_CHILD_SA
    await lab.loadCharonConfig(
      charonConnection({
        name: 'ours',
        auth: 'psk',
        ike: 'aes128gcm16-prfsha256-x25519',
        esp: 'aes128gcm16',
        pskHex: PSK,
      }),
    )
    await p.call('connect')
    assert.match(await lab.charonLog(), /CREATE_CHILD_SA request \d+ \[ SA No TSi TSr \]/)
    await pingOk(p)
  })

  test('INVALID_KE_PAYLOAD: charon wants group 19, we start with 31 and retry', async (t) => {
    const p = await setup({ auth: 'psk', ike: 'aes128gcm16-prfsha256-ecp256', esp: 'aes128gcm16', groups: [31, 19] })
    t.after(() => teardown(p))
    await p.call('connect')
    assert.match(await lab.charonLog(), /INVALID_KE_PAYLOAD|N\(INVAL_KE\)/)
    await pingOk(p)
  })

  test('INVALID_KE_PAYLOAD: we want group 20, charon starts with 31 and retries', async (t) => {
    const p = await setup({ auth: 'psk', ike: 'aes256gcm16-prfsha384-x25519-ecp384', esp: 'aes128gcm16', groups: [20] })
    t.after(() => teardown(p))
    await lab.swanctl(['--initiate', '--child', 'inner', '--ike', 'ours', '--timeout', '10'])
    await p.waitEvent((e) => e.ev === 'childUp')
    const list = await p.call<{ sas: { suite: string }[] }>('list')
    assert.match(list.sas[0]!.suite, /g20$/)
    await pingOk(p)
  })

  test('rekeys with PFS, each side: Child SA and IKE SA; ESP works after each', async (t) => {
    const p = await setup({ auth: 'ed25519', ike: 'aes128gcm16-prfsha256-x25519', esp: 'aes128gcm16-x25519' })
    t.after(() => teardown(p))
    const first = await p.call<{ spiIn: number; spiOut: number }>('connect')
    await pingOk(p)
    // ours rekeys the Child SA
    const second = await p.call<{ spiIn: number; spiOut: number }>('rekeyChild')
    assert.notEqual(second.spiIn, first.spiIn)
    await pingOk(p)
    let sas = await charonSas()
    assert.match(sas, new RegExp(`in  ${second.spiOut.toString(16).padStart(8, '0')}`))
    assert.notEqual(childState(sas, first.spiOut), 'INSTALLED')
    assert.match(await lab.charonLog(), /CREATE_CHILD_SA request \d+ \[ N\(REKEY_SA\) SA No KE TSi TSr \]/)
    // charon rekeys the Child SA
    const n = p.events.length
    await lab.swanctl(['--rekey', '--child', 'inner'])
    const up = await p.waitEvent((e) => e.ev === 'childUp' && e.replaces === second.spiIn, 10_000, n)
    await p.waitEvent((e) => e.ev === 'childDown' && e.spiIn === second.spiIn, 10_000, n)
    await pingOk(p)
    assert.ok(up.spiIn)
    // ours rekeys the IKE SA
    const before = (await p.call<{ sas: { spiI: string }[] }>('list')).sas[0]!.spiI
    await p.call('rekeyIke')
    const afterList = (await p.call<{ sas: { spiI: string }[] }>('list')).sas
    assert.equal(afterList.length, 1)
    assert.notEqual(afterList[0]!.spiI, before)
    sas = await charonSas()
    assert.match(sas, new RegExp(afterList[0]!.spiI))
    await pingOk(p)
    // the Child SA keeps working under the new IKE SA: rekey it through the new SA
    await p.call('rekeyChild')
    await pingOk(p)
    // charon rekeys the IKE SA
    const m = p.events.length
    await lab.swanctl(['--rekey', '--ike', 'ours'])
    await p.waitEvent((e) => e.ev === 'ikeUp', 10_000, m)
    await new Promise((r) => setTimeout(r, 300))
    const l2 = (await p.call<{ sas: { spiI: string; initiator: boolean }[] }>('list')).sas
    assert.equal(l2.length, 1)
    assert.equal(l2[0]!.initiator, false)
    assert.match(await charonSas(), new RegExp(l2[0]!.spiI))
    await pingOk(p)
    assert.equal(await p.call('dpd'), true)
  })

  test('MOBIKE: our address changes, UPDATE_SA_ADDRESSES moves charon in one round trip; then charon moves', async (t) => {
    const dev = `${lab.prefix}o0`
    const devC = `${lab.prefix}c0`
    const ip = (ns: string, ...a: string[]): Promise<unknown> => run('ip', ['-n', ns, ...a])
    for (const [ns, d] of [
      [lab.nsOurs, dev],
      [lab.nsCharon, devC],
    ] as const)
      await run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv4.conf.${d}.promote_secondaries=1`])
    await ip(lab.nsOurs, 'addr', 'add', '198.51.100.11/24', 'dev', dev)
    await ip(lab.nsCharon, 'addr', 'add', '198.51.100.21/24', 'dev', devC)
    t.after(async () => {
      await ip(lab.nsOurs, 'addr', 'del', '198.51.100.11/24', 'dev', dev).catch(() => {})
      await ip(lab.nsOurs, 'addr', 'replace', `${LAB_ADDR.ours}/24`, 'dev', dev).catch(() => {})
      await ip(lab.nsCharon, 'addr', 'del', '198.51.100.21/24', 'dev', devC).catch(() => {})
      await ip(lab.nsCharon, 'addr', 'replace', `${LAB_ADDR.charon}/24`, 'dev', devC).catch(() => {})
    })
    const p = await setup(
      { auth: 'psk', ike: 'aes128gcm16-prfsha256-x25519', esp: 'aes128gcm16' },
      { bind: '0.0.0.0', localAddress: LAB_ADDR.ours },
      { local: { ...CHARON_SIDE, addr: '%any' } },
    )
    t.after(() => teardown(p))
    await p.call('connect')
    await pingOk(p)
    // charon announces its own address list once right after IKE_AUTH: let that exchange finish first
    await sleep(2500)
    await ip(lab.nsOurs, 'addr', 'del', `${LAB_ADDR.ours}/24`, 'dev', dev)
    const t0 = performance.now()
    assert.equal(await p.call('mobike', { localAddress: '198.51.100.11' }), 1)
    const ms = performance.now() - t0
    assert.ok(ms < 500, `update took ${ms} ms`)
    assert.match(await charonSas(), /remote 'a\.ike\.test' @ 198\.51\.100\.11\[4500\]/)
    assert.match(
      await lab.charonLog(),
      /parsed INFORMATIONAL request \d+ \[ N\(UPD_SA_ADDR\) N\(NATD_S_IP\) N\(NATD_D_IP\) N\(COOKIE2\) \]/,
    )
    await sleep(500)
    await pingOk(p)
    // charon moves: it sends UPDATE_SA_ADDRESSES; we check return routability, then follow
    const n = p.events.length
    await ip(lab.nsCharon, 'addr', 'del', `${LAB_ADDR.charon}/24`, 'dev', devC)
    const moved = await p
      .waitEvent((e) => e.ev === 'peerEndpoint', 10_000, n)
      .catch(async (e) => {
        console.log(
          (await lab.charonLog())
            .split('\n')
            .filter((l) => /MOBIKE|UPD_SA|endpoint|path|\.21|COOKIE2/.test(l))
            .join('\n'),
        )
        throw e
      })
    assert.deepEqual(moved.remote, { address: '198.51.100.21', port: 4500 })
    await sleep(500)
    await pingOk(p)
  })

  test('port 500 and NAT-T floating (RFC 7296 2.23) with charon on its default ports, each side initiating', async (t) => {
    const p = await setup(
      { auth: 'ed25519', ike: 'aes128gcm16-prfsha256-x25519', esp: 'aes128gcm16' },
      { plainPort: 500, peerPort: 500 },
      { local: { ...CHARON_SIDE, port: 500 }, remote: { ...OURS_SIDE, port: 500 } },
    )
    t.after(() => teardown(p))
    await p.call('connect')
    let log = await lab.charonLog()
    assert.match(log, /received packet: from 198\.51\.100\.10\[500\] to 198\.51\.100\.20\[500\]/)
    assert.match(log, /parsed IKE_AUTH request 1 .*\n.*/)
    assert.match(await charonSas(), /remote 'a\.ike\.test' @ 198\.51\.100\.10\[4500\]/)
    await pingOk(p)
    await p.call('disconnect')
    const n = p.events.length
    await lab.swanctl(['--initiate', '--child', 'inner', '--ike', 'ours', '--timeout', '10'])
    await p.waitEvent((e) => e.ev === 'childUp', 10_000, n)
    log = await lab.charonLog()
    assert.match(log, /sending packet: from 198\.51\.100\.20\[500\] to 198\.51\.100\.10\[500\]/)
    assert.match(log, /sending packet: from 198\.51\.100\.20\[4500\] to 198\.51\.100\.10\[4500\]/)
    await pingOk(p)
    assert.equal(await p.call('dpd'), true)
  })

  test('Child SA rekeys started by both sides at the same moment settle on one working pair', async (t) => {
    const p = await setup({ auth: 'psk', ike: 'aes128gcm16-prfsha256-x25519', esp: 'aes128gcm16-x25519' })
    t.after(() => teardown(p))
    await p.call('connect')
    // The two CREATE_CHILD_SA requests must be in flight at once (RFC 7296 2.8.1), whatever swanctl's start-up
    // time (20 ms to far more on a busy machine, where a fixed stagger made them cross in no round of 100):
    // charon's messages reach our engine CROSS_DELAY_MS late, and ours starts as soon as charon has sent its
    // request. (No netem here: the lab kernel has no sch_netem.)
    await p.call('delayIkeRx', { ms: CROSS_DELAY_MS })
    const charonRekeys = async (): Promise<number> => count(await lab.charonLog(), CHARON_REKEY_REQUEST)
    const collisions = async (): Promise<number> => count(await lab.charonLog(), CHARON_REKEY_COLLISION)
    const collisionsBefore = await collisions()
    for (let i = 0; i < 4; i++) {
      const before = await charonRekeys()
      const theirs = lab.swanctl(['--rekey', '--child', 'inner'])
      const deadline = Date.now() + 5000
      while ((await charonRekeys()) === before) {
        assert.ok(Date.now() < deadline, `round ${i}: charon sent no rekey request`)
        await sleep(2)
      }
      await Promise.all([p.call('rekeyChild'), theirs])
      await sleep(1500)
      const ours = (await p.call<{ sas: { children: { spiOut: number }[] }[] }>('list')).sas[0]!.children
      const sas = await charonSas()
      const installed = sas.match(/INSTALLED/g) ?? []
      assert.equal(ours.length, 1, `round ${i}: ours has ${ours.length} Child SAs`)
      assert.equal(installed.length, 1, `round ${i}: charon has\n${sas}`)
      assert.equal(childState(sas, ours[0]!.spiOut), 'INSTALLED')
      await pingOk(p)
    }
    // Each round was a collision, as charon saw it (child_rekey.c handle_collision).
    assert.equal((await collisions()) - collisionsBefore, 4)
  })

  test('Delete both ways: ours deletes, then charon deletes', async (t) => {
    const p = await setup({ auth: 'psk', ike: 'aes128gcm16-prfsha256-x25519', esp: 'aes128gcm16' })
    t.after(() => teardown(p))
    await p.call('connect')
    await p.call('disconnect')
    assert.doesNotMatch(await charonSas(), /ESTABLISHED/)
    await p.call('connect')
    const n = p.events.length
    await lab.swanctl(['--terminate', '--ike', 'ours', '--timeout', '5'])
    await p.waitEvent((e) => e.ev === 'ikeDown', 5000, n)
    assert.equal((await p.call<{ sas: unknown[] }>('list')).sas.length, 0)
  })
})
