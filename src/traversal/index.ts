// src/traversal: reaching a peer when no gateway maps a port for us. stun.ts is the STUN codec and client (RFC 8489)
// with the RFC 5780 NAT-behaviour probe; punch.ts decides each peer's path (direct, punched, relay) and sends the
// keepalive bursts that open both NATs at once; turn.ts, turn-request.ts and turn-wire.ts are the TURN client
// (RFC 8656), its requests under the long-term credentials, and its wire pieces; relay.ts (RelayManager) holds an
// allocation while our NAT is symmetric. stun-transactions.ts is the retransmission schedule both clients share.
// Everything here runs on the tunnel's shared UDP port; the agent (src/agent/datapath.ts) wires it in and publishes
// what it learns (docs/punch.md, docs/relay.md). This file is its public API: the agent imports only from here.

export { choosePath, type NatView, type PathDecision, Puncher, pathLabel } from './punch.js'
export { type RelayConfig, RelayManager } from './relay.js'
export {
  type NatProbe,
  parseStunServer,
  probeNat,
  STUN_DEFAULT_PORT,
  StunClient,
  type StunDemux,
} from './stun.js'
export { parseTurnServer, TURN_DEFAULT_PORT } from './turn-wire.js'
