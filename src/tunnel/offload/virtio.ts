// struct virtio_net_hdr (virtio 1.x section 5.1.6, include/uapi/linux/virtio_net.h): the 10 octets in front of
// every packet read from or written to a TUN device opened with IFF_VNET_HDR (TUNSETVNETHDRSZ left at its default
// of 10, so no num_buffers field). Little-endian on the hosts we run on (x86-64, arm64; TUN uses the host order
// unless TUNSETVNETLE/BE say otherwise).
//
//   flags u8 | gso_type u8 | hdr_len le16 | gso_size le16 | csum_start le16 | csum_offset le16

export const VNET_HDR_LEN = 10

export const VNET_FLAGS = 0
export const VNET_GSO_TYPE = 1
export const VNET_HDR_LEN_OFFSET = 2
export const VNET_GSO_SIZE = 4
export const VNET_CSUM_START = 6
export const VNET_CSUM_OFFSET = 8

/** flags */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
export const VIRTIO_NET_HDR_F_DATA_VALID = 2

/** gso_type */
export const VIRTIO_NET_HDR_GSO_NONE = 0
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1
/** UFO, refused: the kernel no longer produces it for TUN reads. */
export const VIRTIO_NET_HDR_GSO_UDP = 3
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4
/** USO (Linux >= 6.2): UDP segmentation, one UDP header per segment. */
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5
export const VIRTIO_NET_HDR_GSO_ECN = 0x80

/** TCP and UDP checksum field offsets from the start of their header (csum_offset). */
export const TCP_CSUM_OFFSET = 16
export const UDP_CSUM_OFFSET = 6

export interface VnetHdr {
  flags: number
  gsoType: number
  hdrLen: number
  gsoSize: number
  csumStart: number
  csumOffset: number
}

export function readVnetHdr(b: Buffer, at: number, into: VnetHdr): void {
  into.flags = b[at + VNET_FLAGS]!
  into.gsoType = b[at + VNET_GSO_TYPE]!
  into.hdrLen = b.readUInt16LE(at + VNET_HDR_LEN_OFFSET)
  into.gsoSize = b.readUInt16LE(at + VNET_GSO_SIZE)
  into.csumStart = b.readUInt16LE(at + VNET_CSUM_START)
  into.csumOffset = b.readUInt16LE(at + VNET_CSUM_OFFSET)
}

export function writeVnetHdr(b: Buffer, at: number, h: VnetHdr): void {
  b[at + VNET_FLAGS] = h.flags
  b[at + VNET_GSO_TYPE] = h.gsoType
  b.writeUInt16LE(h.hdrLen, at + VNET_HDR_LEN_OFFSET)
  b.writeUInt16LE(h.gsoSize, at + VNET_GSO_SIZE)
  b.writeUInt16LE(h.csumStart, at + VNET_CSUM_START)
  b.writeUInt16LE(h.csumOffset, at + VNET_CSUM_OFFSET)
}
