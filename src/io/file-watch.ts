// Calls back soon after a file changes, without polling it: inotify (fs.watch) on the file itself, which sees writes
// in place (also to a file bind-mounted over the path, as `ip netns exec` does with /etc/netns/NS/resolv.conf), and on
// its directory, which sees the file replaced by a rename (how DHCP clients and resolvconf write resolv.conf); the
// file watch is re-armed on the new file after each change. A slow safety interval covers file systems without
// inotify and watches that could not be set (ENOSPC: the user's inotify limit). An agent that re-read resolv.conf
// every 5 s woke 12 times a minute for a file that changes once a day (issue 17's idle cost).
import { type FSWatcher, watch } from 'node:fs'
import { basename, dirname } from 'node:path'

export interface FileWatch {
  close(): void
}

/** `onChange` after `path` changed (debounced by `debounceMs`), and every `safetyMs` anyway. */
export function watchFile(
  path: string,
  onChange: () => void,
  opts: { debounceMs?: number; safetyMs?: number } = {},
): FileWatch {
  const debounceMs = opts.debounceMs ?? 100
  let closed = false
  let fileWatch: FSWatcher | undefined
  let dirWatch: FSWatcher | undefined
  let debounce: NodeJS.Timeout | undefined
  const fire = (): void => {
    if (closed) return
    clearTimeout(debounce)
    debounce = setTimeout(() => {
      if (closed) return
      armFile()
      onChange()
    }, debounceMs)
    debounce.unref()
  }
  const tryWatch = (p: string, h: (ev: string, name: string | null) => void): FSWatcher | undefined => {
    try {
      const w = watch(p, { persistent: false }, (ev, name) => h(ev, name === null ? null : String(name)))
      w.on('error', () => w.close())
      return w
    } catch {
      return undefined
    }
  }
  const armFile = (): void => {
    fileWatch?.close()
    fileWatch = tryWatch(path, () => fire())
  }
  armFile()
  const base = basename(path)
  dirWatch = tryWatch(dirname(path), (_ev, name) => {
    if (name === base) fire()
  })
  const safety = setInterval(() => {
    if (!fileWatch) armFile()
    onChange()
  }, opts.safetyMs ?? 60_000)
  safety.unref()
  return {
    close(): void {
      closed = true
      clearTimeout(debounce)
      clearInterval(safety)
      fileWatch?.close()
      dirWatch?.close()
      fileWatch = undefined
      dirWatch = undefined
    },
  }
}
