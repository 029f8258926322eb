// Files that hold secrets (the server's SQLite store with every account's TSIG secret, key files, TLS keys):
// created 0600 whatever the umask or the directory's mode, existing ones tightened, and a warning for a
// directory or key file that group or others can read (docs/security.md; issue 16 finding 5).
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs'

const OWNER_ONLY = 0o600
const GROUP_OTHER = 0o077

/** Creates `file` empty with mode 0600 if it does not exist, else removes any group/other permission from it. */
export function ensureOwnerOnly(file: string): void {
  if (!existsSync(file)) {
    closeSync(openSync(file, 'a', OWNER_ONLY))
    return
  }
  const mode = statSync(file).mode & 0o777
  if ((mode & GROUP_OTHER) !== 0) chmodSync(file, mode & ~GROUP_OTHER & 0o777)
}

/**
 * Like ensureOwnerOnly for a file that another process may delete at any moment (SQLite's -wal and -shm files go
 * when the last connection closes): tightened when it is there, nothing when it is gone, never created.
 */
export function tightenIfPresent(file: string): void {
  try {
    const mode = statSync(file).mode & 0o777
    if ((mode & GROUP_OTHER) !== 0) chmodSync(file, mode & ~GROUP_OTHER & 0o777)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
}

/** The permission bits of `path` that let group or others in (0 when there are none or it does not exist). */
export function openToOthers(path: string): number {
  try {
    return statSync(path).mode & GROUP_OTHER
  } catch {
    return 0
  }
}
