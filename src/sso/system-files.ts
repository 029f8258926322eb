// The agent's edits of system files (docs/sso.md, "System integration"), undone byte for byte on `down`.
// Every file is written in place (never renamed over: in the lab /etc/krb5.conf and /etc/krb5.keytab are bind
// mounts from /etc/netns/NS/, and a rename onto a mount point fails). A journal in the state directory holds each
// file's bytes from before our first write (or that it did not exist) and the hash of what we wrote last, so a
// later start after a crash restores them too. A file someone else changed since our write is not overwritten:
// krb5.conf gets our marked block cut out, anything else is left as it is, with a warning.
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from '../io/log.js'

interface JournalEntry {
  /** base64 of the bytes before our first write; null: the file did not exist. */
  readonly original: string | null
  /** sha256 hex of what we wrote last. */
  written: string
  /** Directories we created for this file, deepest first (removed when empty). */
  readonly madeDirs: string[]
}

type Journal = Record<string, JournalEntry>

export const BLOCK_BEGIN = '# BEGIN autotunnel sso'
export const BLOCK_END = '# END autotunnel sso'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function readOrNull(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw e
  }
}

/** `text` with every BEGIN..END block of ours removed (whole lines). */
export function stripBlock(text: string): string {
  const re = new RegExp(`${BLOCK_BEGIN}[^\\n]*\\n[\\s\\S]*?${BLOCK_END}[^\\n]*\\n?`, 'g')
  return text.replace(re, '')
}

export class SystemFiles {
  readonly #journalFile: string
  readonly #log: Logger
  #journal: Journal | undefined

  constructor(deps: { log: Logger }, o: { journalFile: string }) {
    this.#journalFile = o.journalFile
    this.#log = deps.log
  }

  async #load(): Promise<Journal> {
    if (this.#journal) return this.#journal
    const raw = await readOrNull(this.#journalFile)
    this.#journal = raw ? (JSON.parse(raw.toString('utf8')) as Journal) : {}
    return this.#journal
  }

  async #save(): Promise<void> {
    const j = await this.#load()
    if (Object.keys(j).length === 0) await rm(this.#journalFile, { force: true })
    else await writeFile(this.#journalFile, JSON.stringify(j, null, 1), { mode: 0o600 })
  }

  /** The bytes `path` had before our first write (null: it did not exist). */
  async original(path: string): Promise<Buffer | null> {
    const e = (await this.#load())[path]
    if (e) return e.original === null ? null : Buffer.from(e.original, 'base64')
    return readOrNull(path)
  }

  /** Writes `content` to `path` (mode for a new file; `owner` uid:gid when given). */
  async write(path: string, content: Buffer | string, o: { mode?: number; owner?: { uid: number; gid: number } } = {}) {
    const j = await this.#load()
    const bytes = Buffer.isBuffer(content) ? content : Buffer.from(content)
    let entry = j[path]
    if (!entry) {
      const before = await readOrNull(path)
      const madeDirs: string[] = []
      if (before === null) {
        for (let d = dirname(path); !existsSync(d); d = dirname(d)) madeDirs.push(d)
        if (madeDirs.length) await mkdir(dirname(path), { recursive: true, mode: 0o755 })
        // 0755 whatever the umask: the SSO user must reach the files we put there.
        for (const d of madeDirs) await chmod(d, 0o755)
      }
      entry = { original: before === null ? null : before.toString('base64'), written: '', madeDirs }
      j[path] = entry
      // Journal first: a crash between here and the write leaves a restorable record, never a lost original.
      await this.#save()
    }
    await writeFile(path, bytes, { mode: o.mode ?? 0o644 })
    if (o.owner) await chown(path, o.owner.uid, o.owner.gid)
    if (o.mode !== undefined && entry.original === null) await chmod(path, o.mode)
    entry.written = sha(bytes)
    await this.#save()
  }

  /** Undoes every write (also those of an earlier run found in the journal). */
  async restoreAll(): Promise<void> {
    const j = await this.#load()
    // Newest first: files in a directory we made go before the file whose write made it (and removes it).
    for (const [path, e] of Object.entries(j).reverse()) {
      try {
        await this.#restore(path, e)
      } catch (err) {
        this.#log.warn('sso.restore_failed', { path, err: String(err) })
      }
      delete j[path]
    }
    await this.#save()
  }

  async #restore(path: string, e: JournalEntry): Promise<void> {
    const now = await readOrNull(path)
    const original = e.original === null ? null : Buffer.from(e.original, 'base64')
    if (now !== null && sha(now) !== e.written) {
      // Changed by someone else since our write: cut our block out if there is one, else leave it.
      const text = now.toString('utf8')
      if (text.includes(BLOCK_BEGIN)) {
        await writeFile(path, stripBlock(text))
        this.#log.warn('sso.restore_edited', { path, did: 'removed our block, kept the other changes' })
      } else this.#log.warn('sso.restore_edited', { path, did: 'left as it is: changed since we wrote it' })
      return
    }
    if (original === null) {
      await rm(path, { force: true })
      for (const d of e.madeDirs) await rmdir(d).catch(() => {})
    } else if (now === null || !now.equals(original)) await writeFile(path, original)
  }
}
