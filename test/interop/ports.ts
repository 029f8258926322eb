// Loopback ports for the interop tests. A port picked here is free only at that moment: another test running
// beside this one may bind it first, so starts that pick ports go through retryOnAddrInUse.
import { createSocket } from 'node:dgram'
import { createServer } from 'node:net'

export const LOOPBACK = '127.0.0.1'

/** A port free for both TCP and UDP on 127.0.0.1 (chosen by the kernel, then released). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer()
      srv.once('error', reject)
      srv.listen(0, LOOPBACK, () => {
        const a = srv.address()
        srv.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
      })
    })
    const udpFree = await new Promise<boolean>((resolve) => {
      const s = createSocket('udp4')
      s.once('error', () => resolve(false))
      s.bind(port, LOOPBACK, () => s.close(() => resolve(true)))
    })
    if (udpFree) return port
  }
}

/** True for the errors a daemon or our own listener reports when a picked port was taken in the meantime. */
export function isAddrInUse(e: unknown): boolean {
  const s = String(e)
  return s.includes('EADDRINUSE') || s.includes('address in use')
}

/** Runs `start` (which picks its own ports) again, up to `attempts` times in all, while it fails with isAddrInUse. */
export async function retryOnAddrInUse<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start()
    } catch (e) {
      if (attempt >= attempts || !isAddrInUse(e)) throw e
    }
  }
}
