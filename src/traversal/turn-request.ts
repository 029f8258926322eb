// TURN requests under the long-term credential mechanism (RFC 8489 section 9.2), for the TURN client (turn.ts):
// the first request goes without credentials; a 401 with REALM and NONCE gives the key MD5(username ":" realm ":"
// password), and the request is sent again once with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY; a 438 (stale
// nonce) brings a new NONCE, used once more. Each request is a STUN transaction (stun-transactions.ts) with a
// FINGERPRINT; a success response must carry MESSAGE-INTEGRITY under our key (section 9.2.5).
// Separate from turn.ts, which holds the allocation, permissions and channels: this is how any of their requests
// is authenticated and answered, and turn.ts only says what to ask.
import type { Clock } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import type { Random } from '../io/random.js'
import {
  checkIntegrity,
  encodeStun,
  STUN_HEADER_LEN,
  STUN_TXID_LEN,
  STUN_TXID_OFFSET,
  StunAttr,
  type StunMessage,
} from './stun.js'
import { StunTransactions } from './stun-transactions.js'
import {
  CLASS_MASK,
  ErrorCode,
  epKey,
  longTermKey,
  METHOD_MASK,
  methodName,
  StunClass,
  TurnError,
  type TurnServer,
} from './turn-wire.js'

export interface TurnAnswer {
  readonly msg: StunMessage
  readonly raw: Buffer
}

export interface TurnRequestDeps {
  readonly clock: Clock
  readonly random: Random
  readonly log: Logger
  /** Sends to the TURN server on the agent's shared socket. */
  readonly send: (buf: Buffer, port: number, address: string) => void
  /** True once the client is closed: no new transaction, and one that ends unanswered says so. */
  readonly closed: () => boolean
  /** The client's counters: refused requests (errors) and answers failing the integrity check (malformed). */
  readonly counts: { errors: number; malformed: number }
}

export class TurnRequests {
  readonly #d: TurnRequestDeps
  readonly #server: TurnServer
  readonly #tx: StunTransactions<TurnAnswer>
  #realm: string | undefined
  #nonce: string | undefined
  #key: Buffer | undefined

  constructor(deps: TurnRequestDeps, server: TurnServer, opts: { readonly rtoMs: number; readonly giveUpMs: number }) {
    this.#d = deps
    this.#server = server
    this.#tx = new StunTransactions(deps.clock, opts)
  }

  /** Requests started and retransmissions sent. */
  get requests(): number {
    return this.#tx.requests
  }
  get retransmits(): number {
    return this.#tx.retransmits
  }

  /** One request with the long-term credentials; 401 once (learning REALM/NONCE) and 438 once are retried. */
  async request(method: number, attrs: readonly { type: number; value: Buffer }[]): Promise<TurnAnswer> {
    let authRetry = false
    let staleRetry = false
    for (;;) {
      const withAuth =
        this.#key && this.#nonce !== undefined && this.#realm !== undefined
          ? [
              ...attrs,
              { type: StunAttr.USERNAME, value: Buffer.from(this.#server.username, 'utf8') },
              { type: StunAttr.REALM, value: Buffer.from(this.#realm, 'utf8') },
              { type: StunAttr.NONCE, value: Buffer.from(this.#nonce, 'utf8') },
            ]
          : attrs
      const r = await this.#transact(method | StunClass.REQUEST, withAuth, this.#key)
      const cls = r.msg.type & CLASS_MASK
      if ((r.msg.type & METHOD_MASK) !== method) throw new TurnError(`response of another method`, 0)
      if (cls === StunClass.SUCCESS) return r
      const code = r.msg.errorCode ?? 0
      const realm = textAttr(r.msg, StunAttr.REALM)
      const nonce = textAttr(r.msg, StunAttr.NONCE)
      if (code === ErrorCode.UNAUTHORIZED && !authRetry && realm !== undefined && nonce !== undefined) {
        authRetry = true
        this.#realm = realm
        this.#nonce = nonce
        this.#key = longTermKey(this.#server.username, realm, this.#server.password)
        continue
      }
      if (code === ErrorCode.STALE_NONCE && !staleRetry && nonce !== undefined) {
        staleRetry = true
        this.#nonce = nonce
        if (realm !== undefined) this.#realm = realm
        continue
      }
      this.#d.counts.errors++
      const reason =
        code === ErrorCode.UNAUTHORIZED
          ? `401 Unauthorized: the TURN server refused user ${JSON.stringify(this.#server.username)} (wrong password?)`
          : `error ${code}`
      throw new TurnError(`TURN ${methodName(method)} failed: ${reason}`, code)
    }
  }

  /**
   * A STUN message from the server that is not data (`b` its own copy, `m` decoded from it): the answer to one of
   * our transactions, or ignored.
   */
  answer(b: Buffer, m: StunMessage): void {
    const key = b.toString('hex', STUN_TXID_OFFSET, STUN_HEADER_LEN)
    if (!this.#tx.has(key)) return
    // A success response carries MESSAGE-INTEGRITY under our key (RFC 8489 9.2.5); a wrong one is not our answer.
    if (this.#key && (m.type & CLASS_MASK) === StunClass.SUCCESS && checkIntegrity(b, m, this.#key) === false) {
      this.#d.counts.malformed++
      return
    }
    this.#tx.settle(key, { msg: m, raw: b })
  }

  /** Ends every transaction (each resolves unanswered). */
  close(): void {
    this.#tx.close()
  }

  async #transact(
    type: number,
    attrs: readonly { type: number; value: Buffer }[],
    key: Buffer | undefined,
  ): Promise<TurnAnswer> {
    if (this.#d.closed()) throw new TurnError('client closed', 0)
    const txid = this.#d.random.bytes(STUN_TXID_LEN)
    const req = encodeStun(type, txid, attrs, { integrityKey: key, fingerprint: true })
    const r = await this.#tx.start(txid.toString('hex'), () => {
      try {
        this.#d.send(req, this.#server.port, this.#server.address)
      } catch (e) {
        this.#d.log.debug('turn.send_failed', { err: String(e) })
      }
    })
    if (r) return r
    if (this.#d.closed()) throw new TurnError('client closed', 0)
    const at = epKey(this.#server.address, this.#server.port)
    throw new TurnError(`TURN ${methodName(type & METHOD_MASK)}: no answer from ${at}`, 0)
  }
}

function textAttr(m: StunMessage, type: number): string | undefined {
  return m.attrs.find((a) => a.type === type)?.value.toString('utf8')
}
