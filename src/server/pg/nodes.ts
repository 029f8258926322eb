// The live nodes of a cluster (docs/cluster.md, discovery): each node writes a heartbeat row in autotunnel.node
// (by the database's clock) with what it publishes about itself (its server name, addresses and ports), and reads
// the others' rows; the discovery SRV records list the nodes seen in the last LIVE_MS.
import type pg from 'pg'
import type { Logger } from '../../io/log.js'
import type { PeerNode } from '../config.js'
import { SCHEMA } from './schema.js'

/** A node whose heartbeat is older than this is no longer listed (it beats every sweep, about once a second). */
const LIVE_MS = 5000

export class NodeHeartbeat {
  readonly #pool: pg.Pool
  readonly #nodeId: string
  readonly #log: Logger
  readonly #listeners = new Set<() => void>()
  #info: Record<string, unknown>
  #peers: PeerNode[] = []
  #peersKey = ''

  constructor(deps: { pool: pg.Pool; log: Logger }, opts: { nodeId: string; info: Record<string, unknown> }) {
    this.#pool = deps.pool
    this.#log = deps.log
    this.#nodeId = opts.nodeId
    this.#info = opts.info
  }

  /** The other nodes whose heartbeat is recent, as they describe themselves. */
  get peers(): readonly PeerNode[] {
    return this.#peers
  }

  /** Called when the set of live peers changed. */
  onPeers(fn: () => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** Merges `info` into what this node publishes; the next beat carries it. */
  setInfo(info: Record<string, unknown>): void {
    this.#info = { ...this.#info, ...info }
  }

  /** Records this node as alive and reads which others are (by the database's clock). */
  async beat(): Promise<void> {
    await this.#pool.query(
      `INSERT INTO ${SCHEMA}.node (id, info) VALUES ($1, $2)
       ON CONFLICT (id) DO UPDATE SET seen = clock_timestamp(), info = excluded.info`,
      [this.#nodeId, JSON.stringify(this.#info)],
    )
    const rows = (
      await this.#pool.query<{ info: Record<string, unknown> }>(
        `SELECT info FROM ${SCHEMA}.node WHERE id <> $1 AND seen > clock_timestamp() - make_interval(secs => $2)
         ORDER BY id`,
        [this.#nodeId, LIVE_MS / 1000],
      )
    ).rows
    const peers: PeerNode[] = []
    for (const { info: i } of rows)
      if (
        typeof i.nsName === 'string' &&
        Array.isArray(i.nsAddrs) &&
        i.nsAddrs.every((a) => typeof a === 'string') &&
        typeof i.dnsPort === 'number'
      )
        peers.push({
          nsName: i.nsName,
          nsAddrs: i.nsAddrs as string[],
          dnsPort: i.dnsPort,
          tlsPort: typeof i.tlsPort === 'number' ? i.tlsPort : undefined,
        })
    const key = JSON.stringify(peers)
    if (key === this.#peersKey) return
    this.#peersKey = key
    this.#peers = peers
    this.#log.info('store.peers', { peers: peers.map((p) => `${p.nsName}:${p.dnsPort}`) })
    for (const fn of this.#listeners) fn()
  }

  /** Removes this node's row (a clean stop: withdrawn at once rather than after LIVE_MS). */
  async remove(): Promise<void> {
    await this.#pool.query(`DELETE FROM ${SCHEMA}.node WHERE id = $1`, [this.#nodeId])
  }
}
