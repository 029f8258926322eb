// scripts/pg-cluster.sh through PgCluster: a private PostgreSQL 15 that keeps committed rows across a crash
// restart (fsync on) and leaves nothing behind.
import assert from 'node:assert/strict'
import { existsSync, statSync } from 'node:fs'
import { test } from 'node:test'
import { PgCluster } from './pg-cluster.js'

test('a throwaway cluster: unprivileged, fsync on, survives an immediate restart, removed by destroy()', async (t) => {
  const pg = await PgCluster.start()
  t.after(() => pg.destroy())
  assert.match(pg.url, /^postgres:\/\/postgres:[0-9a-f]{32}@127\.0\.0\.1:\d+\/postgres$/)
  const [s] = await pg.query<{ fsync: string; user: string; version: string }>(
    "SELECT current_setting('fsync') AS fsync, current_setting('server_version_num') AS version, " +
      "(SELECT usename FROM pg_user WHERE usesysid = (SELECT datdba FROM pg_database WHERE datname = 'postgres')) AS user",
  )
  assert.equal(s?.fsync, 'on')
  assert.ok(Number(s?.version) >= 150000 && Number(s?.version) < 160000, `PostgreSQL 15, got ${s?.version}`)
  // The data directory belongs to the postgres user, not root.
  assert.notEqual(statSync(`${pg.dir}/data`).uid, 0)
  await pg.query('CREATE TABLE t (x int)')
  await pg.query('INSERT INTO t VALUES (42)')
  await pg.restart('immediate')
  assert.deepEqual(await pg.query('SELECT x FROM t'), [{ x: 42 }])
  await pg.destroy()
  assert.equal(existsSync(pg.dir), false)
})
