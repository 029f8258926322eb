// Which mapping protocol the gateway speaks, asked of all of them at once (after tailscale's Probe): a PCP
// ANNOUNCE, a NAT-PMP external-address request and an SSDP M-SEARCH go out together, each on the 250 ms doubling
// schedule. The order (PCP, then NAT-PMP, then UPnP) is a preference, not a sequence: once a protocol
// answers, we wait at most `graceMs` for the ones preferred to it. Asking one after the other would make a
// UPnP-only router (most consumer routers) wait for two full probe timeouts.

import type { Clock, TimerHandle } from '../io/clock.js'
import type { Logger } from '../io/log.js'
import type { MappingClient } from './types.js'

export interface ProbeOptions {
  /** Sends per protocol. */
  readonly maxTries: number
  /** How long an answer waits for the protocols preferred to it. */
  readonly graceMs: number
}

type Outcome = 'pending' | 'answered' | 'failed'

/**
 * Probes every client (given in preference order) at once. Resolves with the clients that answered, best
 * first, as soon as the best possible one is known; requests still in flight are cancelled.
 */
export function probeInParallel(
  deps: { clock: Clock; log: Logger },
  clients: readonly MappingClient[],
  opts: ProbeOptions,
): Promise<MappingClient[]> {
  const outcome: Outcome[] = clients.map(() => 'pending')
  return new Promise((resolve) => {
    let grace: TimerHandle | undefined
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      deps.clock.clearTimeout(grace)
      clients.forEach((c, i) => {
        if (outcome[i] === 'pending') c.cancel()
      })
      resolve(clients.filter((_, i) => outcome[i] === 'answered'))
    }
    const decide = (): void => {
      const best = outcome.indexOf('answered')
      if (best < 0) {
        if (!outcome.includes('pending')) finish()
        return
      }
      if (!outcome.slice(0, best).includes('pending')) {
        finish()
        return
      }
      grace ??= deps.clock.setTimeout(finish, opts.graceMs)
    }
    clients.forEach((c, i) => {
      c.probe({ maxTries: opts.maxTries }).then(
        () => {
          outcome[i] = 'answered'
          decide()
        },
        (e: unknown) => {
          if (outcome[i] !== 'pending') return
          outcome[i] = 'failed'
          if (!done) deps.log.debug('portmap.probe-failed', { protocol: c.protocol, error: String(e) })
          decide()
        },
      )
    })
  })
}
