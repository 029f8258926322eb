import assert from 'node:assert/strict'
import { test } from 'node:test'
import { failOnLeakedResources } from '../../io/leak-check.js'
import { reader, Writer } from './buffer.js'
import { WireError } from './errors.js'
import {
  canonicalCompare,
  decodeName,
  isSubdomain,
  labels,
  nameEqual,
  nameToLowerCanonical,
  nameToWire,
  parentName,
  readName,
  writeName,
} from './name.js'

failOnLeakedResources()

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex')

test('nameToWire / decodeName round-trip presentation forms', () => {
  const cases: { name: string; wire: string; back?: string }[] = [
    { name: '.', wire: '00' },
    { name: 'example.', wire: '076578616d706c6500' },
    { name: 'example', wire: '076578616d706c6500', back: 'example.' },
    { name: 'a\\.b.c.', wire: '03612e620163 00' },
    { name: 'a\\\\b.', wire: '03615c62 00' },
    { name: '\\065b.', wire: '024162 00', back: 'Ab.' },
    { name: 'sp\\032ce.', wire: '05737020636500', back: 'sp\\032ce.' },
    { name: 'x\\@y.', wire: '03784079 00' },
    { name: 'caf\u00e9.', wire: '05636166c3a9 00', back: 'caf\\195\\169.' },
    { name: '\\000.', wire: '0100 00', back: '\\000.' },
  ]
  for (const c of cases) {
    const w = nameToWire(c.name)
    assert.equal(w.toString('hex'), hex(c.wire).toString('hex'), c.name)
    assert.deepEqual(decodeName(w, 0), [c.back ?? c.name, w.length], c.name)
  }
})

test('nameToWire rejects bad names', () => {
  const bad = ['a..b.', '.a.', `${'x'.repeat(64)}.`, `${'abcdefghi.'.repeat(26)}`, 'a\\', 'a\\300.']
  for (const n of bad) assert.throws(() => nameToWire(n), WireError, n)
})

test('decodeName follows pointers and rejects loops, forward pointers and over-long names', () => {
  // 12 bytes of padding then 'example.' at 12, then 'www' + pointer to 12.
  const buf = Buffer.concat([Buffer.alloc(12), hex('076578616d706c6500'), hex('03777777c00c')])
  assert.deepEqual(decodeName(buf, 21), ['www.example.', 27])
  const cases: { name: string; buf: Buffer; off: number }[] = [
    { name: 'self loop', buf: hex('c000'), off: 0 },
    { name: 'forward pointer', buf: hex('c002 0161 00'), off: 0 },
    { name: 'two-step loop', buf: hex('0161c004 0162c000'), off: 4 },
    { name: 'label past end', buf: hex('0561'), off: 0 },
    { name: 'missing terminator', buf: hex('0161'), off: 0 },
    { name: 'extended label type', buf: hex('4161 00'), off: 0 },
    { name: 'truncated pointer', buf: hex('c0'), off: 0 },
    {
      name: 'over 255 octets via pointers',
      buf: Buffer.concat([
        hex(`3f${'61'.repeat(63)}00`),
        hex(`3f${'62'.repeat(63)}c000`),
        hex(`3f${'63'.repeat(63)}c041`),
        hex(`3f${'64'.repeat(63)}c083`),
      ]),
      off: 197,
    },
  ]
  for (const c of cases) assert.throws(() => decodeName(c.buf, c.off), WireError, c.name)
})

test('decodeName caps pointer chains (quadratic decode work)', () => {
  // A root at 0, then 200 pointers each pointing at the previous one.
  const chain = (n: number) => {
    const b = Buffer.alloc(1 + 2 * n)
    for (let i = 0; i < n; i++) b.writeUInt16BE(0xc000 | (i === 0 ? 0 : 1 + 2 * (i - 1)), 1 + 2 * i)
    return b
  }
  assert.deepEqual(decodeName(chain(127), 1 + 2 * 126), ['.', 1 + 2 * 127])
  assert.throws(
    () => decodeName(chain(200), 1 + 2 * 199),
    (e: unknown) => e instanceof WireError && /too many/.test(e.message),
  )
})

test('writeName compresses repeated suffixes and keeps case', () => {
  const w = new Writer(Buffer.alloc(100), 0, 100, true)
  writeName(w, 'a.example.', true)
  writeName(w, 'b.example.', true)
  writeName(w, 'a.example.', true)
  writeName(w, 'A.example', true)
  const out = w.buf.subarray(0, w.off)
  assert.equal(out.toString('hex'), '0161076578616d706c6500' + '0162c002' + 'c000' + '0141c002')
  const r = reader(out)
  const got = []
  while (r.off < out.length) got.push(readName(r, out.length))
  assert.deepEqual(got, ['a.example.', 'b.example.', 'a.example.', 'A.example.'])
})

test('comparison helpers', () => {
  assert.ok(nameEqual('Alice.Example.', 'alice.example'))
  assert.ok(nameEqual('\\065.b.', 'a.B.'))
  assert.ok(!nameEqual('a.b.', 'a.c.'))
  assert.equal(nameToLowerCanonical('A\\.B.Ex'), 'a\\.b.ex.')
  assert.ok(isSubdomain('x.Alice.members.example.', 'members.example.'))
  assert.ok(isSubdomain('members.example.', 'members.example'))
  assert.ok(isSubdomain('anything.', '.'))
  assert.ok(!isSubdomain('xmembers.example.', 'members.example.'))
  assert.ok(!isSubdomain('a\\.members.example.', 'members.example.'), 'escaped dot is not a label boundary')
  assert.ok(isSubdomain('a\\\\.members.example.', 'members.example.'))
  assert.deepEqual(labels('a\\.b.c.'), ['a\\.b', 'c'])
  assert.deepEqual(labels('.'), [])
  assert.equal(parentName('a.b.'), 'b.')
  assert.equal(parentName('b.'), '.')
  assert.equal(parentName('.'), undefined)
})

test('canonicalCompare orders as RFC 4034 6.1 example', () => {
  const ordered = [
    'example.',
    'a.example.',
    'yljkjljk.a.example.',
    'Z.a.example.',
    'zABC.a.EXAMPLE.',
    'z.example.',
    '\\001.z.example.',
    '*.z.example.',
    '\\200.z.example.',
  ]
  const shuffled = [...ordered].reverse()
  shuffled.sort(canonicalCompare)
  assert.deepEqual(shuffled, ordered)
})
