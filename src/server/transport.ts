// What a listener hands to the dispatcher for each DNS message, whatever the transport. Handlers answer through
// `reply` (exactly once, or not at all to drop) and may keep `send` to push unsolicited messages later: LLQ
// events to a UDP client, DNS Push messages on a DSO session (RFC 8490) over TLS/TCP.

export type TransportKind = 'udp' | 'tcp' | 'tls'

export interface PeerInfo {
  readonly transport: TransportKind
  readonly address: string
  readonly port: number
  /** "ADDR:PORT" of the listener that received the message. */
  readonly local: string
}

/** A TCP or TLS connection carrying length-prefixed DNS messages (RFC 1035 4.2.2, RFC 7766, RFC 7858). */
export interface StreamConnection {
  readonly id: number
  readonly peer: PeerInfo
  /** Per-connection state for handlers (a DSO session, the TSIG user that authenticated it, ...). */
  readonly state: Map<string, unknown>
  /** Writes one message with its length prefix; false when the connection is closed. */
  send(msg: Buffer): boolean
  /**
   * Writes a message already framed with its 2-octet length prefix, as it is: one Buffer shared by many
   * connections (a DNS Push fan-out) is written to each, never copied or changed. False when closed.
   */
  sendFramed?(frame: Buffer): boolean
  /**
   * The socket's file descriptor while octets may be written to it directly (plain TCP, open, nothing queued in
   * node or libuv), else -1; a direct write's rest must go through sendFramed at once (fan-write.ts).
   */
  directFd?(): number
  /** Octets written but still held by this process (not yet taken by the kernel); 0 when everything went out. */
  readonly queued?: number
  /** Milliseconds without traffic and without outstanding requests before the server closes it; 0 = never. */
  setIdleTimeout(ms: number): void
  close(): void
  onClose(fn: () => void): void
  readonly closed: boolean
}

export interface InboundContext {
  readonly peer: PeerInfo
  /** Sends the answer to this message; undefined drops it. Call exactly once per message. */
  reply(msg: Buffer | undefined): void
  /** Sends an unsolicited message to the same peer (UDP: from the same socket; stream: on the connection). */
  send(msg: Buffer): void
  /** Set for TCP and TLS. */
  readonly connection?: StreamConnection
}

export type MessageSink = (msg: Buffer, ctx: InboundContext) => void
