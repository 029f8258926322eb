// A throwaway PostgreSQL 15 cluster for one test file or benchmark, through scripts/pg-cluster.sh (initdb in a
// temporary directory, the unprivileged postgres user, a private port, fsync on). Always destroy() it in an
// after/t.after hook: that stops the postmaster and removes the directory, also when the test failed.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import pg from 'pg'
import { REPO } from './server-harness.js'

const SCRIPT = join(REPO, 'scripts', 'pg-cluster.sh')

function sh(args: string[], timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(SCRIPT, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`pg-cluster.sh ${args.join(' ')}: ${stderr || err.message}`))
      else resolve(stdout)
    })
  })
}

export class PgCluster {
  readonly dir: string
  readonly url: string
  #destroyed = false

  private constructor(dir: string, url: string) {
    this.dir = dir
    this.url = url
  }

  /** Creates and starts a cluster; resolves when it accepts connections. */
  static async start(): Promise<PgCluster> {
    const [dir, url] = (await sh(['start'])).trim().split('\n')
    if (!dir || !url) throw new Error('pg-cluster.sh start printed no DIR and URL')
    return new PgCluster(dir, url)
  }

  /**
   * A streaming standby of this cluster (pg_basebackup -R, its own port and directory), synchronous: this cluster's
   * COMMITs return once the standby has flushed them. destroy() it too.
   */
  async standby(): Promise<PgCluster> {
    const [dir, url] = (await sh(['standby', this.dir])).trim().split('\n')
    if (!dir || !url) throw new Error('pg-cluster.sh standby printed no DIR and URL')
    return new PgCluster(dir, url)
  }

  /** `pg_ctl promote`: a standby becomes a primary; resolves when it takes writes. */
  async promote(): Promise<void> {
    await sh(['promote', this.dir])
  }

  /** SIGKILL of the postmaster and all its processes (the machine lost; clients see their connections reset). */
  async kill(): Promise<void> {
    await sh(['kill', this.dir])
  }

  /**
   * SIGSTOP of the postmaster and all its processes: a machine gone silent (its connections stay open and nothing
   * answers, no reset). destroy() still removes it.
   */
  async freeze(): Promise<void> {
    await sh(['freeze', this.dir])
  }

  /** The TCP port on 127.0.0.1. */
  get port(): number {
    return Number(new URL(this.url).port)
  }

  /** `pg_ctl restart -m MODE`: immediate is a crash (recovery from the WAL on start), fast a clean stop. */
  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await sh(['restart', this.dir, mode])
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await sh(['stop', this.dir, mode])
  }

  /** Starts a stopped cluster again (same port). */
  async startAgain(): Promise<void> {
    // pg_ctl restart of a stopped cluster starts it ("trying to start server anyway").
    await sh(['restart', this.dir, 'fast'])
  }

  /** Runs `text` once on a fresh connection (checks in tests). */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    const c = new pg.Client({ connectionString: this.url })
    await c.connect()
    try {
      return (await c.query<R>(text, values)).rows
    } finally {
      await c.end()
    }
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return
    this.#destroyed = true
    await sh(['destroy', this.dir])
  }
}
