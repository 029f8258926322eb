// One framed message to many stream connections, for the DNS Push fan-out (notify-service.ts): every session
// subscribed to a changed RRset gets the same Buffer (push-wire.ts PushFrames). Written through node, each socket
// costs a WriteWrap, a libuv request and stream bookkeeping besides the kernel's send; the fanout addon's sendAll
// (src/server/native/fanout.cc) sends the frame to a batch of sockets in one call, one send(2) each (and lets a
// helper thread take some of them when a core is free).
//
// Byte order on a connection is never broken: a socket is written directly only when nothing of it is queued in
// node or libuv (StreamConnection.directFd), whatever the kernel does not take (a partial send, EAGAIN when a
// watcher stopped reading, an error) goes to node's socket.write in the same synchronous run, so it is queued
// before anything written later, and a connection is in a batch at most once (a second frame for it flushes the
// batch first). A slow or dead watcher costs one failed send(2); node then holds its rest, as it would have.
//
// Batches of FAN_BATCH connections: the first watchers get the frame while the pass is still walking the
// subscriptions of the rest. Without the addon (not built, not Linux, AUTOTUNNEL_FANOUT_NATIVE=0) every
// connection is written by node, as before.

import { TCP_LENGTH_PREFIX } from '../dns/tcp-framing.js'
import { fanoutNative, type SendAll } from './fanout-native.js'

/** Connections per native call. */
export const FAN_BATCH = 256

/** What the fan-out writes to (a StreamConnection). */
export interface FanTarget {
  /** The socket's descriptor while octets may go to it directly (nothing queued in node or libuv), else -1. */
  directFd?(): number
  /** node's write of an already framed message (or its rest). */
  sendFramed?(frame: Buffer): boolean
  send(msg: Buffer): boolean
}

export class FanWriter<T extends FanTarget> {
  readonly #sendAll: SendAll | undefined
  readonly #onQueued: ((t: T) => void) | undefined
  readonly #fds = new Int32Array(FAN_BATCH)
  readonly #out = new Int32Array(FAN_BATCH)
  readonly #targets: T[] = []
  readonly #inBatch = new Set<T>()
  #frame: Buffer | undefined
  /** Whole frames the kernel took from the native send. */
  direct = 0
  /** Connections written (in whole or the rest) by node: no addon, something queued, partial send, EAGAIN. */
  viaNode = 0

  /**
   * `onQueued(t)`: called for each connection node was given octets for (it may hold them: `queued`).
   * `sendAll`: the addon's function (default: loaded when built); null writes every connection through node.
   */
  constructor(opts: { readonly onQueued?: (t: T) => void; readonly sendAll?: SendAll | null } = {}) {
    this.#onQueued = opts.onQueued
    this.#sendAll = opts.sendAll === undefined ? fanoutNative?.sendAll : (opts.sendAll ?? undefined)
  }

  get native(): boolean {
    return this.#sendAll !== undefined
  }

  /** Writes `frame` (framed, never changed afterwards) to `t`: now through node without the addon, else batched. */
  write(t: T, frame: Buffer): void {
    if (!this.#sendAll || !t.directFd || !t.sendFramed) {
      this.#nodeWrite(t, frame, 0)
      return
    }
    if (frame !== this.#frame || this.#inBatch.has(t)) this.flush()
    this.#frame = frame
    this.#targets.push(t)
    this.#inBatch.add(t)
    if (this.#targets.length === FAN_BATCH) this.flush()
  }

  /** Sends the batch; call at the end of a pass (and before any other write to a connection that may be in it). */
  flush(): void {
    const n = this.#targets.length
    const frame = this.#frame
    if (n === 0 || !frame || !this.#sendAll) return
    const fds = this.#fds
    const out = this.#out
    for (let i = 0; i < n; i++) fds[i] = this.#targets[i]!.directFd!()
    this.#sendAll(fds, n, frame, out)
    const targets = this.#targets.splice(0)
    this.#inBatch.clear()
    const len = frame.length
    for (let i = 0; i < n; i++) {
      const took = out[i]!
      if (took === len) {
        this.direct++
        continue
      }
      const t = targets[i]!
      this.#nodeWrite(t, frame, Math.max(took, 0))
    }
  }

  /** Octets `from` on of `frame` through node (from > 0 only for a batched connection, which has sendFramed). */
  #nodeWrite(t: T, frame: Buffer, from: number): void {
    this.viaNode++
    if (t.sendFramed) t.sendFramed(from > 0 ? frame.subarray(from) : frame)
    else t.send(frame.subarray(TCP_LENGTH_PREFIX))
    this.#onQueued?.(t)
  }
}
