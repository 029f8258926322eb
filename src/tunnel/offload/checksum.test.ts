import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { naiveChecksum } from '../../../test/vectors/offload-fixtures.js'
import { checksumBackend, fold, sum16, sum16Js } from './checksum.js'

test('sum16: native (when built) and JS agree with a naive RFC 1071 sum, any range, odd lengths, any start sum', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 3000 }),
      fc.nat(),
      fc.nat(),
      fc.integer({ min: 0, max: 0x7fff_ffff }),
      (bytes, a, b, init) => {
        const buf = Buffer.from(bytes)
        const start = buf.length ? a % (buf.length + 1) : 0
        const end = start + (buf.length - start ? b % (buf.length - start + 1) : 0)
        const want = ~naiveChecksum([buf.subarray(start, end)]) & 0xffff
        const initFolded = fold(init)
        // fold(data sum + init) == fold(fold(data sum) + fold(init)), whatever the backend folds inside.
        const expect = fold(want + initFolded)
        assert.equal(fold(sum16Js(buf, start, end, init)), expect)
        assert.equal(fold(sum16(buf, start, end, init)), expect)
      },
    ),
    { numRuns: 3000 },
  )
})

test(`sum16 backend in this build: ${checksumBackend}`, () => {
  assert.ok(checksumBackend === 'native' || checksumBackend === 'js')
})
