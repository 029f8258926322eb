// The TUN edge (after wireguard-go's tun.Device): IPv6 packets in and out, one packet per call.
// The Linux implementation lives in src/tunnel/tun/; FakeTun in tun.fake.ts joins two agents in tests.

export type PacketHandler = (packet: Buffer) => void

export interface TunDevice {
  readonly name: string
  readonly mtu: number
  /** Called once per IP packet read from the device. The buffer is the caller's to keep. */
  onPacket(handler: PacketHandler): void
  /** Writes exactly one IP packet. */
  write(buf: Buffer, offset: number, length: number): void
  close(): Promise<void>
}
