// Interop with the real data plane: our agent pieces (src/tunnel + a Linux TUN device + src/ike) against
// strongSwan charon with kernel-libipsec. The first ping -6 into our TUN device starts IKE (nothing manual);
// then an iperf3 TCP transfer runs while the Child SA and the IKE SA are rekeyed by each side in turn, and
// must finish without a reset. Recipes: ../shared/peers/RECIPES.md section 2.

import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { derivePsk } from '../../src/ike/auth.js'
import { charonConnection, IkeLab, LAB_ADDR, LAB_ID, LAB_ULA, labAvailable } from '../ike-lab/strongswan.js'

const run = promisify(execFile)
const PSK = derivePsk('interop account secret', 'ike-tunnel').toString('hex')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('our tunnel + IKE against strongSwan (libipsec)', { skip: !labAvailable() && 'needs root' }, () => {
  let lab: IkeLab
  const procs: ChildProcess[] = []
  before(async () => {
    lab = await IkeLab.create(`ikt${process.pid % 100000}`)
    await lab.startCharon()
  })
  after(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL')
    await lab?.destroy()
  })

  test('first ping -6 keys the tunnel; iperf3 TCP survives Child and IKE SA rekeys by each side', async () => {
    await lab.loadCharonConfig(
      charonConnection({
        name: 'ours',
        auth: 'psk',
        ike: 'aes128gcm16-prfsha256-x25519',
        esp: 'aes128gcm16-x25519',
        pskHex: PSK,
      }),
    )
    const agent = await lab.startOurs(
      {
        localId: LAB_ID.ours,
        localUla: LAB_ULA.ours,
        bind: LAB_ADDR.ours,
        port: 4500,
        auth: 'psk',
        psk: PSK,
        peers: [{ id: LAB_ID.charon, ula: LAB_ULA.charon, address: LAB_ADDR.charon, port: 4500 }],
      },
      'o',
      true,
    )
    const ping = await lab.ping6('o', LAB_ULA.charon, 3, 3)
    assert.match(ping, / 0% packet loss/)
    const first = await agent.waitEvent((e) => e.ev === 'childUp')
    assert.match(await lab.swanctl(['--list-sas']), /INSTALLED/)

    const server = spawn('ip', ['netns', 'exec', lab.nsCharon, 'iperf3', '-s', '-1', '-B', LAB_ULA.charon], {
      stdio: 'ignore',
    })
    procs.push(server)
    await sleep(500)
    const client = run(
      'ip',
      ['netns', 'exec', lab.nsOurs, 'iperf3', '-c', LAB_ULA.charon, '-B', LAB_ULA.ours, '-t', '7', '-J'],
      { maxBuffer: 16 << 20 },
    )
    await sleep(1000)
    await agent.call('rekeyChild')
    await sleep(1000)
    const n = agent.events.length
    await lab.swanctl(['--rekey', '--child', 'inner'])
    await agent.waitEvent((e) => e.ev === 'childUp', 5000, n)
    await sleep(1000)
    await agent.call('rekeyIke')
    await sleep(1000)
    const m = agent.events.length
    await lab.swanctl(['--rekey', '--ike', 'ours'])
    await agent.waitEvent((e) => e.ev === 'ikeUp', 5000, m)
    const r = JSON.parse((await client).stdout) as {
      end: { sum_received: { bytes: number; bits_per_second: number } }
      intervals: { sum: { bytes: number } }[]
    }
    assert.ok(r.end.sum_received.bytes > 1_000_000, `received ${r.end.sum_received.bytes} bytes`)
    // no one-second interval without progress: the transfer never stalled across the switches
    const stalled = r.intervals.filter((i) => i.sum.bytes === 0).length
    assert.equal(stalled, 0, `intervals ${r.intervals.map((i) => i.sum.bytes).join(',')}`)
    const list = await agent.call<{ sas: { children: unknown[] }[]; counters: { drops: Record<string, number> } }>(
      'list',
    )
    assert.equal(list.sas.length, 1)
    assert.equal(list.sas[0]!.children.length, 1)
    assert.equal(list.counters.drops.icv, 0)
    assert.equal(list.counters.drops.unknown_spi ?? 0, 0)
    const ping2 = await lab.ping6('o', LAB_ULA.charon, 2, 2)
    assert.match(ping2, / 0% packet loss/)
    assert.ok(first.spiIn)
    await agent.call('exit').catch(() => {})
  })
})
