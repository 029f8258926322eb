// What the engine tells the outside about its SAs: Child SA keys for the data plane, IKE SA summaries.

import { cipherName } from './proposals.js'
import type { ChildSa, IkeSa } from './sa.js'
import type { ChildSaKeys, IkeSaSummary } from './types.js'

export function childSaKeys(sa: IkeSa, c: ChildSa, localUla: string, replaces?: number): ChildSaKeys {
  return {
    peerId: sa.peerId ?? '',
    peerUla: sa.peer?.ula ?? '',
    localUla,
    spiIn: c.spiIn,
    spiOut: c.spiOut,
    alg: cipherName(c.suite.aead),
    keyIn: c.keyIn,
    keyOut: c.keyOut,
    esn: c.suite.esn,
    remote: sa.remote,
    ...(replaces === undefined ? {} : { replaces }),
  }
}

export function ikeSaSummary(sa: IkeSa): IkeSaSummary {
  const s = sa.suite
  return {
    peerId: sa.peerId ?? '',
    spiI: sa.spiI.toString('hex'),
    spiR: sa.spiR.toString('hex'),
    initiator: sa.initiator,
    remote: sa.remote,
    suite: s ? `${cipherName(s.aead)}-prf${s.prf.hash}-g${s.group}` : '',
    establishedAt: sa.establishedAtMs,
    natLocal: sa.natLocal,
    natRemote: sa.natRemote,
    mobike: sa.peerMobike,
    peerAuth: sa.authKey === 'psk' ? 'psk' : sa.authKey ? 'signature' : 'none',
    children: sa.children.map((c) => ({
      spiIn: c.spiIn,
      spiOut: c.spiOut,
      alg: cipherName(c.suite.aead),
      esn: c.suite.esn,
    })),
  }
}
