// Small helpers over payload lists: building and finding Notify, typed lookups.

import { NOTIFY_ERROR_MAX, PayloadType } from './constants.js'
import {
  type AuthPayload,
  type DeletePayload,
  type IdPayload,
  isKnown,
  type KePayload,
  type KnownPayload,
  type NoncePayload,
  type NotifyPayload,
  type Payload,
  type SaPayload,
  type TsPayload,
} from './payloads.js'

export function notify(
  notifyType: number,
  data: Buffer = Buffer.alloc(0),
  protocolId = 0,
  spi?: Buffer,
): NotifyPayload {
  return { type: PayloadType.NOTIFY, protocolId, spi: spi ?? Buffer.alloc(0), notifyType, data }
}

type ByType = {
  [PayloadType.SA]: SaPayload
  [PayloadType.KE]: KePayload
  [PayloadType.IDi]: IdPayload
  [PayloadType.IDr]: IdPayload
  [PayloadType.AUTH]: AuthPayload
  [PayloadType.NONCE]: NoncePayload
  [PayloadType.NOTIFY]: NotifyPayload
  [PayloadType.DELETE]: DeletePayload
  [PayloadType.TSi]: TsPayload
  [PayloadType.TSr]: TsPayload
}

export function first<T extends keyof ByType>(payloads: readonly Payload[], type: T): ByType[T] | undefined {
  return payloads.find((p): p is KnownPayload => isKnown(p) && p.type === type) as ByType[T] | undefined
}
export function all<T extends keyof ByType>(payloads: readonly Payload[], type: T): ByType[T][] {
  return payloads.filter((p): p is KnownPayload => isKnown(p) && p.type === type) as ByType[T][]
}
export function findNotify(payloads: readonly Payload[], notifyType: number): NotifyPayload | undefined {
  return all(payloads, PayloadType.NOTIFY).find((n) => n.notifyType === notifyType)
}
/** The first error Notify (type < 16384), if any. */
export function errorNotify(payloads: readonly Payload[]): NotifyPayload | undefined {
  return all(payloads, PayloadType.NOTIFY).find((n) => n.notifyType <= NOTIFY_ERROR_MAX)
}

/** INVALID_KE_PAYLOAD data: the accepted group, two octets (RFC 7296 3.10.1). */
const GROUP_LEN = 2
export function groupData(group: number): Buffer {
  const b = Buffer.alloc(GROUP_LEN)
  b.writeUInt16BE(group, 0)
  return b
}
export function groupOf(data: Buffer): number | undefined {
  return data.length >= GROUP_LEN ? data.readUInt16BE(0) : undefined
}

export function spiToNumber(b: Buffer): number {
  return b.readUInt32BE(0)
}
export function numberToSpi(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0, 0)
  return b
}
