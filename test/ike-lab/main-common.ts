// Test tooling shared by peer-main.ts and agent-main.ts: the config both take as JSON in argv[2], the JSON-lines
// output on stdout, the request loop on stdin, and the peer table the engine looks peers up in.
import { createPublicKey } from 'node:crypto'
import { createInterface } from 'node:readline'
import type { CipherName } from '../../src/ike/proposals.js'
import type { PeerInfo } from '../../src/ike/types.js'

export interface LabPeerConfig {
  id: string
  ula: string
  address: string
  port: number
  publicKeyPem?: string
}

export interface LabMainConfig {
  localId: string
  localUla: string
  bind: string
  /** Our address for NAT-D when `bind` is the wildcard. */
  localAddress?: string
  port: number
  auth: 'psk' | 'signature'
  hostKeyPem?: string
  /** Hex. */
  psk?: string
  peers: LabPeerConfig[]
  groups?: number[]
  childCiphers?: CipherName[]
  esn?: boolean[]
  debug?: boolean
}

/** The process's config: JSON in argv[2]. */
export function readLabConfig<T extends LabMainConfig>(): T {
  return JSON.parse(process.argv[2] ?? '{}') as T
}

/** One JSON line on stdout (events and answers to requests). */
export function out(o: unknown): void {
  process.stdout.write(`${JSON.stringify(o)}\n`)
}

/** The peers by IKE identity, as IkeEngine's lookupPeer wants them. */
export function peerTable(peers: readonly LabPeerConfig[]): Map<string, PeerInfo> {
  return new Map(
    peers.map((p) => [
      p.id,
      {
        id: p.id,
        ula: p.ula,
        endpoint: { address: p.address, port: p.port },
        publicKeys: p.publicKeyPem ? [createPublicKey(p.publicKeyPem)] : [],
      },
    ]),
  )
}

/** A request line on stdin: `n` numbers the answer, `peer` defaults to the first configured peer. */
export interface LabRequest {
  n: number
  op: string
  peer?: string
}

/** Answers each JSON request line on stdin with `{ n, ok, value }` or `{ n, ok: false, error }` on stdout. */
export function serveRequests<R extends LabRequest>(
  cfg: LabMainConfig,
  handle: (req: R, peer: string) => Promise<unknown>,
): void {
  createInterface({ input: process.stdin }).on('line', (line) => {
    const req = JSON.parse(line) as R
    handle(req, req.peer ?? cfg.peers[0]?.id ?? '').then(
      (value) => out({ n: req.n, ok: true, value }),
      (e: Error) => out({ n: req.n, ok: false, error: `${e.name}: ${e.message}` }),
    )
  })
}
