// Tunnel counters: traffic totals and one drop counter per reason. Malformed or hostile input is never an
// exception in the packet path: it is dropped here and counted (STYLE.md section 7).

export const DROP_REASONS = [
  // receive path (UDP -> TUN)
  'udp_short', // shorter than 4 octets and not a keepalive: neither ESP nor IKE (RFC 3948 section 2)
  'truncated', // ESP shorter than header + IV + trailer + ICV
  'unknown_spi',
  'replay', // duplicate or older than the window (RFC 4303 section 3.4.3)
  'icv', // integrity check failed (RFC 4303 section 3.4.4)
  'bad_trailer', // pad length too large or padding not 1, 2, 3, ...
  'bad_next_header', // inner protocol other than IPv6 (41)
  'bad_inner', // inner packet not a well-formed IPv6 header
  'ts_mismatch', // inner source/destination are not the SA's pair of ULAs (traffic selectors)
  'ike_no_handler', // IKE message arrived before anyone registered onIke
  'tun_write_error',
  'tun_queue_full', // the ring to the TUN-writing thread is full
  // send path (TUN -> UDP)
  'not_ipv6',
  'bad_source', // source is not the local ULA
  'no_peer', // destination is not a peer's ULA
  'no_endpoint', // peer has an SA but no known outer address
  'no_sa_queue_full', // waiting for keys, queue full: oldest dropped
  'no_sa_queue_expired', // waited for keys longer than noSaQueueMs
  'too_big', // larger than the MTU
  'tx_queue_full', // send queue full: oldest dropped
  'pool_exhausted', // every slab is in flight in the socket
  'seq_exhausted', // the SA's sequence space is used up; rekey needed (RFC 4303 section 3.3.3)
  'send_error',
  'bad_vnet_hdr', // a TUN read with offloads whose virtio header or headers are malformed (offload/segment.ts)
] as const

export type DropReason = (typeof DROP_REASONS)[number]

export interface TunnelCounters {
  rxPackets: number
  rxBytes: number
  txPackets: number
  txBytes: number
  ikeRx: number
  ikeTx: number
  keepaliveRx: number
  keepaliveTx: number
  roams: number
  drops: Record<DropReason, number>
}

export function newCounters(): TunnelCounters {
  const drops = {} as Record<DropReason, number>
  for (const r of DROP_REASONS) drops[r] = 0
  return {
    rxPackets: 0,
    rxBytes: 0,
    txPackets: 0,
    txBytes: 0,
    ikeRx: 0,
    ikeTx: 0,
    keepaliveRx: 0,
    keepaliveTx: 0,
    roams: 0,
    drops,
  }
}

export function copyCounters(c: TunnelCounters): TunnelCounters {
  return { ...c, drops: { ...c.drops } }
}

export function totalDrops(c: TunnelCounters): number {
  let n = 0
  for (const r of DROP_REASONS) n += c.drops[r]
  return n
}
