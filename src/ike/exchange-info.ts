// INFORMATIONAL (RFC 7296 1.4): liveness checks (empty request, 2.4), Delete of Child and IKE SAs
// (1.4.1), and MOBIKE address updates (RFC 4555 3.5 UPDATE_SA_ADDRESSES, 3.6 NAT-D in updates,
// 3.7 COOKIE2 return routability).

import { ESP_SPI_LEN, ExchangeType, NotifyType, PayloadType, ProtocolId } from './constants.js'
import type { IkeEngine } from './engine.js'
import { checkNat } from './exchange-init.js'
import { natDetectionHash } from './nat.js'
import type { Payload } from './payloads.js'
import type { ChildSa, IkeSa } from './sa.js'
import type { Endpoint } from './types.js'
import { all, findNotify, notify, numberToSpi, spiToNumber } from './util.js'

const COOKIE2_LEN = 16
/** How long a Delete waits for its answer before the SA is dropped anyway. */
const DELETE_WAIT_MS = 2000

export async function dpd(engine: IkeEngine, sa: IkeSa): Promise<boolean> {
  try {
    await sa.request(ExchangeType.INFORMATIONAL, [])
    return true
  } catch {
    engine.deps.log.info('ike.dpd.dead', { peer: sa.peerId })
    engine.dropSa(sa, 'dpd timeout')
    return false
  }
}

function waitOrTimeout(engine: IkeEngine, p: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const t = engine.deps.clock.setTimeout(resolve, DELETE_WAIT_MS)
    p.then(
      () => resolve(),
      () => resolve(),
    ).finally(() => engine.deps.clock.clearTimeout(t))
  })
}

export async function deleteIkeSa(engine: IkeEngine, sa: IkeSa, reason: string): Promise<void> {
  const keep = reason === 'rekeyed'
  const p = sa.request(ExchangeType.INFORMATIONAL, [
    { type: PayloadType.DELETE, protocolId: ProtocolId.IKE, spiSize: 0, spis: [] },
  ])
  p.catch(() => {})
  await waitOrTimeout(engine, p)
  engine.dropSa(sa, reason, keep)
}

export async function deleteChild(engine: IkeEngine, sa: IkeSa, c: ChildSa): Promise<void> {
  c.retiring = true
  try {
    await sa.request(ExchangeType.INFORMATIONAL, [
      { type: PayloadType.DELETE, protocolId: ProtocolId.ESP, spiSize: ESP_SPI_LEN, spis: [numberToSpi(c.spiIn)] },
    ])
  } finally {
    engine.removeChild(sa, c, 'deleted')
  }
}

/**
 * Our address changed (RFC 4555 3.5): the original initiator sends UPDATE_SA_ADDRESSES (with NAT-D and
 * COOKIE2); the original responder may not, so it sends its address list (NO_ADDITIONAL_ADDRESSES) from the
 * new address, which implicitly asks the initiator to move.
 */
export async function mobikeUpdate(engine: IkeEngine, sa: IkeSa): Promise<void> {
  const local = engine.deps.transport.local(sa.remote)
  if (!sa.initiator) {
    await sa.request(ExchangeType.INFORMATIONAL, [notify(NotifyType.NO_ADDITIONAL_ADDRESSES)])
    engine.deps.log.info('ike.mobike.address_list_sent', { peer: sa.peerId, local: local.address })
    return
  }
  const cookie2 = engine.deps.random.bytes(COOKIE2_LEN)
  const resp = await sa.request(ExchangeType.INFORMATIONAL, [
    notify(NotifyType.UPDATE_SA_ADDRESSES),
    notify(NotifyType.NAT_DETECTION_SOURCE_IP, natDetectionHash(sa.spiI, sa.spiR, local)),
    notify(NotifyType.NAT_DETECTION_DESTINATION_IP, natDetectionHash(sa.spiI, sa.spiR, sa.remote)),
    notify(NotifyType.COOKIE2, cookie2),
  ])
  const echo = findNotify(resp.payloads, NotifyType.COOKIE2)
  if (!echo?.data.equals(cookie2)) throw new Error('MOBIKE: COOKIE2 not echoed')
  engine.stats.mobikeUpdates++
  engine.deps.log.info('ike.mobike.updated', { peer: sa.peerId, local: local.address })
}

/** Return routability (RFC 4555 3.7): an INFORMATIONAL with COOKIE2 to the new address must come back. */
async function returnRoutability(engine: IkeEngine, sa: IkeSa, to: Endpoint): Promise<boolean> {
  const cookie2 = engine.deps.random.bytes(COOKIE2_LEN)
  const prev = sa.remote
  sa.remote = to
  try {
    const r = await sa.request(ExchangeType.INFORMATIONAL, [notify(NotifyType.COOKIE2, cookie2)])
    const echo = findNotify(r.payloads, NotifyType.COOKIE2)
    if (echo?.data.equals(cookie2)) return true
  } catch {
    // fall through
  }
  if (sa.remote === to) sa.remote = prev
  return false
}

export async function handleInfoRequest(
  engine: IkeEngine,
  sa: IkeSa,
  p: Payload[],
  id: number,
  from: Endpoint,
): Promise<void> {
  const resp: Payload[] = []
  let dropIke = false
  const removed: ChildSa[] = []
  for (const d of all(p, PayloadType.DELETE)) {
    if (d.protocolId === ProtocolId.IKE) dropIke = true
    else if (d.protocolId === ProtocolId.ESP) {
      const ours: Buffer[] = []
      for (const spi of d.spis) {
        if (spi.length !== ESP_SPI_LEN) continue
        const c = sa.children.find((x) => x.spiOut === spiToNumber(spi))
        if (!c) continue
        ours.push(numberToSpi(c.spiIn))
        removed.push(c)
      }
      if (ours.length > 0)
        resp.push({ type: PayloadType.DELETE, protocolId: ProtocolId.ESP, spiSize: ESP_SPI_LEN, spis: ours })
    }
  }
  if (findNotify(p, NotifyType.AUTHENTICATION_FAILED)) {
    // The initiator rejected our AUTH (RFC 7296 2.21.2): the SA is void.
    engine.stats.authFailures++
    sa.respond(ExchangeType.INFORMATIONAL, id, [], from)
    engine.dropSa(sa, 'peer rejected our authentication')
    return
  }
  const update = findNotify(p, NotifyType.UPDATE_SA_ADDRESSES)
  let moved = false
  if (update && sa.peerMobike) {
    checkNat(sa, p, engine.deps.transport.local(from), from, sa.spiR)
    resp.push(
      notify(NotifyType.NAT_DETECTION_SOURCE_IP, natDetectionHash(sa.spiI, sa.spiR, engine.deps.transport.local(from))),
      notify(NotifyType.NAT_DETECTION_DESTINATION_IP, natDetectionHash(sa.spiI, sa.spiR, from)),
    )
    moved = from.address !== sa.remote.address || from.port !== sa.remote.port
  }
  // The responder's address list arrived from a new address: it moved (RFC 4555 3.6); as initiator we
  // move the SA there with our own UPDATE_SA_ADDRESSES, whose COOKIE2 echo proves the path.
  const addressList =
    findNotify(p, NotifyType.NO_ADDITIONAL_ADDRESSES) ??
    findNotify(p, NotifyType.ADDITIONAL_IP4_ADDRESS) ??
    findNotify(p, NotifyType.ADDITIONAL_IP6_ADDRESS)
  const peerMovedImplicitly =
    !!addressList &&
    sa.initiator &&
    sa.peerMobike &&
    (from.address !== sa.remote.address || from.port !== sa.remote.port)
  const cookie2 = findNotify(p, NotifyType.COOKIE2)
  if (cookie2) resp.push(notify(NotifyType.COOKIE2, cookie2.data))
  sa.respond(ExchangeType.INFORMATIONAL, id, resp, from)
  for (const c of removed) engine.removeChild(sa, c, 'peer deleted')
  if (dropIke) {
    engine.dropSa(sa, sa.state.kind === 'rekeyed' ? 'rekeyed' : 'peer deleted', sa.state.kind === 'rekeyed')
    return
  }
  if (peerMovedImplicitly) {
    const prev = sa.remote
    sa.remote = from
    try {
      await mobikeUpdate(engine, sa)
      engine.deps.log.info('ike.mobike.followed_peer', { peer: sa.peerId, to: `${from.address}:${from.port}` })
      engine.events.peerEndpoint?.({ peerId: sa.peerId ?? '', remote: from, via: 'mobike' })
    } catch {
      if (sa.remote === from) sa.remote = prev
    }
    return
  }
  if (moved) {
    engine.deps.log.info('ike.mobike.peer_moved', { peer: sa.peerId, to: `${from.address}:${from.port}` })
    if (await returnRoutability(engine, sa, from)) {
      engine.stats.mobikeUpdates++
      engine.events.peerEndpoint?.({ peerId: sa.peerId ?? '', remote: from, via: 'mobike' })
    }
  }
}
