// The PortMapper's state machine as one pure function (STYLE.md section 6): the mapper does the I/O and feeds
// what happened into stepPortMap, which returns the next state and the reason to report, if any.
//
//              start / refresh (network changed)
//                      |
//                      v
//   +----------->  probing  --- address public ------------> public
//   |                  |  \---- no gateway / none answers --> nat-without-mapping --(reprobeMs, announcement)--+
//   |                  v                                                                                        |
//   |   +-------->  mapped  <------------------------------------------------------------------------------------+
//   |   |              |
//   |   +--- renewed at half-life, or at once on a NAT-PMP/PCP announcement or SSDP alive:
//   |        same external -> mapped (quiet); other external -> 'external-changed';
//   |        epoch went back / UPnP entry gone -> 'recreated' (the renewal re-made it)
//   +------- renewal got no answer -> probe again: 'recreated' if a mapping is made, 'lost' if not

import type { AddrPort, MapResult, PortmapProtocol } from './types.js'

export type PortMapState =
  | { readonly kind: 'probing' }
  | {
      readonly kind: 'mapped'
      readonly protocol: PortmapProtocol
      readonly gateway: string
      readonly external: AddrPort
      readonly internalPort: number
      /** As granted by the gateway; 0 is a UPnP permanent lease. */
      readonly lifetimeSec: number
      /** Wall-clock ms (Clock.now) when the mapping runs out unless renewed; Infinity for a permanent lease. */
      readonly expiresAt: number
    }
  | { readonly kind: 'public'; readonly address: string }
  | { readonly kind: 'nat-without-mapping'; readonly address?: string; readonly gateway?: string }

/** Why the state changed: 'recreated' means the gateway had lost the mapping and we made it again. */
export type PortMapChangeReason =
  | 'probing'
  | 'mapped'
  | 'external-changed'
  | 'recreated'
  | 'lost'
  | 'public'
  | 'no-mapping'

export interface PortMapEvent {
  readonly reason: PortMapChangeReason
  readonly state: PortMapState
  readonly previous: PortMapState
}

/** What the mapper observed. `afterLoss`: this probe follows a renewal that got no answer. */
export type PortMapInput =
  | { readonly type: 'network-changed' }
  | { readonly type: 'public'; readonly address: string }
  | { readonly type: 'no-mapping'; readonly address?: string; readonly gateway?: string; readonly afterLoss: boolean }
  | {
      readonly type: 'mapped' | 'renewed'
      readonly protocol: PortmapProtocol
      readonly gateway: string
      readonly internalPort: number
      readonly result: MapResult
      readonly nowMs: number
      readonly afterLoss?: boolean
    }

const MS_PER_SEC = 1000

function sameMapping(a: PortMapState, b: PortMapState): boolean {
  return (
    a.kind === 'mapped' &&
    b.kind === 'mapped' &&
    a.protocol === b.protocol &&
    a.external.address === b.external.address &&
    a.external.port === b.external.port
  )
}

/** The next state, and the reason to report it (undefined: nothing a listener needs to hear). */
export function stepPortMap(
  state: PortMapState,
  input: PortMapInput,
): { state: PortMapState; reason: PortMapChangeReason | undefined } {
  switch (input.type) {
    case 'network-changed':
      return { state: { kind: 'probing' }, reason: state.kind === 'probing' ? undefined : 'probing' }
    case 'public': {
      const next: PortMapState = { kind: 'public', address: input.address }
      const same = state.kind === 'public' && state.address === input.address
      return { state: next, reason: same ? undefined : 'public' }
    }
    case 'no-mapping': {
      const next: PortMapState = {
        kind: 'nat-without-mapping',
        ...(input.address ? { address: input.address } : {}),
        ...(input.gateway ? { gateway: input.gateway } : {}),
      }
      if (state.kind === 'nat-without-mapping') return { state: next, reason: undefined }
      return { state: next, reason: input.afterLoss ? 'lost' : 'no-mapping' }
    }
    case 'mapped':
    case 'renewed': {
      const r = input.result
      const next: PortMapState = {
        kind: 'mapped',
        protocol: input.protocol,
        gateway: input.gateway,
        external: r.external,
        internalPort: input.internalPort,
        lifetimeSec: r.lifetimeSec,
        expiresAt: r.lifetimeSec === 0 ? Number.POSITIVE_INFINITY : input.nowMs + r.lifetimeSec * MS_PER_SEC,
      }
      const same = sameMapping(state, next)
      if (input.type === 'renewed') {
        if (!same) return { state: next, reason: 'external-changed' }
        return { state: next, reason: r.gatewayRestarted ? 'recreated' : undefined }
      }
      if (input.afterLoss || r.gatewayRestarted) return { state: next, reason: 'recreated' }
      if (same) return { state: next, reason: undefined }
      return { state: next, reason: state.kind === 'mapped' ? 'external-changed' : 'mapped' }
    }
  }
}
