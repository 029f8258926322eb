// A single-producer single-consumer packet ring in a SharedArrayBuffer, for handing packets between the
// tunnel's threads without postMessage (which costs microseconds and allocates per message). Fixed slots of
// `slotSize` octets; the producer drops (returns false) when the ring is full, like any bounded queue here.
// The consumer sleeps in Atomics.waitAsync, so it keeps serving its event loop; the producer notifies only
// when the consumer said it is going to sleep.

// Atomics.waitAsync is in Node 20 (V8) but typed only from lib es2024; the project targets es2023.
type WaitAsync = (
  a: Int32Array,
  index: number,
  value: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> }
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync

const HEAD = 0
const TAIL = 1
const SLEEPING = 2
const HDR_INTS = 4

export interface RingInit {
  readonly sab: SharedArrayBuffer
  readonly slots: number
  readonly slotSize: number
}

export function createRing(slots: number, slotSize: number): RingInit {
  const sab = new SharedArrayBuffer(HDR_INTS * 4 + slots * 4 + slots * slotSize)
  return { sab, slots, slotSize }
}

export class PacketRing {
  readonly #hdr: Int32Array
  readonly #lens: Int32Array
  readonly #data: Buffer
  readonly #slots: number
  readonly #slotSize: number
  /** Producer's next slot (published with publish()). */
  #tail: number
  /** Consumer's next slot. */
  #head: number

  constructor(init: RingInit) {
    this.#slots = init.slots
    this.#slotSize = init.slotSize
    this.#hdr = new Int32Array(init.sab, 0, HDR_INTS)
    this.#lens = new Int32Array(init.sab, HDR_INTS * 4, init.slots)
    this.#data = Buffer.from(init.sab, HDR_INTS * 4 + init.slots * 4, init.slots * init.slotSize)
    this.#tail = Atomics.load(this.#hdr, TAIL)
    this.#head = Atomics.load(this.#hdr, HEAD)
  }

  get slotSize(): number {
    return this.#slotSize
  }

  // --- producer ---

  /** Copies one packet in; false when the ring is full or the packet does not fit a slot. */
  push(buf: Buffer, off: number, len: number): boolean {
    if (len > this.#slotSize) return false
    const head = Atomics.load(this.#hdr, HEAD)
    if (((this.#tail - head) | 0) >= this.#slots) return false
    const slot = (this.#tail >>> 0) % this.#slots
    buf.copy(this.#data, slot * this.#slotSize, off, off + len)
    this.#lens[slot] = len
    this.#tail = (this.#tail + 1) | 0
    return true
  }

  /**
   * Makes pushed packets visible. A sleeping consumer is woken once per event-loop turn (setImmediate), not
   * per packet: the wake is a futex syscall and packets arrive in bursts of up to 32 per poll.
   */
  publish(): void {
    Atomics.store(this.#hdr, TAIL, this.#tail)
    if (!this.#wakeScheduled && Atomics.load(this.#hdr, SLEEPING) === 1) {
      this.#wakeScheduled = true
      setImmediate(this.#wake)
    }
  }
  #wakeScheduled = false
  readonly #wake = (): void => {
    this.#wakeScheduled = false
    Atomics.notify(this.#hdr, TAIL, 1)
  }

  /** Producer side: true when the consumer has finished with everything published so far. */
  drained(): boolean {
    return Atomics.load(this.#hdr, HEAD) === this.#tail
  }

  // --- consumer ---

  /**
   * Hands up to `max` packets to `fn` (a view valid during the call); returns how many. With `publish` false the
   * producer does not see them consumed until publishHead() (the TUN thread publishes only after the coalescer
   * has written what it kept, so the main thread's direct write cannot pass a packet still held there).
   */
  drain(fn: (buf: Buffer, off: number, len: number) => void, max: number, publish = true): number {
    const tail = Atomics.load(this.#hdr, TAIL)
    let n = 0
    while (this.#head !== tail && n < max) {
      const slot = (this.#head >>> 0) % this.#slots
      fn(this.#data, slot * this.#slotSize, this.#lens[slot]!)
      this.#head = (this.#head + 1) | 0
      n++
    }
    if (n > 0 && publish) Atomics.store(this.#hdr, HEAD, this.#head)
    return n
  }

  /** Makes every packet drained so far count as consumed (after drain with `publish` false). */
  publishHead(): void {
    Atomics.store(this.#hdr, HEAD, this.#head)
  }

  /** Resolves when packets are (or become) available; the event loop keeps running meanwhile. */
  async waitNonEmpty(): Promise<void> {
    Atomics.store(this.#hdr, SLEEPING, 1)
    const tail = Atomics.load(this.#hdr, TAIL)
    if (tail !== this.#head) {
      Atomics.store(this.#hdr, SLEEPING, 0)
      return
    }
    const r = waitAsync(this.#hdr, TAIL, tail)
    if (r.async) await r.value
    Atomics.store(this.#hdr, SLEEPING, 0)
  }

  /** Wakes a sleeping consumer without data (shutdown). */
  wake(): void {
    Atomics.notify(this.#hdr, TAIL, 1)
  }
}

/**
 * Runs `fn` for every packet the ring delivers, in batches of `batch`, until `stopped()` says so. Between
 * batches it yields to the event loop (setImmediate), so messages and timers keep being served.
 */
export async function consumeRing(
  ring: PacketRing,
  fn: (buf: Buffer, off: number, len: number) => void,
  afterBatch: () => void,
  stopped: () => boolean,
  batch = 256,
): Promise<void> {
  // A pending Atomics.waitAsync does not keep a worker's event loop alive; this timer does, until stopped.
  const keepAlive = setInterval(() => {}, 1 << 30)
  try {
    await consumeLoop(ring, fn, afterBatch, stopped, batch)
  } finally {
    clearInterval(keepAlive)
  }
}

async function consumeLoop(
  ring: PacketRing,
  fn: (buf: Buffer, off: number, len: number) => void,
  afterBatch: () => void,
  stopped: () => boolean,
  batch: number,
): Promise<void> {
  // Packets handled since the event loop last ran. Small drains that each find new packets never await a
  // macrotask (waitNonEmpty returns at once), so the loop yields after `batch` packets in all, not only after a
  // full drain: the thread's messages (endpoint and SA changes) and its setImmediate work (the send queue's
  // flush) wait for at most `batch` packets.
  let since = 0
  while (!stopped()) {
    const n = ring.drain(fn, batch - since, false)
    if (n > 0) {
      afterBatch()
      // Consumed only now: what afterBatch wrote (a coalescer's runs) is out before the producer sees an empty ring.
      ring.publishHead()
      since += n
      if (since >= batch) {
        since = 0
        await new Promise<void>((r) => setImmediate(r))
      }
      continue
    }
    await ring.waitNonEmpty()
  }
}
