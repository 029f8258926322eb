// The PostgreSQL store (src/server/pg/) against a throwaway PostgreSQL 15: schema creation by nodes starting
// together, a newer schema or another zone refused with a clear message, the change feed not skipping a transaction
// that commits after a later-numbered one, and `autotunnel account ... --store postgres://...`.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import pg from 'pg'
import { RRType } from '../../src/dns/wire/rr-table.js'
import { FakeClock } from '../../src/io/clock.fake.js'
import { SystemClock } from '../../src/io/clock.js'
import { pgAddAccount } from '../../src/server/pg/accounts.js'
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/server/pg/schema.js'
import { ACCOUNT_LOCK } from '../../src/server/pg/sql.js'
import { PgStore } from '../../src/server/pg/store.js'
import { txtZoneRR } from '../../src/server/test-helpers.js'
import { PgCluster } from './pg-cluster.js'
import { BIN, run } from './server-harness.js'

const ZONE = 'members.example.'
let cluster: PgCluster

before(async () => {
  cluster = await PgCluster.start()
})
after(() => cluster?.destroy())

/** A fresh database in the cluster, so each test starts from an empty schema. */
async function freshDb(): Promise<string> {
  const name = `t${Math.random().toString(36).slice(2, 10)}`
  await cluster.query(`CREATE DATABASE ${name}`)
  return cluster.url.replace(/\/postgres$/, `/${name}`)
}

async function waitUntilAsync(ms: number, what: string, fn: () => Promise<boolean>): Promise<void> {
  const t0 = performance.now()
  while (!(await fn())) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function waitUntil(ms: number, what: string, fn: () => boolean): Promise<void> {
  const t0 = performance.now()
  while (!fn()) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

test('nodes starting together on an empty database create the schema once', async (t) => {
  const url = await freshDb()
  const stores = await Promise.all([1, 2, 3].map(() => PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE })))
  t.after(() => Promise.all(stores.map((s) => s.close())))
  const c = new pg.Client(url)
  await c.connect()
  t.after(() => c.end())
  const m = await c.query('SELECT version FROM autotunnel.schema_migrations')
  assert.deepEqual(
    m.rows.map((r) => r.version),
    MIGRATIONS.map((x) => x.version),
  )
  const n = await c.query('SELECT count(*)::int AS n FROM autotunnel.node')
  assert.equal(n.rows[0].n, 3, 'three heartbeats')
})

test('a database of schema version 1 (before the shared SSO state) is migrated, its accounts and records kept', async () => {
  const url = await freshDb()
  const c = new pg.Client(url)
  await c.connect()
  try {
    await c.query('CREATE SCHEMA autotunnel')
    await c.query(`CREATE TABLE autotunnel.schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT clock_timestamp())`)
    const v1 = MIGRATIONS.find((x) => x.version === 1)!
    await c.query(v1.sql)
    await c.query('INSERT INTO autotunnel.schema_migrations (version, name) VALUES (1, $1)', [v1.name])
    await c.query("INSERT INTO autotunnel.meta (key, value) VALUES ('zone', $1)", [ZONE])
    await c.query(
      `INSERT INTO autotunnel.account (username, key_name, algorithm, secret, derived, created_ms, changed_ms)
       VALUES ('alice', $1, 'hmac-sha256', $2, false, 0, 0)`,
      [`alice.${ZONE}`, Buffer.alloc(32, 7)],
    )
    const s = await PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE })
    try {
      assert.deepEqual(
        s.accounts().map((a) => a.user),
        ['alice'],
      )
      const sso = s.ssoState()
      await sso.setRevoked('alice', 'laptop', true)
      assert.ok(s.revokedHosts.of('alice').has('laptop'), 'the new tables work')
      const ca = await sso.ca('alice', `alice.${ZONE}`)
      assert.match(ca.certPem, /BEGIN CERTIFICATE/)
    } finally {
      await s.close()
    }
    const m = await c.query('SELECT version FROM autotunnel.schema_migrations ORDER BY version')
    assert.deepEqual(
      m.rows.map((r) => r.version),
      MIGRATIONS.map((x) => x.version),
    )
  } finally {
    await c.end()
  }
})

test('a database migrated by a newer autotunnel, or holding another zone, is refused with a clear message', async () => {
  const url = await freshDb()
  await (await PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE })).close()
  await assert.rejects(
    PgStore.open({ clock: new SystemClock() }, { url, zone: 'other.example.' }),
    /holds zone members\.example\., not other\.example\./,
  )
  const c = new pg.Client(url)
  await c.connect()
  try {
    await c.query("INSERT INTO autotunnel.schema_migrations (version, name) VALUES (99, 'from the future')")
  } finally {
    await c.end()
  }
  await assert.rejects(
    PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE }),
    new RegExp(`schema is version 99, newer than this autotunnel knows \\(${SCHEMA_VERSION}\\)`),
  )
  // The command line says the same and exits non-zero.
  const r = await run(BIN, ['server', '--zone', ZONE, '--store', url, '--listen', '127.0.0.1:0'], undefined, 20_000)
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /newer than this autotunnel knows/)
  assert.doesNotMatch(r.stderr, new RegExp(url.split('@')[0]!.split(':')[2]!), 'the password is not printed')
})

test('the feed does not skip a transaction that commits after a later-numbered one', async (t) => {
  const url = await freshDb()
  const store = await PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE })
  t.after(() => store.close())
  const early = new pg.Client(url)
  const late = new pg.Client(url)
  await Promise.all([early.connect(), late.connect()])
  t.after(() => Promise.all([early.end(), late.end()]))
  const put = (c: pg.Client, name: string, addr: number[]) =>
    c.query(
      `WITH p AS (INSERT INTO autotunnel.rr (name, type, class, ttl, rdata, text) VALUES ($1, 1, 1, 60, $2, $3))
       INSERT INTO autotunnel.change (node, kind, name, type) VALUES ('other', 'rr', $1, 1)`,
      [name, Buffer.from(addr), addr.join('.')],
    )
  const has = (name: string): boolean => store.index.rrset(name, 1) !== undefined
  // `early` takes its transaction id and its change id first, but commits last.
  await early.query('BEGIN')
  await put(early, `early.${ZONE}`, [192, 0, 2, 1])
  await late.query('BEGIN')
  await put(late, `late.${ZONE}`, [192, 0, 2, 2])
  await late.query('COMMIT')
  await late.query("SELECT pg_notify('autotunnel_change', '')")
  // Held back while `early` runs (its xid is the snapshot's xmin): several polls and the doorbell pass.
  await new Promise((r) => setTimeout(r, 700))
  assert.equal(has(`late.${ZONE}`), false, 'a change above the oldest running transaction waits')
  const changes: string[] = []
  store.onChange((cs) => {
    for (const c of cs) changes.push(c.name)
  })
  await early.query('COMMIT')
  await waitUntil(2000, 'both changes applied', () => has(`early.${ZONE}`) && has(`late.${ZONE}`))
  assert.deepEqual(changes.sort(), [`early.${ZONE}`, `late.${ZONE}`])
  assert.ok(store.serial >= 2, `serial ${store.serial} follows the feed position`)
})

test('autotunnel account ... --store postgres://: add, list, passwd, limit, remove', async () => {
  const url = await freshDb()
  const cli = (args: string[], input?: string) => run(BIN, ['account', ...args, '--store', url], input)
  let r = await cli(['list'])
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, /holds no zone yet/)
  r = await cli(['add', 'alice', '--zone', 'members.example', '--json'])
  assert.equal(r.code, 0, r.stderr)
  const a = JSON.parse(r.stdout) as { secret: string; keyName: string }
  assert.equal(a.keyName, 'alice.members.example.')
  r = await cli(['add', 'alice', '--zone', 'members.example'])
  assert.match(r.stderr, /account alice exists/)
  r = await cli(['passwd', 'alice', '--password-stdin', '--json'], 'correct horse\n')
  assert.equal(r.code, 0, r.stderr)
  assert.notEqual((JSON.parse(r.stdout) as { secret: string }).secret, a.secret)
  r = await cli(['limit', 'alice', '--max-records', '5'])
  assert.match(r.stdout, /at most 5 records/)
  r = await cli(['list', '--json'])
  assert.deepEqual(
    (JSON.parse(r.stdout) as { user: string; derived: boolean }[]).map((x) => [x.user, x.derived]),
    [['alice', true]],
  )
  r = await cli(['remove', 'alice'])
  assert.match(r.stdout, /removed account alice and 0 record/)
  r = await cli(['list', '--json'])
  assert.deepEqual(JSON.parse(r.stdout), [])
  const c = new pg.Client(url)
  await c.connect()
  try {
    const feed = await c.query("SELECT count(*)::int AS n FROM autotunnel.change WHERE kind = 'account'")
    assert.equal(feed.rows[0].n, 4, 'add, passwd, limit and remove each wrote an account change')
  } finally {
    await c.end()
  }
})

test("a write that deletes takes its accounts' locks before its statement: it sees a conditional write committed while it waited", async (t) => {
  const url = await freshDb()
  const store = await PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE })
  t.after(() => store.close())
  const name = `h.alice.${ZONE}`
  const txt = (s: string) => txtZoneRR(name, s)

  await store.write((tx) => tx.add(txt('old'), null))
  // A consistent write in flight on another node: the account's lock held exclusively, a record added, not committed.
  const c = new pg.Client(url)
  await c.connect()
  t.after(() => c.end())
  await c.query('BEGIN')
  await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [ACCOUNT_LOCK, `alice.${ZONE}`])
  await c.query(
    `INSERT INTO autotunnel.rr (name, type, class, ttl, rdata, text) VALUES ($1, 16, 1, 60, '\\x036e6577', '"new"')`,
    [name],
  )
  const deleting = store.write((tx) => tx.clear(name, RRType.TXT))
  await waitUntilAsync(10_000, 'the deleting write waits for the lock', async () => {
    const r = await c.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    return r.rows[0].n === 1
  })
  assert.equal(store.stats.lockedFirst, 1, 'it asked for the locks first')
  assert.equal(store.stats.lockWaits, 0, 'its statement was not sent before them')
  await c.query('COMMIT')
  await deleting
  const left = await c.query('SELECT text FROM autotunnel.rr WHERE name = $1', [name])
  assert.deepEqual(left.rows, [], 'the record the conditional write added is deleted too')
  // A write that only adds sends its statement at once (try-locks; the common path costs one round trip).
  await store.write((tx) => tx.add(txt('more'), null))
  assert.equal(store.stats.lockedFirst, 1)
})

test('a COMMIT whose outcome is unknown makes the node re-read the whole zone, also what no feed row names', async (t) => {
  const url = await freshDb()
  const store = await PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE })
  t.after(() => store.close())
  const name = `h.alice.${ZONE}`
  const c = new pg.Client(url)
  await c.connect()
  t.after(() => c.end())
  // A record written behind the feed's back (no change row): only a read of the whole zone can find it.
  await c.query(
    `INSERT INTO autotunnel.rr (name, type, class, ttl, rdata, text) VALUES ($1, 16, 1, 60, '\\x0668696464656e', '"hidden"')`,
    [name],
  )
  // The node's next write waits for the account's lock; its connection is then cut: the outcome is unknown to it.
  await c.query('BEGIN')
  await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [ACCOUNT_LOCK, `alice.${ZONE}`])
  const writing = store.write((tx) => tx.clear(name, RRType.A))
  await waitUntilAsync(10_000, 'the write waits for the lock', async () => {
    const r = await c.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    return r.rows[0].n === 1
  })
  await c.query(`SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND NOT l.granted`)
  await assert.rejects(writing)
  await c.query('ROLLBACK')
  assert.equal(store.stats.commitErrors, 1)
  assert.equal(store.index.rrset(name, RRType.TXT), undefined, 'not known before the re-read')
  await waitUntil(5000, 'the node re-read the zone', () => store.index.rrset(name, RRType.TXT) !== undefined)
  // And it takes writes again.
  await store.write((tx) => tx.add(txtZoneRR(name, 'after'), null))
  const rows = await c.query('SELECT text FROM autotunnel.rr WHERE name = $1 ORDER BY text', [name])
  assert.deepEqual(
    rows.rows.map((r) => r.text),
    ['"after"', '"hidden"'],
  )
})

test("a node that commits without pause still applies an account change from the feed (its commits' reads cannot)", async (t) => {
  const url = await freshDb()
  // The node's clock moves 1 ms per write: commits closer together than its 10 ms wait for a commit, and no poll
  // (250 ms) within the run, so the account can only come from the read of its own that such a page starts.
  const clock = new FakeClock(Date.now())
  const store = await PgStore.open({ clock }, { url, zone: ZONE })
  t.after(() => store.close())
  const cli = new pg.Pool({ connectionString: url, max: 1 })
  t.after(() => cli.end())
  let n = 0
  const write = async () => {
    await store.write((tx) => tx.add(txtZoneRR(`w${n++}.alice.${ZONE}`, 'x'), null))
    clock.advance(1)
  }
  for (let i = 0; i < 20; i++) await write()
  await pgAddAccount(cli, ZONE, {
    user: 'carol',
    algorithm: 'hmac-sha256',
    secret: Buffer.alloc(32, 3),
    derived: false,
    nowMs: 0,
  })
  const before = n
  while (!store.accounts().some((a) => a.user === 'carol') && n - before < 200) await write()
  assert.ok(
    store.accounts().some((a) => a.user === 'carol'),
    `the account is in force while the node keeps committing (${n - before} writes after it was added)`,
  )
  t.diagnostic(`account in force after ${n - before} writes`)
})

test('feed pruning deletes the run of rows older than the retention, by the feed index, and no newer row', async (t) => {
  const url = await freshDb()
  await (await PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE })).close()
  const c = new pg.Client(url)
  await c.connect()
  t.after(() => c.end())
  // In feed order: 200 rows two hours old, 5 rows of now, then 3 more old rows (a later transaction).
  const ins = (n: number, ago: string, kind: string) =>
    c.query(
      `INSERT INTO autotunnel.change (node, kind, name, at)
       SELECT 'x', $1, 'n' || g, clock_timestamp() - $2::interval FROM generate_series(1, $3) g`,
      [kind, ago, n],
    )
  await ins(200, '2 hours', 'old')
  await ins(5, '0 seconds', 'new')
  await ins(3, '3 hours', 'late-old')
  const count = async () =>
    Object.fromEntries(
      (await c.query('SELECT kind, count(*)::int AS n FROM autotunnel.change GROUP BY kind')).rows.map((r) => [
        r.kind,
        r.n,
      ]),
    ) as Record<string, number>
  // A node prunes at its first sweep (then once a minute).
  const store = await PgStore.open({ clock: new SystemClock() }, { url, zone: ZONE })
  t.after(() => store.close())
  const t0 = performance.now()
  let left: Record<string, number> = await count()
  while ((left.old ?? 0) > 0 && performance.now() - t0 < 10_000) {
    await new Promise((r) => setTimeout(r, 50))
    left = await count()
  }
  assert.equal(left.old ?? 0, 0, 'the old run is pruned')
  assert.equal(left.new, 5, 'rows inside the retention stay')
  assert.equal(left['late-old'], 3, 'old rows behind a newer one wait (the prune stops at the first newer row)')
  // With no row inside the retention, the whole feed is the run.
  await c.query(`UPDATE autotunnel.change SET at = clock_timestamp() - interval '2 hours'`)
  const { PRUNE_SQL } = await import('../../src/server/pg/sql.js')
  await c.query(PRUNE_SQL, [3600])
  assert.deepEqual(await count(), {})
})
