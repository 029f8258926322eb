// bench/ike: IKEv2 handshakes per second as responder, ours against strongSwan charon 5.9.8 in the same run,
// with the same load (our initiator, N fresh IKE SAs each with a Child SA, C in flight), PSK and Ed25519;
// and the time from the first packet to a new peer until its first reply (IKE_SA_INIT + IKE_AUTH + one ESP
// echo): ours -> ours, ours -> charon, charon -> charon (trap policy + ping -6). Namespaces as in
// test/interop/ike.test.ts. Env: BENCH_N (handshakes per run, default 300), BENCH_CONC (default 8),
// BENCH_ROUNDS (default 3), BENCH_LAT (latency samples, default 15). Needs root.
import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { derivePsk } from '../src/ike/auth.js'
import {
  CHARON_SIDE,
  CHARON2_SIDE,
  charonConnection,
  IkeLab,
  LAB_ADDR,
  LAB_ID,
  LAB_ULA,
  type OurPeer,
} from '../test/ike-lab/strongswan.js'

const N = Number(process.env.BENCH_N ?? 300)
const CONC = Number(process.env.BENCH_CONC ?? 8)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const LAT = Number(process.env.BENCH_LAT ?? 15)
const PSK = derivePsk('bench account secret', 'bench').toString('hex')
const IKE = 'aes128gcm16-prfsha256-x25519'
const ESP = 'aes128gcm16'

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? Number.NaN
const f1 = (x: number): string => x.toFixed(1)

function ed25519(): { priv: string; pub: string } {
  const k = generateKeyPairSync('ed25519')
  return {
    priv: k.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    pub: k.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('bench/ike: needs root (network namespaces); skipped')
    return
  }
  const lab = await IkeLab.create(`ikb${process.pid % 10000}`, { secondCharon: true })
  const cleanup = (): void => {
    void lab.destroy().finally(() => process.exit(130))
  }
  process.once('SIGINT', cleanup)
  try {
    const keyOurs = ed25519()
    const keyCharon = ed25519()
    const keyD = ed25519()
    await lab.startCharon('c')
    const charonFor = async (auth: 'psk' | 'pubkey'): Promise<void> => {
      const files: Record<string, string> =
        auth === 'pubkey'
          ? { 'pubkey/ours.pem': keyOurs.pub, 'pubkey/charon.pem': keyCharon.pub, 'pkcs8/charon.pem': keyCharon.priv }
          : {}
      await lab.loadCharonConfig(
        charonConnection({
          name: 'ours',
          auth,
          ike: IKE,
          esp: ESP,
          pskHex: PSK,
          ...(auth === 'pubkey' ? { localPubkey: 'charon.pem', remotePubkey: 'ours.pem' } : {}),
        }),
        files,
      )
    }
    const ourPeers = [
      { id: LAB_ID.charon, ula: LAB_ULA.charon, address: LAB_ADDR.charon, port: 4500, publicKeyPem: keyCharon.pub },
      { id: LAB_ID.charon2, ula: LAB_ULA.charon2, address: LAB_ADDR.charon2, port: 4500, publicKeyPem: keyD.pub },
    ]
    const start = async (auth: 'psk' | 'signature'): Promise<{ load: OurPeer; resp: OurPeer }> => {
      const base = { psk: PSK, auth, groups: [31], ciphers: ['aes128gcm16'], childCiphers: ['aes128gcm16'] }
      const load = await lab.startOurs({
        ...base,
        localId: LAB_ID.ours,
        localUla: LAB_ULA.ours,
        bind: LAB_ADDR.ours,
        port: 4500,
        hostKeyPem: keyOurs.priv,
        peers: ourPeers,
      })
      const resp = await lab.startOurs(
        {
          ...base,
          localId: LAB_ID.charon2,
          localUla: LAB_ULA.charon2,
          bind: LAB_ADDR.charon2,
          port: 4500,
          hostKeyPem: keyD.priv,
          peers: [
            { id: LAB_ID.ours, ula: LAB_ULA.ours, address: LAB_ADDR.ours, port: 4500, publicKeyPem: keyOurs.pub },
          ],
        },
        'd',
      )
      return { load, resp }
    }

    console.log(
      `bench/ike: responder handshakes/s, load = our initiator, N=${N}, concurrency ${CONC}, ${ROUNDS} rounds`,
    )
    console.log(`  IKE ${IKE}, ESP ${ESP}; each handshake = IKE_SA_INIT + IKE_AUTH with a Child SA`)

    for (const auth of ['psk', 'signature'] as const) {
      await charonFor(auth === 'psk' ? 'psk' : 'pubkey')
      const { load, resp } = await start(auth)
      const r: { ours: number[]; charon: number[] } = { ours: [], charon: [] }
      await load.call('bench', { count: 20, concurrency: 2, peer: LAB_ID.charon }, 120_000)
      await load.call('bench', { count: 20, concurrency: 2, peer: LAB_ID.charon2 }, 120_000)
      for (let i = 0; i < ROUNDS; i++) {
        for (const [who, peer] of [
          ['charon', LAB_ID.charon],
          ['ours', LAB_ID.charon2],
        ] as const) {
          const v = await load.call<{ ok: number; failed: number; perSec: number }>(
            'bench',
            { count: N, concurrency: CONC, peer },
            600_000,
          )
          if (v.failed > 0) console.log(`  (${who} round ${i}: ${v.failed} failed)`)
          r[who].push(v.perSec)
        }
        await lab.swanctl(['--terminate', '--ike', 'ours', '--force', '--timeout', '1']).catch(() => '')
      }
      await load.call('exit').catch(() => {})
      await resp.call('exit').catch(() => {})
      const o = median(r.ours)
      const c = median(r.charon)
      console.log(
        `  ${auth.padEnd(9)} ours ${f1(o).padStart(7)} /s   strongSwan ${f1(c).padStart(7)} /s   ours/strongSwan ${(o / c).toFixed(2)}   (rounds ours ${r.ours.map(f1).join(', ')}; charon ${r.charon.map(f1).join(', ')})`,
      )
    }

    console.log(`bench/ike: first packet to a new peer -> first reply (ms, median of ${LAT}; PSK, ${IKE})`)
    await charonFor('psk')
    const { load, resp } = await start('psk')
    const oo: number[] = []
    const oc: number[] = []
    for (let i = 0; i < LAT; i++) {
      oo.push((await load.call<{ ms: number }>('firstReply', { peer: LAB_ID.charon2 })).ms)
      oc.push((await load.call<{ ms: number }>('firstReply', { peer: LAB_ID.charon })).ms)
    }
    await load.call('exit').catch(() => {})
    await resp.call('exit').catch(() => {})
    // charon -> charon: kernel-libipsec cannot trap-and-acquire (it drops the packet: "could not find an
    // outbound IPsec SA"), so the first packet is `swanctl --initiate` (minus swanctl's own start-up, measured
    // with --stats) followed by one ping -6 round trip (ping's own figure).
    await lab.startCharon('d')
    const cc: number[] = []
    await lab.loadCharonConfig(
      charonConnection({ name: 'cc', auth: 'psk', ike: IKE, esp: ESP, pskHex: PSK, remote: CHARON2_SIDE }),
    )
    await lab.loadCharonConfig(
      charonConnection({
        name: 'cc',
        auth: 'psk',
        ike: IKE,
        esp: ESP,
        pskHex: PSK,
        local: CHARON2_SIDE,
        remote: CHARON_SIDE,
      }),
      {},
      'd',
    )
    const base: number[] = []
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now()
      await lab.swanctl(['--stats'], 'd')
      base.push(performance.now() - t0)
    }
    const swanctlBase = median(base)
    for (let i = 0; i < LAT; i++) {
      const t0 = performance.now()
      await lab.swanctl(['--initiate', '--child', 'inner', '--ike', 'cc', '--timeout', '5'], 'd')
      const ike = performance.now() - t0 - swanctlBase
      const rtt = await pingRtt(lab.ns('d'), LAB_ULA.charon)
      cc.push(ike + rtt)
      await lab.swanctl(['--terminate', '--ike', 'cc', '--timeout', '3'], 'd').catch(() => '')
    }
    console.log(`  ours -> ours            ${f1(median(oo)).padStart(7)}  (min ${f1(Math.min(...oo))})`)
    console.log(`  ours -> strongSwan      ${f1(median(oc)).padStart(7)}  (min ${f1(Math.min(...oc))})`)
    console.log(
      `  strongSwan -> strongSwan ${f1(median(cc)).padStart(6)}  (min ${f1(Math.min(...cc))}; swanctl --initiate minus ${f1(swanctlBase)} ms start-up, + ping RTT)`,
    )
  } finally {
    await lab.destroy()
  }
}

/** One ping -6 round trip as ping reports it (ms). */
async function pingRtt(ns: string, to: string): Promise<number> {
  const out = await new Promise<string>((resolve) => {
    const p = spawn('ip', ['netns', 'exec', ns, 'ping', '-6', '-n', '-c', '1', '-W', '2', to])
    let s = ''
    p.stdout.on('data', (d: Buffer) => {
      s += d.toString()
    })
    p.on('exit', () => resolve(s))
  })
  const m = /time=([\d.]+) ms/.exec(out)
  if (!m) throw new Error(`no reply from ${to}`)
  return Number(m[1])
}

await main()
