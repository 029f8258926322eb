// Wiring between the IKE engine and the ESP data plane (src/tunnel/tunnel.ts): IKE runs on the tunnel's
// shared UDP port (non-ESP marker, RFC 3948 2.2), Child SA keys go into the tunnel's SA table
// (make-before-break), the first packet to a peer without an SA starts IKE (the tunnel queues it,
// bounded), sequence-space exhaustion starts a rekey, and endpoint moves flow both ways.
// The tunnel is described structurally here so the IKE core does not depend on it.

import type { Logger } from '../io/log.js'
import type { IkeEngine } from './engine.js'
import type { CipherName } from './proposals.js'
import type { ChildSaKeys, Endpoint, IkeEvents, IkeTransport } from './types.js'

/** The part of src/tunnel's Tunnel that IKE uses. */
export interface TunnelForIke {
  installChildSa(p: {
    peerUla: string
    spiIn: number
    spiOut: number
    alg: CipherName
    keyIn: Buffer
    keyOut: Buffer
    esn: boolean
    outbound?: boolean
  }): void
  installOutboundSa(p: { peerUla: string; spiOut: number; alg: CipherName; keyOut: Buffer; esn: boolean }): void
  removeSa(spi: number): boolean
  addPeer(p: { ula: string; endpoint?: Endpoint; keepalive?: boolean }): void
  setPeerEndpoint(ula: string, endpoint: Endpoint): void
  setKeepalive(ula: string, on: boolean): void
  onIke(handler: (msg: Buffer, from: { address: string; port: number }) => void): void
  sendIke(msg: Buffer, to: Endpoint): void
  onNoSa(hook: (peerUla: string, packet: Buffer) => void): void
  onSaExpiring(hook: (peerUla: string, spiOut: number) => void): void
  onEndpointChange(hook: (peerUla: string, endpoint: Endpoint, previous: Endpoint | undefined) => void): void
}

/** IKE over the tunnel's shared socket. `local` is our address:port as peers should see it (NAT-D). */
export function tunnelTransport(tunnel: TunnelForIke, local: () => Endpoint): IkeTransport {
  return {
    send: (buf, to) => tunnel.sendIke(buf, to),
    onMessage: (h) => tunnel.onIke((msg, from) => h(msg, { address: from.address, port: from.port })),
    local,
  }
}

/** Engine events that install and remove the negotiated SAs in the tunnel. Pass to `new IkeEngine(...)`. */
export function tunnelEvents(tunnel: TunnelForIke, ulaOf: (peerId: string) => string | undefined): IkeEvents {
  const install = (k: ChildSaKeys): void => {
    tunnel.addPeer({ ula: k.peerUla, endpoint: k.remote })
    tunnel.installChildSa({
      peerUla: k.peerUla,
      spiIn: k.spiIn,
      spiOut: k.spiOut,
      alg: k.alg,
      keyIn: k.keyIn,
      keyOut: k.keyOut,
      esn: k.esn,
      outbound: !k.deferOutbound,
    })
  }
  return {
    childUp: install,
    childOutbound: (k) =>
      tunnel.installOutboundSa({ peerUla: k.peerUla, spiOut: k.spiOut, alg: k.alg, keyOut: k.keyOut, esn: k.esn }),
    childDown: (d) => {
      tunnel.removeSa(d.spiIn)
      tunnel.removeSa(d.spiOut)
    },
    ikeUp: (s) => {
      const ula = ulaOf(s.peerId)
      if (ula && (s.natLocal || s.natRemote)) tunnel.setKeepalive(ula, s.natLocal)
    },
    peerEndpoint: (e) => {
      const ula = ulaOf(e.peerId)
      if (ula) tunnel.setPeerEndpoint(ula, e.remote)
    },
  }
}

/**
 * Hooks the tunnel's triggers to the engine: no SA → connect; sequence space nearly used → rekey;
 * authenticated ESP from a new address → the IKE SA follows (NAT rebinding without MOBIKE).
 * `peerIdOf` maps a peer ULA to its FQDN (the agent's watcher knows); unknown ULAs are ignored.
 */
export function attachTunnel(
  engine: IkeEngine,
  tunnel: TunnelForIke,
  peerIdOf: (peerUla: string) => string | undefined,
  log: Logger,
): void {
  tunnel.onNoSa((ula) => {
    const id = peerIdOf(ula)
    if (!id) return
    engine.connect(id).catch((e: Error) => log.info('ike.connect_failed', { peer: id, err: e.message }))
  })
  tunnel.onSaExpiring((ula) => {
    const id = peerIdOf(ula)
    if (id) engine.rekeyChild(id).catch((e: Error) => log.info('ike.rekey_failed', { peer: id, err: e.message }))
  })
  tunnel.onEndpointChange((ula, endpoint) => {
    const id = peerIdOf(ula)
    if (id) engine.setPeerEndpoint(id, endpoint)
  })
}
