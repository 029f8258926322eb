// Manual keying, for tests and the lab only: runs the data plane with static SAs from a JSON file
// (`autotunnel tunnel run --config FILE.json`). Never the default path: SAs normally come from IKEv2 (src/ike/).
// The format is documented in docs/tunnel.md.

import { readFileSync } from 'node:fs'
import { SystemClock } from '../io/clock.js'
import { UdpSocket } from '../io/datagram.js'
import { jsonLogger, type Logger } from '../io/log.js'
import { SystemRandom } from '../io/random.js'
import { ESP_ALGS, type EspAlg, isEspAlg } from './esp.js'
import { parseIpv6 } from './sa-table.js'
import { LinuxTun, TUN_DEFAULT_MTU, TUN_DEFAULT_NAME } from './tun/linux-tun.js'
import { Tunnel } from './tunnel.js'

export interface ManualPeer {
  readonly ula: string
  readonly endpoint?: { address: string; port: number }
  readonly keepalive?: boolean
  readonly sa: {
    readonly alg: EspAlg
    readonly esn: boolean
    readonly spiIn: number
    readonly spiOut: number
    readonly keyIn: Buffer
    readonly keyOut: Buffer
  }
}

export interface ManualConfig {
  readonly localUla: string
  readonly tun: { readonly name: string; readonly mtu: number }
  readonly listen: { readonly address: string; readonly port: number }
  readonly peers: ManualPeer[]
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`)
  }
}

type Json = Record<string, unknown>

function obj(v: unknown, field: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(field, 'must be an object')
  return v as Json
}
function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '') throw new ConfigError(field, 'must be a non-empty string')
  return v
}
function port(v: unknown, field: string): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 65535) throw new ConfigError(field, 'must be a port')
  return v as number
}
function spi(v: unknown, field: string): number {
  const n = typeof v === 'string' ? Number(v) : v
  if (!Number.isInteger(n) || (n as number) < 0x100 || (n as number) > 0xffff_ffff)
    throw new ConfigError(field, 'must be an SPI above 255 (number or "0x..." string)')
  return n as number
}
function ula(v: unknown, field: string): string {
  try {
    return parseIpv6(str(v, field)).canonical
  } catch {
    throw new ConfigError(field, 'must be an IPv6 address')
  }
}
function key(v: unknown, field: string, alg: EspAlg): Buffer {
  const s = str(v, field)
  const want = ESP_ALGS[alg].keyLen + 4
  if (!/^[0-9a-fA-F]*$/.test(s) || s.length !== want * 2)
    throw new ConfigError(field, `must be ${want} octets in hex (key || 4-octet salt) for ${alg}`)
  return Buffer.from(s, 'hex')
}

/** Validates a parsed manual-keying document; throws ConfigError naming the bad field. */
export function parseManualConfig(doc: unknown): ManualConfig {
  const d = obj(doc, 'config')
  const tun = d.tun === undefined ? {} : obj(d.tun, 'tun')
  const listen = obj(d.listen, 'listen')
  if (!Array.isArray(d.peers)) throw new ConfigError('peers', 'must be an array')
  const peers = d.peers.map((pv, i): ManualPeer => {
    const p = obj(pv, `peers[${i}]`)
    const sa = obj(p.sa, `peers[${i}].sa`)
    const alg = sa.alg
    if (!isEspAlg(alg))
      throw new ConfigError(`peers[${i}].sa.alg`, `must be one of ${Object.keys(ESP_ALGS).join(', ')}`)
    const out: {
      ula: string
      endpoint?: { address: string; port: number }
      keepalive?: boolean
      sa: ManualPeer['sa']
    } = {
      ula: ula(p.ula, `peers[${i}].ula`),
      sa: {
        alg,
        esn: sa.esn === undefined ? true : sa.esn === true,
        spiIn: spi(sa.spiIn, `peers[${i}].sa.spiIn`),
        spiOut: spi(sa.spiOut, `peers[${i}].sa.spiOut`),
        keyIn: key(sa.keyIn, `peers[${i}].sa.keyIn`, alg),
        keyOut: key(sa.keyOut, `peers[${i}].sa.keyOut`, alg),
      },
    }
    if (p.endpoint !== undefined) {
      const e = obj(p.endpoint, `peers[${i}].endpoint`)
      out.endpoint = {
        address: str(e.address, `peers[${i}].endpoint.address`),
        port: port(e.port, `peers[${i}].endpoint.port`),
      }
    }
    if (p.keepalive !== undefined) out.keepalive = p.keepalive === true
    return out
  })
  const mtu = tun.mtu === undefined ? TUN_DEFAULT_MTU : tun.mtu
  if (!Number.isInteger(mtu) || (mtu as number) < 1280 || (mtu as number) > 9000)
    throw new ConfigError('tun.mtu', 'must be an integer in 1280..9000 (IPv6 needs 1280)')
  return {
    localUla: ula(d.localUla, 'localUla'),
    tun: { name: tun.name === undefined ? TUN_DEFAULT_NAME : str(tun.name, 'tun.name'), mtu: mtu as number },
    listen: {
      address: listen.address === undefined ? '0.0.0.0' : str(listen.address, 'listen.address'),
      port: port(listen.port, 'listen.port'),
    },
    peers,
  }
}

/**
 * Runs the data plane until SIGTERM/SIGINT: prints one JSON line `{"event":"ready",...}` when up, the counters
 * and peers as one JSON line on SIGUSR1, and a final `{"event":"stopped",...}` line on exit.
 */
export async function runManual(
  configPath: string,
  opts: { log?: Logger; out?: (line: string) => void } = {},
): Promise<void> {
  const cfg = parseManualConfig(JSON.parse(readFileSync(configPath, 'utf8')))
  const log = opts.log ?? jsonLogger({ name: 'tunnel' })
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`))
  log.warn('tunnel.manual_keying', { note: 'static keys from a file: for tests only, not the default path' })
  const tun = LinuxTun.open({ name: cfg.tun.name, mtu: cfg.tun.mtu, localUla: cfg.localUla })
  const socket = new UdpSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 })
  let bound: { address: string; port: number }
  try {
    bound = await socket.bind(cfg.listen.port, cfg.listen.address)
  } catch (e) {
    await tun.close()
    throw e
  }
  const tunnel = new Tunnel(
    { tun, socket, clock: new SystemClock(), log, random: new SystemRandom() },
    // The send path on its own thread unless AUTOTUNNEL_TX_THREAD=0 (see tx-thread.ts).
    { localUla: cfg.localUla, txThread: process.env.AUTOTUNNEL_TX_THREAD !== '0' },
  )
  for (const p of cfg.peers) {
    const peer: { ula: string; endpoint?: { address: string; port: number }; keepalive?: boolean } = { ula: p.ula }
    if (p.endpoint) peer.endpoint = p.endpoint
    if (p.keepalive !== undefined) peer.keepalive = p.keepalive
    tunnel.addPeer(peer)
    tunnel.installChildSa({ peerUla: p.ula, ...p.sa })
    tun.addRoute(p.ula)
  }
  tunnel.onEndpointChange((peerUla, endpoint, previous) =>
    log.info('tunnel.endpoint_changed', { peerUla, endpoint, previous }),
  )
  tunnel.start()
  await tunnel.ready()
  const snapshot = (event: string): string =>
    JSON.stringify({
      event,
      counters: tunnel.counters(),
      peers: tunnel.peers(),
      pool: tunnel.poolStats(),
      offload: tunnel.offloadStats(),
      recv: tunnel.recvBatchStats(),
    })
  out(
    JSON.stringify({
      event: 'ready',
      tun: tun.name,
      mtu: tun.mtu,
      listen: bound,
      localUla: tunnel.localUla,
      offload: tun.offload,
    }),
  )
  await new Promise<void>((resolve) => {
    const onUsr1 = (): void => out(snapshot('counters'))
    const stop = (): void => {
      process.off('SIGUSR1', onUsr1)
      process.off('SIGTERM', stop)
      process.off('SIGINT', stop)
      resolve()
    }
    process.on('SIGUSR1', onUsr1)
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
  })
  out(snapshot('stopped'))
  await tunnel.close()
}
