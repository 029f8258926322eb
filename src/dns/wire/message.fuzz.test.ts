// Fuzz (STYLE 5): 100,000 random and mutated packets through tryDecode. Nothing may escape as an exception;
// every packet that decodes must re-encode and decode to the same message. Deterministic (seeded xorshift),
// so a failure names its iteration and can be replayed.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { decodeMessage, encodeMessage, type Message, tryDecode } from './message.js'

failOnLeakedResources()

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s
  }
}

/**
 * The seeds are the DNS fuzz target's (test/fuzz/seeds.ts writes them to the corpus: a query, a signed query, an
 * answer with several RR types and an SOA, an UPDATE with leases, signed and not, and an LLQ set-up), so the two
 * fuzzers start from the same messages and there is one list to extend.
 */
const SEED_DIR = fileURLToPath(new URL('../../../../test/fuzz/corpus/dns/', import.meta.url))
const seeds: Buffer[] = readdirSync(SEED_DIR)
  .filter((f) => f.startsWith('seed-'))
  .sort()
  .map((f) => readFileSync(join(SEED_DIR, f)))

function strip(m: Message): Message {
  const { tsigOffset: _t, ...rest } = m
  return rest
}

const ITERATIONS = 100_000

test('the DNS fuzz seeds are there', () => {
  assert.ok(seeds.length >= 5, `${seeds.length} seeds in ${SEED_DIR}`)
})

test(`${ITERATIONS} random and mutated packets decode without an uncaught exception`, () => {
  const rnd = xorshift(0x5eed)
  let decoded = 0
  let rejected = 0
  for (let i = 0; i < ITERATIONS; i++) {
    let buf: Buffer
    const kind = rnd() % 4
    if (kind === 0) {
      buf = Buffer.allocUnsafe(rnd() % 120)
      for (let j = 0; j < buf.length; j++) buf[j] = rnd() & 0xff
      if (buf.length >= 12) for (let o = 4; o < 12; o += 2) buf.writeUInt16BE(rnd() % 4, o)
    } else {
      buf = Buffer.from(seeds[rnd() % seeds.length]!)
      const flips = 1 + (rnd() % 4)
      for (let f = 0; f < flips; f++) {
        const at = rnd() % buf.length
        if (kind === 1) buf[at] = rnd() & 0xff
        else if (kind === 2) buf[at] = buf[at]! ^ (1 << (rnd() % 8))
        else buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + (rnd() % 4))])
      }
    }
    const r = tryDecode(buf)
    if (!r.ok) {
      rejected++
      continue
    }
    decoded++
    try {
      assert.deepEqual(strip(decodeMessage(encodeMessage(r.msg))), strip(r.msg))
    } catch (e) {
      assert.fail(`iteration ${i} (${buf.toString('hex')}): ${String(e)}`)
    }
  }
  assert.equal(decoded + rejected, ITERATIONS)
  assert.ok(decoded > 1000 && rejected > 1000, `decoded ${decoded}, rejected ${rejected}`)
})
