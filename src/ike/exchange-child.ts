// CREATE_CHILD_SA (RFC 7296 1.3): new and rekeyed Child SAs (1.3.1, 1.3.3) with optional PFS
// (a fresh KE, KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr), 2.17), and IKE SA rekeying (1.3.2, 2.18:
// SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)). Rekeys are make-before-break: the new SA is
// handed to the data plane before the old one is deleted.

import {
  DhGroup,
  ExchangeType,
  IKE_SPI_LEN,
  NONCE_MAX_LEN,
  NONCE_MIN_LEN,
  NotifyType,
  PayloadType,
  ProtocolId,
  TransformType,
} from './constants.js'
import { deriveChildKeys, deriveIkeSaKeys, dhGenerate, skeyseedRekey } from './crypto.js'
import type { IkeEngine } from './engine.js'
import { IkeError, IkePeerError, IkeTimeoutError } from './errors.js'
import { deleteChild, deleteIkeSa } from './exchange-info.js'
import { type Payload, tsForHost, tsOfferCoversHost } from './payloads.js'
import {
  acceptChildResponse,
  acceptIkeResponse,
  childProposal,
  ikeProposal,
  selectChild,
  selectIke,
} from './proposals.js'
import { type ChildSa, IkeSa } from './sa.js'
import type { ChildSaKeys, Endpoint } from './types.js'
import { errorNotify, findNotify, first, groupData, groupOf, notify, numberToSpi, spiToNumber } from './util.js'

/** A new Child SA on an existing IKE SA (1.3.1), e.g. after the one in IKE_AUTH was refused. */
export async function createChild(engine: IkeEngine, sa: IkeSa): Promise<ChildSaKeys> {
  const { opts } = engine
  const policy = opts.childPolicy
  const spiIn = engine.newChildSpi()
  const ni = engine.nonce()
  const req: Payload[] = [
    { type: PayloadType.SA, proposals: [childProposal(policy, numberToSpi(spiIn), false)] },
    { type: PayloadType.NONCE, data: ni },
    { type: PayloadType.TSi, selectors: [tsForHost(opts.localUla)] },
    { type: PayloadType.TSr, selectors: [tsForHost(sa.peer?.ula ?? '::')] },
  ]
  let p: Payload[]
  try {
    p = (await sa.request(ExchangeType.CREATE_CHILD_SA, req)).payloads
  } catch (e) {
    engine.childSpis.delete(spiIn)
    throw e
  }
  const err = errorNotify(p)
  const acc = acceptChildResponse(first(p, PayloadType.SA)?.proposals[0], policy, DhGroup.NONE)
  const nr = first(p, PayloadType.NONCE)
  if (err || !acc || !nr || !tsOfferCoversHost(first(p, PayloadType.TSi)?.selectors, opts.localUla)) {
    engine.childSpis.delete(spiIn)
    throw new IkePeerError(err?.notifyType ?? NotifyType.NO_PROPOSAL_CHOSEN, 'CREATE_CHILD_SA refused')
  }
  const km = deriveChildKeys(sa.suite!.prf, sa.keys!.skD, acc.suite.aead, ni, nr.data)
  return engine.addChild(sa, {
    spiIn,
    spiOut: spiToNumber(acc.peerSpi),
    suite: acc.suite,
    keyIn: km.keyRtoI,
    keyOut: km.keyItoR,
    createdAtMs: engine.deps.clock.now(),
    retiring: false,
  })
}

/**
 * First wait before retrying a Child SA rekey the peer could not do yet (TEMPORARY_FAILURE, or CHILD_SA_NOT_FOUND
 * for an SA its own rekey is still making); doubles per retry.
 */
export const CHILD_REKEY_RETRY_MS = 1000
/** Retries before giving up: after about 1, 2, 4, 8 and 16 s (each plus up to half as much again). */
export const CHILD_REKEY_RETRIES = 5

/** Rekeys `old` on `sa`; resolves with the new Child SA once installed and the old one deleted. */
export async function rekeyChild(engine: IkeEngine, saAtStart: IkeSa, old: ChildSa): Promise<ChildSaKeys> {
  const { opts } = engine
  const policy = opts.childPolicy
  let sa = saAtStart
  old.retiring = true
  let group: number = opts.pfs ? ((old.suite.group || policy.pfsGroups[0]) ?? DhGroup.NONE) : DhGroup.NONE
  let keRetried = false
  for (let busyRetries = 0; ; ) {
    const spiIn = engine.newChildSpi()
    const dh = group !== DhGroup.NONE ? dhGenerate(group) : undefined
    const ni = engine.nonce()
    old.rekeyNi = ni
    const req: Payload[] = [
      notify(NotifyType.REKEY_SA, Buffer.alloc(0), ProtocolId.ESP, numberToSpi(old.spiIn)),
      {
        type: PayloadType.SA,
        proposals: [childProposal({ ...policy, pfsGroups: dh ? [group] : [] }, numberToSpi(spiIn), !!dh)],
      },
      { type: PayloadType.NONCE, data: ni },
      ...(dh ? [{ type: PayloadType.KE, group, data: dh.publicKey } as Payload] : []),
      { type: PayloadType.TSi, selectors: [tsForHost(opts.localUla)] },
      { type: PayloadType.TSr, selectors: [tsForHost(sa.peer?.ula ?? '::')] },
    ]
    let p: Payload[]
    try {
      p = (await sa.request(ExchangeType.CREATE_CHILD_SA, req)).payloads
    } catch (e) {
      engine.childSpis.delete(spiIn)
      old.retiring = false
      old.rekeyNi = undefined
      throw e
    }
    old.rekeyNi = undefined
    const tempFailure = findNotify(p, NotifyType.TEMPORARY_FAILURE)
    const notFound = findNotify(p, NotifyType.CHILD_SA_NOT_FOUND)
    const busy = tempFailure ?? notFound
    const successor = sa.children.filter((c) => c !== old && !c.retiring).at(-1)
    if (busy && successor) {
      // The peer rekeyed (or is deleting) this SA first (2.25.1): its new SA is the successor.
      engine.childSpis.delete(spiIn)
      return engine.childKeys(sa, successor, old.spiIn)
    }
    // `old` came from the peer's own rekey, which has not finished at the peer (it has not deleted the SA that
    // `old` replaces, so we still send on that): CHILD_SA_NOT_FOUND then means "not yet", not "gone". charon
    // answers so when it takes our request before our response to its rekey, which was sent first.
    const notYet = tempFailure ?? (old.outboundPending ? notFound : undefined)
    if (notYet && busyRetries < CHILD_REKEY_RETRIES) {
      // 2.25: the peer is in the middle of another exchange on this SA (charon: deleting it after its own rekey,
      // or rekeying the IKE SA). We must not retry at once, but may after it had time to finish.
      engine.childSpis.delete(spiIn)
      const next = await waitToRetryRekey(engine, sa, old, busyRetries++)
      if (next.successor) return engine.childKeys(next.sa, next.successor, old.spiIn)
      sa = next.sa
      continue
    }
    const invalidKe = findNotify(p, NotifyType.INVALID_KE_PAYLOAD)
    const wanted = invalidKe ? groupOf(invalidKe.data) : undefined
    if (wanted !== undefined && !keRetried) {
      keRetried = true
      engine.childSpis.delete(spiIn)
      group = wanted
      if (!policy.pfsGroups.includes(group)) break
      continue
    }
    const err = errorNotify(p)
    const acc = acceptChildResponse(first(p, PayloadType.SA)?.proposals[0], policy, dh ? group : DhGroup.NONE)
    const nr = first(p, PayloadType.NONCE)
    const ke = first(p, PayloadType.KE)
    if (
      err ||
      !acc ||
      !nr ||
      (dh && (!ke || ke.group !== group)) ||
      !tsOfferCoversHost(first(p, PayloadType.TSi)?.selectors, opts.localUla)
    ) {
      engine.childSpis.delete(spiIn)
      old.retiring = false
      throw new IkePeerError(err?.notifyType ?? NotifyType.NO_PROPOSAL_CHOSEN, 'Child SA rekey refused')
    }
    const gir = dh && ke ? dh.computeSecret(ke.data) : undefined
    const km = deriveChildKeys(sa.suite!.prf, sa.keys!.skD, acc.suite.aead, ni, nr.data, gir)
    const child: ChildSa = {
      spiIn,
      spiOut: spiToNumber(acc.peerSpi),
      suite: acc.suite,
      keyIn: km.keyRtoI,
      keyOut: km.keyItoR,
      createdAtMs: engine.deps.clock.now(),
      retiring: false,
    }
    const keys = engine.addChild(sa, child, old.spiIn)
    const col = old.collision
    if (col && sa.children.includes(col.created)) {
      // Both sides rekeyed at once (2.8.1): the SA made with the lowest of the four nonces is redundant and
      // its initiator closes it; the initiator of the surviving SA deletes the old one.
      const lowest = [ni, nr.data, col.peerNi, col.ourNr].reduce((x, y) => (Buffer.compare(y, x) < 0 ? y : x))
      if (lowest === ni || lowest === nr.data) {
        engine.switchOutbound(sa, col.created)
        engine.deps.log.info('ike.child.rekey_collision', {
          peer: sa.peerId,
          closing: child.spiIn,
          keeping: col.created.spiIn,
        })
        await deleteChild(engine, sa, child).catch(() => engine.removeChild(sa, child, 'redundant'))
        return engine.childKeys(sa, col.created, old.spiIn)
      }
    }
    await deleteChild(engine, sa, old).catch(() => engine.removeChild(sa, old, 'rekeyed'))
    return keys
  }
  old.retiring = false
  throw new IkeError(NotifyType.INVALID_KE_PAYLOAD, 'no common PFS group')
}

/**
 * Waits (doubling with `attempt`, jittered so both peers do not retry in step) before retrying a rekey of `old`
 * the peer could not do yet. Meanwhile a rekey of `old` by the peer is answered as usual (`rekeyWaiting`), and an
 * IKE SA rekey may move `old` to a new IKE SA. Returns the IKE SA to retry on, or the SA that replaced `old`.
 */
async function waitToRetryRekey(
  engine: IkeEngine,
  sa: IkeSa,
  old: ChildSa,
  attempt: number,
): Promise<{ sa: IkeSa; successor?: ChildSa }> {
  const ms = CHILD_REKEY_RETRY_MS * 2 ** attempt
  engine.deps.log.info('ike.child.rekey_retry', { peer: sa.peerId, spiIn: old.spiIn, inMs: ms })
  old.rekeyWaiting = true
  try {
    await engine.wait(ms + engine.deps.random.int(Math.floor(ms / 2) + 1))
  } finally {
    old.rekeyWaiting = false
  }
  const holder = [...engine.sas.values()].find((s) => s.state.kind === 'established' && s.children.includes(old))
  const now = holder ?? (sa.state.kind === 'established' ? sa : engine.findSa(sa.peerId ?? ''))
  if (engine.closed || !now) {
    old.retiring = false
    throw new IkeTimeoutError('IKE SA is gone')
  }
  const successor = now.children.filter((c) => c !== old && !c.retiring).at(-1)
  if (successor) return { sa: now, successor }
  if (!holder) throw new IkePeerError(NotifyType.CHILD_SA_NOT_FOUND, 'Child SA deleted by the peer during its rekey')
  return { sa: now }
}

/** Rekeys the IKE SA: a new IKE SA takes over the Child SAs, then the old one is deleted. */
export async function rekeyIke(engine: IkeEngine, sa: IkeSa): Promise<void> {
  const { opts } = engine
  const old = sa.suite!
  const group = old.group
  const spiI = engine.newIkeSpi()
  const dh = dhGenerate(group)
  const ni = engine.nonce()
  const policy = { ...opts.ikePolicy, groups: [group] }
  const req: Payload[] = [
    { type: PayloadType.SA, proposals: [ikeProposal(policy, spiI)] },
    { type: PayloadType.NONCE, data: ni },
    { type: PayloadType.KE, group, data: dh.publicKey },
  ]
  sa.ikeRekeyNi = ni
  let p: Payload[]
  try {
    p = (await sa.request(ExchangeType.CREATE_CHILD_SA, req)).payloads
  } finally {
    sa.ikeRekeyNi = undefined
  }
  const prop = first(p, PayloadType.SA)?.proposals[0]
  const suite = acceptIkeResponse(prop, policy)
  const nr = first(p, PayloadType.NONCE)
  const ke = first(p, PayloadType.KE)
  if (errorNotify(p) || !suite || !prop || prop.spi.length !== IKE_SPI_LEN || !nr || !ke || ke.group !== group)
    throw new IkePeerError(errorNotify(p)?.notifyType ?? NotifyType.NO_PROPOSAL_CHOSEN, 'IKE SA rekey refused')
  const gir = dh.computeSecret(ke.data)
  const skeyseed = skeyseedRekey(old.prf, sa.keys!.skD, gir, ni, nr.data)
  const next = successor(engine, sa, true, spiI, prop.spi, sa.remote)
  next.suite = suite
  next.keys = deriveIkeSaKeys(suite.prf, suite.aead, skeyseed, ni, nr.data, spiI, prop.spi)
  const col = sa.ikeCollision
  if (col && col.next.state.kind === 'established') {
    // Both sides rekeyed at once (2.8.2): the new IKE SA made with the lowest of the four nonces is redundant
    // and its initiator deletes it; the initiator of the surviving one deletes the old SA.
    const lowest = [ni, nr.data, col.peerNi, col.ourNr].reduce((x, y) => (Buffer.compare(y, x) < 0 ? y : x))
    if (lowest === ni || lowest === nr.data) {
      engine.deps.log.info('ike.rekey_collision', { peer: sa.peerId, closing: spiI.toString('hex') })
      engine.register(next)
      await deleteIkeSa(engine, next, 'redundant')
      return
    }
    adopt(engine, col.next, next)
    await deleteIkeSa(engine, sa, 'rekeyed')
    return
  }
  adopt(engine, sa, next)
  await deleteIkeSa(engine, sa, 'rekeyed')
}

function successor(
  engine: IkeEngine,
  sa: IkeSa,
  initiator: boolean,
  spiI: Buffer,
  spiR: Buffer,
  remote: Endpoint,
): IkeSa {
  const next = new IkeSa(engine.saDeps(), initiator, spiI, remote, { kind: 'auth-sent' })
  next.spiR = spiR
  next.peer = sa.peer
  next.peerId = sa.peerId
  next.natLocal = sa.natLocal
  next.natRemote = sa.natRemote
  next.peerMobike = sa.peerMobike
  next.authKey = sa.authKey
  return next
}

/** Moves the Child SAs of `sa` to `next`, which becomes the established SA; `sa` is marked rekeyed. */
function adopt(engine: IkeEngine, sa: IkeSa, next: IkeSa): void {
  engine.register(next)
  const moved = sa.children.splice(0)
  for (const c of moved) sa.cancel(c.rekeyTimer)
  sa.apply({ type: 'rekeyed', nowMs: engine.deps.clock.now() })
  engine.established(next)
  for (const c of moved) {
    next.children.push(c)
    engine.scheduleChildRekey(next, c)
  }
}

export async function handleChildRequest(
  engine: IkeEngine,
  sa: IkeSa,
  p: Payload[],
  id: number,
  from: Endpoint,
): Promise<void> {
  const reply = (payloads: Payload[]): void => sa.respond(ExchangeType.CREATE_CHILD_SA, id, payloads, from)
  if (sa.state.kind !== 'established') return reply([notify(NotifyType.TEMPORARY_FAILURE)])
  const sap = first(p, PayloadType.SA)
  const ni = first(p, PayloadType.NONCE)
  const ke = first(p, PayloadType.KE)
  if (!sap || !ni || ni.data.length < NONCE_MIN_LEN || ni.data.length > NONCE_MAX_LEN)
    return reply([notify(NotifyType.INVALID_SYNTAX)])
  const { opts } = engine
  if (sap.proposals.some((x) => x.protocolId === ProtocolId.IKE)) {
    // IKE SA rekey (1.3.2)
    if (!ke) return reply([notify(NotifyType.INVALID_SYNTAX)])
    const preferKe = {
      ...opts.ikePolicy,
      groups: opts.ikePolicy.groups.includes(ke.group) ? [ke.group] : opts.ikePolicy.groups,
    }
    const sel = selectIke(sap.proposals, preferKe) ?? selectIke(sap.proposals, opts.ikePolicy)
    const peerProp = sap.proposals.find((x) => x.num === sel?.proposal.num)
    if (!sel || !peerProp || peerProp.spi.length !== IKE_SPI_LEN) return reply([notify(NotifyType.NO_PROPOSAL_CHOSEN)])
    if (sel.suite.group !== ke.group) {
      return reply([notify(NotifyType.INVALID_KE_PAYLOAD, groupData(sel.suite.group))])
    }
    const dh = dhGenerate(ke.group)
    const gir = dh.computeSecret(ke.data)
    const spiR = engine.newIkeSpi()
    const nr = engine.nonce()
    reply([
      { type: PayloadType.SA, proposals: [{ ...sel.proposal, spi: spiR }] },
      { type: PayloadType.NONCE, data: nr },
      { type: PayloadType.KE, group: ke.group, data: dh.publicKey },
    ])
    const skeyseed = skeyseedRekey(sa.suite!.prf, sa.keys!.skD, gir, ni.data, nr)
    const next = successor(engine, sa, false, peerProp.spi, spiR, sa.remote)
    next.suite = sel.suite
    next.keys = deriveIkeSaKeys(sel.suite.prf, sel.suite.aead, skeyseed, ni.data, nr, peerProp.spi, spiR)
    if (sa.ikeRekeyNi) sa.ikeCollision = { peerNi: ni.data, ourNr: nr, next }
    adopt(engine, sa, next)
    // The rekey initiator deletes the old SA; if it never does, we do.
    sa.after(engine.opts.retransmit.initialMs * 64, () => {
      if (sa.state.kind === 'rekeyed') engine.dropSa(sa, 'rekeyed', true)
    })
    return
  }
  // Child SA: new or rekey (1.3.1, 1.3.3)
  const rekey = findNotify(p, NotifyType.REKEY_SA)
  let old: ChildSa | undefined
  if (rekey) {
    const spi = rekey.spi.length === 4 ? spiToNumber(rekey.spi) : -1
    old = sa.children.find((c) => c.spiOut === spi)
    if (!old) return reply([notify(NotifyType.CHILD_SA_NOT_FOUND, Buffer.alloc(0), ProtocolId.ESP, rekey.spi)])
    // Already replaced by our own rekey and being deleted (2.25.1). While our own rekey of it waits to be retried
    // after a TEMPORARY_FAILURE, the peer's rekey goes ahead and replaces it.
    if (old.retiring && !old.rekeyNi && !old.rekeyWaiting) return reply([notify(NotifyType.TEMPORARY_FAILURE)])
  }
  const peerUla = sa.peer?.ula ?? ''
  if (
    !tsOfferCoversHost(first(p, PayloadType.TSi)?.selectors, peerUla) ||
    !tsOfferCoversHost(first(p, PayloadType.TSr)?.selectors, opts.localUla)
  )
    return reply([notify(NotifyType.TS_UNACCEPTABLE)])
  const spiIn = engine.newChildSpi()
  const sel = selectChild(sap.proposals, opts.childPolicy, ke?.group, numberToSpi(spiIn))
  if (!sel) {
    engine.childSpis.delete(spiIn)
    if (ke) {
      const alt = selectChild(sap.proposals, opts.childPolicy, undefined, numberToSpi(spiIn))
      const offered = sap.proposals.flatMap((x) =>
        x.transforms.filter((t) => t.type === TransformType.DH).map((t) => t.id),
      )
      const g = opts.childPolicy.pfsGroups.find((x) => offered.includes(x))
      if (!alt && g !== undefined) {
        return reply([notify(NotifyType.INVALID_KE_PAYLOAD, groupData(g))])
      }
    }
    return reply([notify(NotifyType.NO_PROPOSAL_CHOSEN)])
  }
  const dh = ke ? dhGenerate(ke.group) : undefined
  const gir = dh && ke ? dh.computeSecret(ke.data) : undefined
  const nr = engine.nonce()
  reply([
    { type: PayloadType.SA, proposals: [sel.proposal] },
    { type: PayloadType.NONCE, data: nr },
    ...(dh && ke ? [{ type: PayloadType.KE, group: ke.group, data: dh.publicKey } as Payload] : []),
    { type: PayloadType.TSi, selectors: [tsForHost(peerUla)] },
    { type: PayloadType.TSr, selectors: [tsForHost(opts.localUla)] },
  ])
  const km = deriveChildKeys(sa.suite!.prf, sa.keys!.skD, sel.suite.aead, ni.data, nr, gir)
  const created: ChildSa = {
    spiIn,
    spiOut: spiToNumber(sel.peerSpi),
    suite: sel.suite,
    keyIn: km.keyItoR,
    keyOut: km.keyRtoI,
    createdAtMs: engine.deps.clock.now(),
    retiring: false,
  }
  if (old) {
    old.retiring = true
    if (old.rekeyNi) old.collision = { peerNi: ni.data, ourNr: nr, created }
  }
  engine.addChild(sa, created, old?.spiIn, old !== undefined)
}
