// IKE_SA_INIT and IKE_AUTH (RFC 7296 1.2, 2.6 COOKIE, 2.15 AUTH, 2.23 NAT detection; 1.3/3.10.1
// INVALID_KE_PAYLOAD retry; RFC 7427 SIGNATURE_HASH_ALGORITHMS; RFC 4555 MOBIKE_SUPPORTED).
// Initiator: initiate(). Responder: handleInitRequest() (stateless until the cookie check passes) and
// handleAuthRequest().

import {
  encodeSignatureHashes,
  pskAuthData,
  pskAuthVerify,
  signatureAuthData,
  signatureAuthVerify,
  signedOctets,
} from './auth.js'
import {
  AuthMethod,
  ExchangeType,
  HeaderFlag,
  IdType,
  IKE_SPI_LEN,
  NONCE_MAX_LEN,
  NONCE_MIN_LEN,
  NotifyType,
  PayloadType,
} from './constants.js'
import { deriveChildKeys, deriveIkeSaKeys, dhGenerate, skeyseedInitial } from './crypto.js'
import type { IkeEngine } from './engine.js'
import { IkeError, IkePeerError } from './errors.js'
import { encodeMessage, type IkeMessage } from './message.js'
import { natDetectionHash } from './nat.js'
import { encodeId, type IdPayload, type Payload, tsForHost, tsOfferCoversHost } from './payloads.js'
import {
  acceptChildResponse,
  acceptIkeResponse,
  childProposal,
  ikeProposal,
  selectChild,
  selectIke,
} from './proposals.js'
import { type ChildSa, IkeSa } from './sa.js'
import { IKE_PORT } from './transport.js'
import type { ChildSaKeys, Endpoint, PeerInfo } from './types.js'
import { errorNotify, findNotify, first, groupData, groupOf, notify, numberToSpi, spiToNumber } from './util.js'

const MAX_INIT_ATTEMPTS = 4
const ZERO_SPI = Buffer.alloc(IKE_SPI_LEN)

function idPayload(type: typeof PayloadType.IDi | typeof PayloadType.IDr, fqdn: string): IdPayload {
  return { type, idType: IdType.ID_FQDN, data: Buffer.from(fqdn, 'ascii') }
}
function fqdnOf(p: IdPayload | undefined): string | undefined {
  if (!p || p.idType !== IdType.ID_FQDN) return undefined
  const s = p.data.toString('ascii').toLowerCase()
  return /^[a-z0-9._-]{1,253}$/.test(s) ? s : undefined
}

function natPayloads(spiI: Buffer, spiR: Buffer, local: Endpoint, remote: Endpoint): Payload[] {
  return [
    notify(NotifyType.NAT_DETECTION_SOURCE_IP, natDetectionHash(spiI, spiR, local)),
    notify(NotifyType.NAT_DETECTION_DESTINATION_IP, natDetectionHash(spiI, spiR, remote)),
  ]
}

/** Sets natLocal/natRemote from the peer's NAT-D notifies (2.23); absent notifies mean no NAT. */
export function checkNat(sa: IkeSa, payloads: readonly Payload[], local: Endpoint, from: Endpoint, spiR: Buffer): void {
  const src = payloads.filter((p) => 'notifyType' in p && p.notifyType === NotifyType.NAT_DETECTION_SOURCE_IP)
  const dst = findNotify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
  if (src.length === 0 || !dst) return
  const want = natDetectionHash(sa.spiI, spiR, from)
  sa.natRemote = !src.some((n) => 'data' in n && (n.data as Buffer).equals(want))
  sa.natLocal = !dst.data.equals(natDetectionHash(sa.spiI, spiR, local))
}

function authPayload(engine: IkeEngine, sa: IkeSa, octets: Buffer, peer: PeerInfo): Payload {
  if (engine.opts.auth === 'signature' && engine.opts.hostKey)
    return {
      type: PayloadType.AUTH,
      method: AuthMethod.DIGITAL_SIGNATURE,
      data: signatureAuthData(engine.opts.hostKey.privateKey, octets),
    }
  const psk = peer.psk ?? engine.opts.psk
  if (!psk || !sa.suite) throw new IkeError(NotifyType.AUTHENTICATION_FAILED, 'no PSK for this peer')
  return { type: PayloadType.AUTH, method: AuthMethod.SHARED_KEY_MIC, data: pskAuthData(sa.suite.prf, psk, octets) }
}

/** Checks the peer's AUTH; records which key verified it. */
function verifyAuth(
  engine: IkeEngine,
  sa: IkeSa,
  peer: PeerInfo,
  method: number,
  data: Buffer,
  octets: Buffer,
): boolean {
  if (!sa.suite) return false
  if (method === AuthMethod.DIGITAL_SIGNATURE) {
    for (const k of peer.publicKeys ?? []) {
      if (signatureAuthVerify([k], octets, data)) {
        sa.authKey = k
        return true
      }
    }
    return false
  }
  if (method === AuthMethod.SHARED_KEY_MIC) {
    const psk = peer.psk ?? engine.opts.psk
    if (psk && pskAuthVerify(sa.suite.prf, psk, octets, data)) {
      sa.authKey = 'psk'
      return true
    }
  }
  return false
}

// ---- initiator ----

export async function initiate(engine: IkeEngine, peerId: string, endpoint?: Endpoint): Promise<ChildSaKeys> {
  const peer = await engine.opts.lookupPeer(peerId)
  if (!peer) throw new IkeError(NotifyType.AUTHENTICATION_FAILED, `unknown or revoked peer ${peerId}`)
  const remote = endpoint ?? peer.endpoint
  if (!remote) throw new Error(`no endpoint for ${peerId}`)
  const policy = engine.opts.ikePolicy
  let group = policy.groups[0]!
  let cookie: Buffer | undefined
  const spiI = engine.newIkeSpi()
  // A COOKIE retry repeats the same Ni and KE (2.6: the cookie covers Ni); INVALID_KE needs a new KE.
  const ni = engine.nonce()
  let dh = dhGenerate(group)
  for (let attempt = 0; attempt < MAX_INIT_ATTEMPTS; attempt++) {
    const sa = new IkeSa(engine.saDeps(), true, spiI, remote, { kind: 'init-sent', attempt })
    sa.peerId = peerId.toLowerCase()
    sa.peer = peer
    engine.register(sa)
    if (dh.group !== group) dh = dhGenerate(group)
    sa.ni = ni
    const payloads: Payload[] = [
      ...(cookie ? [notify(NotifyType.COOKIE, cookie)] : []),
      { type: PayloadType.SA, proposals: [ikeProposal(policy)] },
      { type: PayloadType.KE, group, data: dh.publicKey },
      { type: PayloadType.NONCE, data: sa.ni },
      ...natPayloads(spiI, ZERO_SPI, engine.deps.transport.local(remote), remote),
      notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, encodeSignatureHashes()),
    ]
    let resp: Awaited<ReturnType<IkeSa['requestInit']>>
    try {
      resp = await sa.requestInit(payloads, ExchangeType.IKE_SA_INIT)
    } catch (e) {
      engine.dropSa(sa, 'init timeout')
      throw e
    }
    const c = findNotify(resp.payloads, NotifyType.COOKIE)
    const invalidKe = findNotify(resp.payloads, NotifyType.INVALID_KE_PAYLOAD)
    if (c || invalidKe) {
      engine.dropSa(sa, 'init retry')
      if (c) cookie = c.data
      if (invalidKe) {
        const g = groupOf(invalidKe.data) ?? -1
        if (!policy.groups.includes(g)) throw new IkePeerError(NotifyType.INVALID_KE_PAYLOAD, `peer wants group ${g}`)
        group = g
      }
      continue
    }
    const err = errorNotify(resp.payloads)
    if (err) {
      engine.dropSa(sa, 'init refused')
      throw new IkePeerError(err.notifyType, `IKE_SA_INIT refused with notify ${err.notifyType}`)
    }
    try {
      return await finishInit(engine, sa, resp.msg, resp.payloads, dh, peer)
    } catch (e) {
      // A refused Child SA leaves the IKE SA up (RFC 7296 1.2); anything earlier kills it.
      if (sa.state.kind !== 'established') engine.dropSa(sa, String(e))
      throw e
    }
  }
  throw new IkeError(0, `IKE_SA_INIT with ${peerId}: too many retries`)
}

async function finishInit(
  engine: IkeEngine,
  sa: IkeSa,
  msg: IkeMessage,
  payloads: Payload[],
  dh: ReturnType<typeof dhGenerate>,
  peer: PeerInfo,
): Promise<ChildSaKeys> {
  const suite = acceptIkeResponse(first(payloads, PayloadType.SA)?.proposals[0], engine.opts.ikePolicy)
  const ke = first(payloads, PayloadType.KE)
  const nr = first(payloads, PayloadType.NONCE)
  if (!suite || !ke || !nr || ke.group !== dh.group || suite.group !== dh.group)
    throw new IkeError(NotifyType.NO_PROPOSAL_CHOSEN, 'unacceptable IKE_SA_INIT response')
  if (nr.data.length < NONCE_MIN_LEN || nr.data.length > NONCE_MAX_LEN)
    throw new IkeError(NotifyType.INVALID_SYNTAX, 'Nr')
  if (msg.header.spiR.equals(ZERO_SPI)) throw new IkeError(NotifyType.INVALID_SYNTAX, 'SPIr is zero')
  sa.spiR = msg.header.spiR
  sa.nr = nr.data
  sa.suite = suite
  sa.initResponse = msg.raw
  const gir = dh.computeSecret(ke.data)
  sa.keys = deriveIkeSaKeys(
    suite.prf,
    suite.aead,
    skeyseedInitial(suite.prf, sa.ni, sa.nr, gir),
    sa.ni,
    sa.nr,
    sa.spiI,
    sa.spiR,
  )
  checkNat(sa, payloads, engine.deps.transport.local(sa.remote), sa.remote, sa.spiR)
  // RFC 7296 2.23: leave port 500 for the peer's NAT-T port (our ESP is always UDP-encapsulated).
  const natT = engine.deps.transport.natTPort
  if (natT !== undefined && sa.remote.port === IKE_PORT)
    sa.remote = { address: sa.remote.address, port: natT, via: 'encap' }
  sa.apply({ type: 'init-done' })
  return authInitiator(engine, sa, peer)
}

async function authInitiator(engine: IkeEngine, sa: IkeSa, peer: PeerInfo): Promise<ChildSaKeys> {
  const { opts } = engine
  const suite = sa.suite!
  const keys = sa.keys!
  const idi = idPayload(PayloadType.IDi, opts.localId)
  const octets = signedOctets(suite.prf, sa.initRequest!, sa.nr, keys.skPi, encodeId(idi))
  const spiIn = engine.newChildSpi()
  const req: Payload[] = [
    idi,
    notify(NotifyType.INITIAL_CONTACT),
    idPayload(PayloadType.IDr, peer.id),
    authPayload(engine, sa, octets, peer),
    { type: PayloadType.SA, proposals: [childProposal(opts.childPolicy, numberToSpi(spiIn), false)] },
    { type: PayloadType.TSi, selectors: [tsForHost(opts.localUla)] },
    { type: PayloadType.TSr, selectors: [tsForHost(peer.ula)] },
    ...(opts.mobike ? [notify(NotifyType.MOBIKE_SUPPORTED)] : []),
  ]
  let resp: Awaited<ReturnType<IkeSa['request']>>
  try {
    resp = await sa.request(ExchangeType.IKE_AUTH, req)
  } catch (e) {
    engine.childSpis.delete(spiIn)
    throw e
  }
  const p = resp.payloads
  const idr = first(p, PayloadType.IDr)
  const auth = first(p, PayloadType.AUTH)
  if (!idr || !auth) {
    engine.childSpis.delete(spiIn)
    const err = errorNotify(p)
    engine.stats.authFailures++
    throw new IkePeerError(err?.notifyType ?? NotifyType.AUTHENTICATION_FAILED, 'IKE_AUTH refused')
  }
  const rOctets = signedOctets(suite.prf, sa.initResponse!, sa.ni, keys.skPr, encodeId(idr))
  if (fqdnOf(idr) !== peer.id.toLowerCase() || !verifyAuth(engine, sa, peer, auth.method, auth.data, rOctets)) {
    engine.childSpis.delete(spiIn)
    engine.stats.authFailures++
    // RFC 7296 2.21.2: tell the responder, which already considers the SA established.
    sa.request(ExchangeType.INFORMATIONAL, [notify(NotifyType.AUTHENTICATION_FAILED)]).catch(() => {})
    throw new IkeError(NotifyType.AUTHENTICATION_FAILED, `peer ${peer.id} failed authentication`)
  }
  sa.peerMobike = opts.mobike && findNotify(p, NotifyType.MOBIKE_SUPPORTED) !== undefined
  engine.established(sa)
  const childErr = errorNotify(p)
  const acc = acceptChildResponse(first(p, PayloadType.SA)?.proposals[0], opts.childPolicy, 0)
  const tsi = first(p, PayloadType.TSi)?.selectors
  const tsr = first(p, PayloadType.TSr)?.selectors
  if (childErr || !acc || !tsOfferCoversHost(tsi, opts.localUla) || !tsOfferCoversHost(tsr, peer.ula)) {
    engine.childSpis.delete(spiIn)
    throw new IkePeerError(childErr?.notifyType ?? NotifyType.NO_PROPOSAL_CHOSEN, 'Child SA refused in IKE_AUTH')
  }
  const km = deriveChildKeys(suite.prf, keys.skD, acc.suite.aead, sa.ni, sa.nr)
  const child: ChildSa = {
    spiIn,
    spiOut: spiToNumber(acc.peerSpi),
    suite: acc.suite,
    keyIn: km.keyRtoI,
    keyOut: km.keyItoR,
    createdAtMs: engine.deps.clock.now(),
    retiring: false,
  }
  return engine.addChild(sa, child)
}

// ---- responder ----

export function handleInitRequest(engine: IkeEngine, msg: IkeMessage, from: Endpoint): void {
  const h = msg.header
  if (h.messageId !== 0 || !h.spiR.equals(ZERO_SPI) || !(h.flags & HeaderFlag.INITIATOR)) return
  const key = `${from.address}:${from.port}:${h.spiI.toString('hex')}`
  const again = engine.halfOpen.get(key)
  if (again) {
    if (again.initRequest?.equals(msg.raw) && again.initResponse) {
      engine.stats.rxRetransmits++
      engine.send(again.initResponse, from)
    }
    return
  }
  const payloads = msg.payloads
  if (msg.unsupportedCritical !== undefined) {
    engine.sendInitNotify(msg, from, [
      notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, Buffer.of(msg.unsupportedCritical)),
    ])
    return
  }
  const sap = first(payloads, PayloadType.SA)
  const ke = first(payloads, PayloadType.KE)
  const ni = first(payloads, PayloadType.NONCE)
  if (!sap || !ke || !ni || ni.data.length < NONCE_MIN_LEN || ni.data.length > NONCE_MAX_LEN) {
    engine.stats.rxMalformed++
    engine.sendInitNotify(msg, from, [notify(NotifyType.INVALID_SYNTAX)])
    return
  }
  if (engine.countHalfOpen() >= engine.opts.cookieThreshold) {
    const c = findNotify(payloads, NotifyType.COOKIE)
    if (!c || !engine.cookies.check(c.data, ni.data, from.address, h.spiI)) {
      engine.stats.cookiesSent++
      engine.sendInitNotify(msg, from, [notify(NotifyType.COOKIE, engine.cookies.make(ni.data, from.address, h.spiI))])
      return
    }
  }
  const policy = engine.opts.ikePolicy
  const preferKe = { ...policy, groups: policy.groups.includes(ke.group) ? [ke.group] : policy.groups }
  const sel = selectIke(sap.proposals, preferKe) ?? selectIke(sap.proposals, policy)
  if (!sel) {
    engine.sendInitNotify(msg, from, [notify(NotifyType.NO_PROPOSAL_CHOSEN)])
    return
  }
  if (sel.suite.group !== ke.group) {
    engine.stats.invalidKeSent++
    engine.sendInitNotify(msg, from, [notify(NotifyType.INVALID_KE_PAYLOAD, groupData(sel.suite.group))])
    return
  }
  const dh = dhGenerate(ke.group)
  let gir: Buffer
  try {
    gir = dh.computeSecret(ke.data)
  } catch {
    engine.sendInitNotify(msg, from, [notify(NotifyType.INVALID_SYNTAX)])
    return
  }
  const sa = new IkeSa(engine.saDeps(), false, h.spiI, from, { kind: 'init-replied', sinceMs: engine.deps.clock.now() })
  sa.spiR = engine.newIkeSpi()
  sa.ni = ni.data
  sa.nr = engine.nonce()
  sa.suite = sel.suite
  sa.keys = deriveIkeSaKeys(
    sel.suite.prf,
    sel.suite.aead,
    skeyseedInitial(sel.suite.prf, sa.ni, sa.nr, gir),
    sa.ni,
    sa.nr,
    sa.spiI,
    sa.spiR,
  )
  const local = engine.deps.transport.local(from)
  checkNat(sa, payloads, local, from, ZERO_SPI)
  const resp: Payload[] = [
    { type: PayloadType.SA, proposals: [sel.proposal] },
    { type: PayloadType.KE, group: ke.group, data: dh.publicKey },
    { type: PayloadType.NONCE, data: sa.nr },
    ...natPayloads(sa.spiI, sa.spiR, local, from),
    notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, encodeSignatureHashes()),
  ]
  sa.initRequest = msg.raw
  sa.initResponse = encodeMessage(sa.header(ExchangeType.IKE_SA_INIT, 0, true), resp)
  sa.expectedId = 1
  engine.register(sa)
  engine.halfOpen.set(key, sa)
  sa.after(engine.opts.halfOpenTimeoutMs, () => {
    if (sa.state.kind === 'init-replied') engine.dropSa(sa, 'half-open timeout')
  })
  engine.send(sa.initResponse, from)
}

export async function handleAuthRequest(
  engine: IkeEngine,
  sa: IkeSa,
  p: Payload[],
  id: number,
  from: Endpoint,
): Promise<void> {
  const { opts } = engine
  const fail = (why: string): void => {
    engine.stats.authFailures++
    engine.deps.log.info('ike.auth.failed', { from: from.address, peer: sa.peerId, why })
    sa.respond(ExchangeType.IKE_AUTH, id, [notify(NotifyType.AUTHENTICATION_FAILED)], from)
    engine.dropSa(sa, `auth failed: ${why}`)
  }
  if (sa.initiator || sa.state.kind !== 'init-replied') {
    sa.respond(ExchangeType.IKE_AUTH, id, [notify(NotifyType.INVALID_SYNTAX)], from)
    return
  }
  for (const [k, v] of engine.halfOpen) if (v === sa) engine.halfOpen.delete(k)
  const idi = first(p, PayloadType.IDi)
  const auth = first(p, PayloadType.AUTH)
  const peerId = fqdnOf(idi)
  if (!idi || !auth || !peerId) return fail('missing or non-FQDN IDi / AUTH')
  const idrReq = fqdnOf(first(p, PayloadType.IDr))
  if (first(p, PayloadType.IDr) && idrReq !== opts.localId.toLowerCase()) return fail(`IDr ${idrReq} is not us`)
  let peer: PeerInfo | undefined
  try {
    peer = await opts.lookupPeer(peerId)
  } catch {
    peer = undefined
  }
  if (sa.state.kind !== 'init-replied') return
  sa.peerId = peerId
  if (!peer) return fail('unknown or revoked peer')
  sa.peer = peer
  const suite = sa.suite!
  const keys = sa.keys!
  const iOctets = signedOctets(suite.prf, sa.initRequest!, sa.nr, keys.skPi, encodeId(idi))
  if (!verifyAuth(engine, sa, peer, auth.method, auth.data, iOctets)) return fail('AUTH did not verify')
  const idr = idPayload(PayloadType.IDr, opts.localId)
  const rOctets = signedOctets(suite.prf, sa.initResponse!, sa.ni, keys.skPr, encodeId(idr))
  let authOut: Payload
  try {
    authOut = authPayload(engine, sa, rOctets, peer)
  } catch {
    return fail('no credentials')
  }
  sa.peerMobike = opts.mobike && findNotify(p, NotifyType.MOBIKE_SUPPORTED) !== undefined
  if (findNotify(p, NotifyType.INITIAL_CONTACT))
    for (const other of [...engine.sas.values()])
      if (other !== sa && other.peerId === peerId && other.state.kind === 'established')
        engine.dropSa(other, 'initial contact')
  const resp: Payload[] = [idr, authOut, ...(sa.peerMobike ? [notify(NotifyType.MOBIKE_SUPPORTED)] : [])]
  const spiIn = engine.newChildSpi()
  const sel = selectChild(first(p, PayloadType.SA)?.proposals ?? [], opts.childPolicy, undefined, numberToSpi(spiIn))
  const tsi = first(p, PayloadType.TSi)?.selectors
  const tsr = first(p, PayloadType.TSr)?.selectors
  let child: ChildSa | undefined
  if (!sel) resp.push(notify(NotifyType.NO_PROPOSAL_CHOSEN))
  else if (!tsOfferCoversHost(tsi, peer.ula) || !tsOfferCoversHost(tsr, opts.localUla))
    resp.push(notify(NotifyType.TS_UNACCEPTABLE))
  else {
    const km = deriveChildKeys(suite.prf, keys.skD, sel.suite.aead, sa.ni, sa.nr)
    child = {
      spiIn,
      spiOut: spiToNumber(sel.peerSpi),
      suite: sel.suite,
      keyIn: km.keyItoR,
      keyOut: km.keyRtoI,
      createdAtMs: engine.deps.clock.now(),
      retiring: false,
    }
    resp.push(
      { type: PayloadType.SA, proposals: [sel.proposal] },
      { type: PayloadType.TSi, selectors: [tsForHost(peer.ula)] },
      { type: PayloadType.TSr, selectors: [tsForHost(opts.localUla)] },
    )
  }
  if (!child) engine.childSpis.delete(spiIn)
  sa.respond(ExchangeType.IKE_AUTH, id, resp, from)
  engine.established(sa)
  if (child) engine.addChild(sa, child)
}
