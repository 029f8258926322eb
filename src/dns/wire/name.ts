// Domain names (RFC 1035 3.1, 4.1.4; RFC 4343; RFC 4034 6.1).
//
// Names are presentation strings, fully qualified with a trailing dot ('alice.members.example.', root '.').
// Escapes follow RFC 1035 5.1: '\.' '\\' and '\DDD'. The decoder escapes . \ " ( ) ; @ $ as '\c' and bytes
// outside 0x21..0x7e as '\DDD' (as BIND does), so its output is stable for equal wire names.
// The encoder also accepts a name without the trailing dot and treats it as absolute; non-ASCII characters
// are encoded as UTF-8 bytes. Comparison is ASCII case-insensitive (RFC 4343). Compression matches names
// case-sensitively, so a decoded message keeps every name's case exactly as encoded.
import { MAX_POINTER, type Reader, reader, type Writer } from './buffer.js'
import { WireError } from './errors.js'

export const MAX_LABEL_LEN = 63
export const MAX_NAME_LEN = 255
const POINTER_BITS = 0xc0
const POINTER_MASK = 0x3fff
/** A name has at most 127 labels, so a legitimate name never needs more pointer hops; caps decode work. */
const MAX_POINTER_HOPS = 127
const DOT = 0x2e
const BACKSLASH = 0x5c
const ASCII_MAX = 0x7f
const UPPER_A = 0x41
const UPPER_Z = 0x5a
const CASE_BIT = 0x20

const PLAIN = 0
const ESCAPE_CHAR = 1
const ESCAPE_DDD = 2
/** Per byte: how the decoder writes it in presentation form. */
const ESCAPES = (() => {
  const t = new Uint8Array(256)
  for (let i = 0; i < 256; i++) t[i] = i <= 0x20 || i >= ASCII_MAX ? ESCAPE_DDD : PLAIN
  for (const c of '.\\"();@$') t[c.charCodeAt(0)] = ESCAPE_CHAR
  return t
})()

function labelText(buf: Buffer, s: number, e: number): string {
  let i = s
  while (i < e && ESCAPES[buf[i]!] === PLAIN) i++
  if (i === e) return buf.latin1Slice(s, e)
  let out = buf.latin1Slice(s, i)
  for (; i < e; i++) {
    const b = buf[i]!
    const k = ESCAPES[b]
    if (k === PLAIN) out += String.fromCharCode(b)
    else if (k === ESCAPE_CHAR) out += '\\' + String.fromCharCode(b)
    else out += '\\' + String(b).padStart(3, '0')
  }
  return out
}

declare global {
  interface Buffer {
    /** Node's undocumented fast path behind buf.toString('latin1', s, e), without the argument checks. */
    latin1Slice(start: number, end: number): string
  }
}

/** Presentation text of one name under construction: at most 255 wire octets, each escaped to at most 4 chars. */
const TEXT_SCRATCH = Buffer.allocUnsafe(MAX_NAME_LEN * 4)
const MAX_LABELS = 128
const LABEL_WIRE_OFFS = new Int32Array(MAX_LABELS)
const LABEL_TEXT_OFFS = new Int32Array(MAX_LABELS)
const DIGIT_0 = 0x30
const DECIMAL = 10
const HUNDRED = 100

/**
 * Reads the name at r.off (following compression pointers) and leaves r.off after its in-line part.
 * `end` bounds the in-line part (an RDATA end); pointers must point strictly before the start of the
 * label run that contains them, which rules out loops, and a name may follow at most 127 of them.
 * The text is assembled in a scratch buffer and sliced once; every label's suffix is cached in r.names so
 * later pointers to it cost a map lookup.
 */
export function readName(r: Reader, end: number): string {
  const buf = r.buf
  const text = TEXT_SCRATCH
  let pos = r.off
  let lim = end
  let segStart = pos
  let after = -1
  let hops = 0
  let tail = '.'
  let tailWire = 1
  let labels = 0
  let n = 0
  let wire = 1
  for (;;) {
    if (pos >= lim) throw new WireError('name', pos, 'name runs past the end')
    const len = buf[pos]!
    if (len === 0) {
      pos++
      break
    }
    if ((len & POINTER_BITS) === POINTER_BITS) {
      if (pos + 1 >= lim) throw new WireError('name', pos, 'truncated compression pointer')
      const target = r.start + (((len << 8) | buf[pos + 1]!) & POINTER_MASK)
      if (target >= segStart) throw new WireError('name', pos, 'compression pointer does not point backwards')
      if (after < 0) after = pos + 2
      if (++hops > MAX_POINTER_HOPS) throw new WireError('name', pos, 'too many compression pointers')
      const cached = r.names?.get(target)
      if (cached !== undefined) {
        tail = cached.s
        tailWire = cached.w
        wire += tailWire - 1
        if (wire > MAX_NAME_LEN) throw new WireError('name', pos, 'name longer than 255 octets')
        break
      }
      pos = target
      segStart = target
      lim = r.end
      continue
    }
    if ((len & POINTER_BITS) !== 0) throw new WireError('name', pos, 'unsupported label type')
    const e = pos + 1 + len
    if (e >= lim) throw new WireError('name', pos, 'label runs past the end')
    wire += len + 1
    if (wire > MAX_NAME_LEN) throw new WireError('name', pos, 'name longer than 255 octets')
    LABEL_WIRE_OFFS[labels] = pos
    LABEL_TEXT_OFFS[labels++] = n
    for (let i = pos + 1; i < e; i++) {
      const b = buf[i]!
      const k = ESCAPES[b]
      if (k === PLAIN) text[n++] = b
      else if (k === ESCAPE_CHAR) {
        text[n++] = BACKSLASH
        text[n++] = b
      } else {
        text[n++] = BACKSLASH
        text[n++] = DIGIT_0 + ((b / HUNDRED) | 0)
        text[n++] = DIGIT_0 + (((b / DECIMAL) | 0) % DECIMAL)
        text[n++] = DIGIT_0 + (b % DECIMAL)
      }
    }
    text[n++] = DOT
    pos = e
  }
  r.off = after >= 0 ? after : pos
  if (labels === 0) return tail
  const head = text.latin1Slice(0, n)
  const name = tail === '.' ? head : head + tail
  const cache = (r.names ??= new Map())
  let w = tailWire
  for (let i = labels - 1; i >= 0; i--) {
    const o = LABEL_WIRE_OFFS[i]!
    w += buf[o]! + 1
    if (o - r.start <= MAX_POINTER && !cache.has(o))
      cache.set(o, { s: i === 0 ? name : name.slice(LABEL_TEXT_OFFS[i]), w })
  }
  return name
}

/** Decodes the (possibly compressed) name at `off` of a whole message `buf`; returns it and the next offset. */
export function decodeName(buf: Buffer, off = 0): [string, number] {
  const r = reader(buf)
  r.off = off
  const name = readName(r, buf.length)
  return [name, r.off]
}

/** True when `name` needs the slow path: it has escapes or non-ASCII characters. */
function needsParse(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c === BACKSLASH || c > ASCII_MAX) return true
  }
  return false
}

/** Wire labels of a presentation name (escapes resolved, UTF-8 for non-ASCII), root excluded. */
export function nameToLabels(name: string): Buffer[] {
  const out: Buffer[] = []
  if (name === '.' || name === '') return out
  if (!needsParse(name)) {
    const n = name.charCodeAt(name.length - 1) === DOT ? name.length - 1 : name.length
    let i = 0
    while (i <= n) {
      let j = name.indexOf('.', i)
      if (j < 0 || j > n) j = n
      if (j === i) throw new WireError('name', i, `empty label in '${name}'`)
      out.push(Buffer.from(name.slice(i, j), 'latin1'))
      i = j + 1
    }
    return checkLabels(out, name)
  }
  let cur: number[] = []
  let i = 0
  while (i < name.length) {
    const c = name.charCodeAt(i)
    if (c === BACKSLASH) {
      const d = name.slice(i + 1, i + 4)
      if (/^[0-9]{3}$/.test(d)) {
        const v = Number(d)
        if (v > 255) throw new WireError('name', i, `bad escape in '${name}'`)
        cur.push(v)
        i += 4
      } else if (i + 1 < name.length) {
        const cp = name.codePointAt(i + 1)!
        for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) cur.push(b)
        i += cp > 0xffff ? 3 : 2
      } else throw new WireError('name', i, `dangling escape in '${name}'`)
    } else if (c === DOT) {
      if (cur.length === 0) throw new WireError('name', i, `empty label in '${name}'`)
      out.push(Buffer.from(cur))
      cur = []
      i++
    } else {
      const cp = name.codePointAt(i)!
      if (cp <= ASCII_MAX) cur.push(cp)
      else for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) cur.push(b)
      i += cp > 0xffff ? 2 : 1
    }
  }
  if (cur.length > 0) out.push(Buffer.from(cur))
  return checkLabels(out, name)
}

function checkLabels(labels: Buffer[], name: string): Buffer[] {
  let wire = 1
  for (const l of labels) {
    if (l.length > MAX_LABEL_LEN) throw new WireError('name', 0, `label longer than 63 octets in '${name}'`)
    wire += l.length + 1
  }
  if (wire > MAX_NAME_LEN) throw new WireError('name', 0, `name longer than 255 octets: '${name}'`)
  return labels
}

function lowerLabel(l: Buffer): Buffer {
  const o = Buffer.from(l)
  for (let i = 0; i < o.length; i++) {
    const b = o[i]!
    if (b >= UPPER_A && b <= UPPER_Z) o[i] = b | CASE_BIT
  }
  return o
}

/** Writes `name`; compresses it against earlier identical names when `compress` and the writer keeps a map. */
export function writeName(w: Writer, name: string, compress: boolean): void {
  const map = w.names
  if (name === '.' || name === '') {
    w.u8(0)
    return
  }
  if (needsParse(name)) {
    writeLabels(w, nameToLabels(name), compress)
    return
  }
  const last = name.length - 1
  const abs = name.charCodeAt(last) === DOT
  const n = abs ? last : name.length
  if (abs && last > 0 && name.charCodeAt(last - 1) === DOT)
    throw new WireError('name', w.off, `empty label in '${name}'`)
  const key = map === null || abs ? name : name + '.'
  const buf = w.buf
  let i = 0
  let wire = 1
  while (i < n) {
    let j = name.indexOf('.', i)
    if (j < 0 || j > n) j = n
    const len = j - i
    if (len === 0) throw new WireError('name', w.off, `empty label in '${name}'`)
    if (len > MAX_LABEL_LEN) throw new WireError('name', w.off, `label longer than 63 octets in '${name}'`)
    wire += len + 1
    if (wire > MAX_NAME_LEN) throw new WireError('name', w.off, `name longer than 255 octets: '${name}'`)
    if (map !== null) {
      const k = i === 0 ? key : key.slice(i)
      if (compress) {
        const p = map.get(k)
        if (p !== undefined) {
          w.u16(POINTER_BITS_16 | p)
          return
        }
      }
      const rel = w.off - w.start
      if (rel <= MAX_POINTER && !map.has(k)) map.set(k, rel)
    }
    w.need(len + 1)
    let o = w.off
    buf[o++] = len
    for (let c = i; c < j; c++) buf[o++] = name.charCodeAt(c)
    w.off = o
    i = j + 1
  }
  w.u8(0)
}

const POINTER_BITS_16 = 0xc000

function writeLabels(w: Writer, labels: Buffer[], compress: boolean): void {
  const map = w.names
  let keys: string[] | undefined
  if (map !== null) {
    keys = new Array<string>(labels.length)
    let k = '.'
    for (let i = labels.length - 1; i >= 0; i--) {
      const l = labels[i]!
      const t = labelText(l, 0, l.length)
      k = k === '.' ? t + '.' : t + '.' + k
      keys[i] = k
    }
  }
  for (let i = 0; i < labels.length; i++) {
    if (map !== null && keys !== undefined) {
      const k = keys[i]!
      if (compress) {
        const p = map.get(k)
        if (p !== undefined) {
          w.u16(POINTER_BITS_16 | p)
          return
        }
      }
      const rel = w.off - w.start
      if (rel <= MAX_POINTER && !map.has(k)) map.set(k, rel)
    }
    const l = labels[i]!
    w.u8(l.length)
    w.bytes(l)
  }
  w.u8(0)
}

/** Uncompressed wire form of `name`, as used in TSIG MAC input and canonical ordering. */
export function nameToWire(name: string, lower = false): Buffer {
  const labels = nameToLabels(name)
  let n = 1
  for (const l of labels) n += l.length + 1
  const out = Buffer.allocUnsafe(n)
  let o = 0
  for (const l of labels) {
    out[o++] = l.length
    out.set(lower ? lowerLabel(l) : l, o)
    o += l.length
  }
  out[o] = 0
  return out
}

/** Presentation form of wire labels (escaped, trailing dot). */
export function labelsToName(labels: readonly Buffer[]): string {
  if (labels.length === 0) return '.'
  let s = ''
  for (const l of labels) s += labelText(l, 0, l.length) + '.'
  return s
}

/** Presentation labels of `name` (escaped, root excluded): labels('a.b.') = ['a', 'b']. */
export function labels(name: string): string[] {
  return nameToLabels(name).map((l) => labelText(l, 0, l.length))
}

/** Canonical presentation: lower-case ASCII, canonical escapes, trailing dot (RFC 4034 6.2 applied to text). */
export function nameToLowerCanonical(name: string): string {
  if (!needsParse(name)) {
    let plain = true
    for (let i = 0; i < name.length && plain; i++)
      plain = ESCAPES[name.charCodeAt(i)] === PLAIN || name.charCodeAt(i) === DOT
    if (plain && !name.includes('..')) {
      const s = name.toLowerCase()
      return s === '' || s === '.' ? '.' : s.charCodeAt(s.length - 1) === DOT ? s : s + '.'
    }
  }
  return labelsToName(nameToLabels(name).map(lowerLabel))
}

/** Case-insensitive name equality (RFC 4343). */
export function nameEqual(a: string, b: string): boolean {
  return a === b || nameToLowerCanonical(a) === nameToLowerCanonical(b)
}

/** True when `child` equals `parent` or lies below it. */
export function isSubdomain(child: string, parent: string): boolean {
  const c = nameToLowerCanonical(child)
  const p = nameToLowerCanonical(parent)
  if (p === '.' || c === p) return true
  if (!c.endsWith('.' + p)) return false
  let bs = 0
  for (let i = c.length - p.length - 2; i >= 0 && c.charCodeAt(i) === BACKSLASH; i--) bs++
  return bs % 2 === 0
}

/** Canonical DNS name order (RFC 4034 6.1): compare lower-cased labels right to left, as octet strings. */
export function canonicalCompare(a: string, b: string): number {
  const la = nameToLabels(a)
  const lb = nameToLabels(b)
  for (let i = la.length - 1, j = lb.length - 1; i >= 0 || j >= 0; i--, j--) {
    if (i < 0) return -1
    if (j < 0) return 1
    const c = Buffer.compare(lowerLabel(la[i]!), lowerLabel(lb[j]!))
    if (c !== 0) return c
  }
  return 0
}

/** Parent of `name` ('a.b.' -> 'b.'); the root's parent is undefined. */
export function parentName(name: string): string | undefined {
  const ls = nameToLabels(name)
  if (ls.length === 0) return undefined
  return labelsToName(ls.slice(1))
}

/** Number of labels, root excluded. */
export function labelCount(name: string): number {
  return nameToLabels(name).length
}
