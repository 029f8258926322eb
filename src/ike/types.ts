// Shared IKE engine types: what the agent and the tunnel see (endpoints, peers, Child SA keys, events).

import type { KeyObject } from 'node:crypto'
import type { CipherName } from './proposals.js'

export interface Endpoint {
  readonly address: string
  readonly port: number
  /** Which local socket a message came in on / should leave from, when the transport has several. */
  readonly via?: 'ike' | 'encap'
}

/** The datagram edge IKE talks through: a plain UDP socket, or the tunnel's shared port. */
export interface IkeTransport {
  send(buf: Buffer, to: Endpoint): void
  onMessage(handler: (buf: Buffer, from: Endpoint) => void): void
  /**
   * Our address and port as bound, for messages to `to` (NAT_DETECTION_SOURCE_IP; 0.0.0.0 reads as
   * "maybe behind NAT").
   */
  local(to?: Endpoint): Endpoint
  /**
   * Set when the transport also listens on port 500 without the marker: an initiator that reached a peer's
   * port 500 moves to this port (the peer's NAT-T port) after IKE_SA_INIT (RFC 7296 2.23).
   */
  readonly natTPort?: number
}

/** What the agent knows about a peer host (from DNS): identity, inner address, keys. */
export interface PeerInfo {
  /** FQDN, the IKE identity (ID_FQDN). */
  readonly id: string
  /** The peer's ULA: its traffic selector (/128). */
  readonly ula: string
  /** Published signing keys (Ed25519 / ECDSA P-256); empty or absent when the host was revoked. */
  readonly publicKeys?: readonly KeyObject[]
  /** Pre-shared key (derivePsk), when PSK authentication is accepted for this peer. */
  readonly psk?: Buffer
  /** Outer endpoint to initiate to. */
  readonly endpoint?: Endpoint
}

/** Keys of one Child SA, as the ESP data plane installs them. Keys are cipher key || 4-octet salt. */
export interface ChildSaKeys {
  readonly peerId: string
  readonly peerUla: string
  readonly localUla: string
  readonly spiIn: number
  readonly spiOut: number
  readonly alg: CipherName
  readonly keyIn: Buffer
  readonly keyOut: Buffer
  readonly esn: boolean
  /** The peer's outer endpoint (ESP-in-UDP destination). */
  readonly remote: Endpoint
  /** spiIn of the Child SA this one replaces (rekey, make-before-break), if any. */
  readonly replaces?: number
  /** Install inbound only and keep sending on the old SA until childOutbound names this one. */
  readonly deferOutbound?: boolean
}

export interface IkeSaSummary {
  readonly peerId: string
  readonly spiI: string
  readonly spiR: string
  readonly initiator: boolean
  readonly remote: Endpoint
  readonly suite: string
  readonly establishedAt: number
  readonly natLocal: boolean
  readonly natRemote: boolean
  readonly mobike: boolean
  /** How the peer authenticated: a published key (RFC 7427 signature) or the PSK. */
  readonly peerAuth: 'signature' | 'psk' | 'none'
  readonly children: readonly { spiIn: number; spiOut: number; alg: CipherName; esn: boolean }[]
}

export interface IkeEvents {
  /** A Child SA is ready: install it (inbound at once; outbound replaces `replaces`). */
  childUp?(keys: ChildSaKeys): void
  /** A Child SA installed with deferOutbound now carries outbound traffic. */
  childOutbound?(keys: ChildSaKeys): void
  /** A Child SA is gone: remove it. */
  childDown?(info: { peerId: string; spiIn: number; spiOut: number; reason: string }): void
  ikeUp?(sa: IkeSaSummary): void
  ikeDown?(info: { peerId: string; reason: string }): void
  /** The peer's outer endpoint moved (MOBIKE, or NAT rebinding): update the SAs' destination. */
  peerEndpoint?(info: { peerId: string; remote: Endpoint; via: 'mobike' | 'nat' }): void
}

export type AuthMode = 'signature' | 'psk'
