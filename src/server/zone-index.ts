// The zone held in memory: every query is answered from here, never from SQL. The store keeps it equal to the
// SQLite tables (store.ts). Keys are case-insensitive (RFC 4343): names are lower-case FQDNs with the trailing dot
// and RDATA is uncompressed canonical wire form (RFC 4034 section 6.2), so two records are the same record exactly
// when their canonical RDATA bytes are equal. Each record also keeps its owner and RDATA as they were written
// (RFC 1034 3.1, RFC 4343 4.1: case is preserved), which is what goes on the wire.
// A node exists while it owns an RRset or has a descendant that does (empty non-terminals, RFC 8020), which is what
// separates NODATA from NXDOMAIN.

/** One resource record of the zone, as stored. */
export interface ZoneRR {
  readonly name: string
  readonly type: number
  readonly class: number
  readonly ttl: number
  /** Uncompressed canonical RDATA: the record's identity. */
  readonly rdata: Buffer
  /** RDATA in presentation format as written (for people and the change feed). */
  readonly text: string
  /** The owner name as written, when its case differs from `name` (RFC 4343 4.1). */
  readonly owner?: string | undefined
  /** Uncompressed RDATA as written (embedded names in their original case), when it differs from `rdata`. */
  readonly wire?: Buffer | undefined
}

/** A record in the index, with its update lease; `expiresAtMs` null means permanent. */
export interface Rec {
  rr: ZoneRR
  expiresAtMs: number | null
}

export class RRset {
  readonly records = new Map<string, Rec>()
  /** Encoded answer cache owned by the query path; cleared on every change. */
  cache: unknown = undefined
  constructor(
    readonly name: string,
    readonly type: number,
  ) {}
  get ttl(): number {
    for (const r of this.records.values()) return r.rr.ttl
    return 0
  }
}

export class ZoneNode {
  readonly rrsets = new Map<number, RRset>()
  /** Number of descendant nodes that own RRsets. */
  below = 0
}

const DOT = 46
const BACKSLASH = 92

export function rdataKey(rdata: Buffer): string {
  return rdata.toString('latin1')
}

/** Parent of a FQDN ("a.b.c." -> "b.c."), or undefined for the root. */
export function parentName(name: string): string | undefined {
  if (name === '.') return undefined
  let i = 0
  // Labels may contain escaped dots ("a\.b.c."): skip backslash escapes.
  for (; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c === BACKSLASH) i++
    else if (c === DOT) break
  }
  const rest = name.slice(i + 1)
  return rest === '' ? '.' : rest
}

/** True when the character at `i` is escaped: preceded by an odd number of backslashes (RFC 1035 5.1). */
function escapedAt(name: string, i: number): boolean {
  let n = 0
  for (let j = i - 1; j >= 0 && name.charCodeAt(j) === BACKSLASH; j--) n++
  return (n & 1) === 1
}

/**
 * True when `name` equals `ancestor` or lies below it (both canonical lower-case FQDNs, nameToLowerCanonical).
 * Compares wire-format labels: the boundary must be a real dot, not an escaped one, so `x\.bob.zone.` (one label
 * "x.bob" under zone.) is not below `bob.zone.` (issue 16 finding 8).
 */
export function isAtOrBelow(name: string, ancestor: string): boolean {
  if (ancestor === '.') return true
  if (name === ancestor) return true
  if (!name.endsWith(ancestor)) return false
  const dot = name.length - ancestor.length - 1
  return name.charCodeAt(dot) === DOT && !escapedAt(name, dot)
}

/**
 * The label (presentation form, escapes kept) directly below `ancestor` on the way to `name`, or undefined when
 * `name` is not strictly below it: labelBelow('a.b.z.', 'z.') = 'b'.
 */
export function labelBelow(name: string, ancestor: string): string | undefined {
  if (name === ancestor || !isAtOrBelow(name, ancestor)) return undefined
  const end = ancestor === '.' ? name.length - 1 : name.length - ancestor.length - 1
  for (let i = end - 1; i >= 0; i--)
    if (name.charCodeAt(i) === DOT && !escapedAt(name, i)) return name.slice(i + 1, end)
  return name.slice(0, end)
}

export class ZoneIndex {
  readonly nodes = new Map<string, ZoneNode>()
  #records = 0
  /** Records per label directly below the origin (an account's user name): the per-account quota. */
  readonly #perLabel = new Map<string, number>()
  constructor(readonly origin: string) {}

  get recordCount(): number {
    return this.#records
  }

  /** Records at or below `label`.ORIGIN (a user's domain). */
  recordsUnder(label: string): number {
    return this.#perLabel.get(label) ?? 0
  }

  #countLabel(name: string, delta: 1 | -1): void {
    const label = labelBelow(name, this.origin)
    if (label === undefined) return
    const n = (this.#perLabel.get(label) ?? 0) + delta
    if (n <= 0) this.#perLabel.delete(label)
    else this.#perLabel.set(label, n)
  }

  node(name: string): ZoneNode | undefined {
    return this.nodes.get(name)
  }

  rrset(name: string, type: number): RRset | undefined {
    return this.nodes.get(name)?.rrsets.get(type)
  }

  /** A name exists when it owns data or is an empty non-terminal above data. */
  nameExists(name: string): boolean {
    return this.nodes.has(name)
  }

  find(name: string, type: number, rdata: Buffer): Rec | undefined {
    return this.rrset(name, type)?.records.get(rdataKey(rdata))
  }

  /** Inserts a record that is not present yet (callers check with find()). */
  insert(rec: Rec): void {
    const { name, type } = rec.rr
    let node = this.nodes.get(name)
    if (!node) {
      node = new ZoneNode()
      this.nodes.set(name, node)
    }
    let set = node.rrsets.get(type)
    if (!set) {
      if (node.rrsets.size === 0) this.#adjustAncestors(name, 1)
      set = new RRset(name, type)
      node.rrsets.set(type, set)
    }
    set.records.set(rdataKey(rec.rr.rdata), rec)
    set.cache = undefined
    this.#records++
    this.#countLabel(name, 1)
  }

  /** Replaces the stored RR of an existing record (TTL change); the Rec object keeps its identity. */
  replaceRR(rec: Rec, rr: ZoneRR): void {
    rec.rr = rr
    const set = this.rrset(rr.name, rr.type)
    if (set) set.cache = undefined
  }

  delete(rec: Rec): boolean {
    const { name, type } = rec.rr
    const node = this.nodes.get(name)
    if (!node) return false
    const set = node.rrsets.get(type)
    if (!set?.records.delete(rdataKey(rec.rr.rdata))) return false
    set.cache = undefined
    this.#records--
    this.#countLabel(name, -1)
    if (set.records.size === 0) {
      node.rrsets.delete(type)
      if (node.rrsets.size === 0) {
        this.#adjustAncestors(name, -1)
        if (node.below === 0) this.nodes.delete(name)
      }
    }
    return true
  }

  *records(): IterableIterator<Rec> {
    for (const node of this.nodes.values()) for (const set of node.rrsets.values()) yield* set.records.values()
  }

  #adjustAncestors(name: string, delta: 1 | -1): void {
    let p = name === this.origin ? undefined : parentName(name)
    while (p !== undefined && isAtOrBelow(p, this.origin)) {
      let n = this.nodes.get(p)
      if (!n) {
        n = new ZoneNode()
        this.nodes.set(p, n)
      }
      n.below += delta
      if (n.below === 0 && n.rrsets.size === 0) this.nodes.delete(p)
      if (p === this.origin) break
      p = parentName(p)
    }
  }
}
