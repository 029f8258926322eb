// What a long-running process holds, for `autotunnel status --json` (the agent's `process` field) and the server's
// /metrics: resident set size, heap, open file descriptors (/proc/self/fd) and the ref'd handles and timers Node
// lists in process.getActiveResourcesInfo() (an unref'd timer or socket is not listed). The soak run (test/soak/)
// compares these at its start and end.
import { readdirSync } from 'node:fs'

export interface ProcessStats {
  readonly rssBytes: number
  readonly heapUsedBytes: number
  /** Entries of /proc/self/fd; null where /proc is missing. */
  readonly openFds: number | null
  /** Count per kind: 'Timeout', 'UDPWrap', 'TCPSocketWrap', 'FSReqPromise', ... */
  readonly activeResources: Readonly<Record<string, number>>
}

export function processStats(): ProcessStats {
  const mem = process.memoryUsage()
  const activeResources: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) activeResources[r] = (activeResources[r] ?? 0) + 1
  return { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, openFds: openFdCount(), activeResources }
}

function openFdCount(): number | null {
  try {
    return readdirSync('/proc/self/fd').length
  } catch {
    return null
  }
}
