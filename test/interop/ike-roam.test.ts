// Two of our agents (src/tunnel + TUN + src/ike, test/ike-lab/agent-main.ts) in two namespaces: the first ping -6 keys
// them with no manual keys (Ed25519 signatures), then one host roams to a new address while a ping flood runs;
// MOBIKE (RFC 4555) moves the peer at once. Reports the interruption; must stay under one second.

import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { IkeLab, LAB_ADDR, LAB_ID, LAB_ULA, labAvailable } from '../ike-lab/strongswan.js'

const run = promisify(execFile)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const PING_INTERVAL_MS = 10

function key(): { priv: string; pub: string } {
  const k = generateKeyPairSync('ed25519')
  return {
    priv: k.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    pub: k.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  }
}

describe('two of our agents: keying on first packet, roaming with MOBIKE', {
  skip: !labAvailable() && 'needs root',
}, () => {
  let lab: IkeLab
  before(async () => {
    lab = await IkeLab.create(`ikr${process.pid % 100000}`, { secondCharon: true })
  })
  after(async () => {
    await lab?.destroy()
  })

  test('first ping -6 keys both; a roam interrupts traffic for well under a second', async (t) => {
    const ka = key()
    const kd = key()
    const dev = `${lab.prefix}o0`
    await run('ip', ['netns', 'exec', lab.nsOurs, 'sysctl', '-qw', `net.ipv4.conf.${dev}.promote_secondaries=1`])
    await run('ip', ['-n', lab.nsOurs, 'addr', 'add', '198.51.100.11/24', 'dev', dev])
    // the ULA lives on our TUN device in d, not on lo (the lab puts it there for charon)
    await run('ip', ['-n', lab.ns('d'), 'addr', 'del', `${LAB_ULA.charon2}/128`, 'dev', 'lo'])
    const a = await lab.startOurs(
      {
        localId: LAB_ID.ours,
        localUla: LAB_ULA.ours,
        bind: '0.0.0.0',
        localAddress: LAB_ADDR.ours,
        port: 4500,
        auth: 'signature',
        hostKeyPem: ka.priv,
        peers: [
          { id: LAB_ID.charon2, ula: LAB_ULA.charon2, address: LAB_ADDR.charon2, port: 4500, publicKeyPem: kd.pub },
        ],
      },
      'o',
      true,
    )
    const d = await lab.startOurs(
      {
        localId: LAB_ID.charon2,
        localUla: LAB_ULA.charon2,
        bind: LAB_ADDR.charon2,
        port: 4500,
        auth: 'signature',
        hostKeyPem: kd.priv,
        peers: [{ id: LAB_ID.ours, ula: LAB_ULA.ours, address: LAB_ADDR.ours, port: 4500, publicKeyPem: ka.pub }],
      },
      'd',
      true,
    )
    t.after(async () => {
      await a.call('exit').catch(() => {})
      await d.call('exit').catch(() => {})
    })
    const first = await lab.ping6('o', LAB_ULA.charon2, 3, 3)
    assert.match(first, / 0% packet loss/)
    await d.waitEvent((e) => e.ev === 'childUp')

    // a ping flood from d to a while a roams: count the replies that never came
    const ping = spawn('ip', [
      'netns',
      'exec',
      lab.ns('d'),
      'ping',
      '-6',
      '-n',
      '-i',
      String(PING_INTERVAL_MS / 1000),
      '-w',
      '4',
      LAB_ULA.ours,
    ])
    let out = ''
    ping.stdout.on('data', (b: Buffer) => {
      out += b.toString()
    })
    const done = new Promise((r) => ping.on('exit', r))
    await sleep(1000)
    const n = d.events.length
    await run('ip', ['-n', lab.nsOurs, 'addr', 'del', `${LAB_ADDR.ours}/24`, 'dev', dev])
    const r = await a.call<{ ms: number; updates: number }>('mobike', { localAddress: '198.51.100.11' })
    const moved = await d.waitEvent((e) => e.ev === 'peerEndpoint', 5000, n)
    await done
    const sent = Number(/(\d+) packets transmitted/.exec(out)?.[1])
    const received = Number(/(\d+) received/.exec(out)?.[1])
    const lostMs = (sent - received) * PING_INTERVAL_MS
    t.diagnostic(`MOBIKE update ${r.ms.toFixed(1)} ms; ping ${received}/${sent}; interruption ~${lostMs} ms`)
    assert.deepEqual(moved.remote, { address: '198.51.100.11', port: 4500 })
    assert.equal(r.updates, 1)
    assert.ok(sent > 100)
    assert.ok(lostMs < 1000, `lost ${sent - received} pings (${lostMs} ms)`)
  })
})
