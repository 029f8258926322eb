// Linux TUN device (Documentation/networking/tuntap.rst): open /dev/net/tun, ioctl(TUNSETIFF) with
// IFF_TUN | IFF_NO_PI through koffi, so each read or write is exactly one IP packet with no extra header.
//
// Reading: the fd is wrapped in a libuv pipe handle and read by epoll on the event loop, into one reused
// buffer (net.Socket's `onread`), so reading allocates nothing per packet. fs.read would park a thread-pool
// thread in a blocking read() and hang process exit (RECIPES.md section 6); net.Socket({ fd }) refuses a
// character device. Writing: fs.writeSync, one write() per packet, because a stream write may coalesce.
// Why koffi and not an N-API addon: see docs/tunnel.md ("TUN device") for the measurement.
//
// Offloads (docs/tunnel.md "TUN offloads"): unless turned off, the device is opened with IFF_VNET_HDR and
// TUNSETOFFLOAD (checksum, TSO4/TSO6, and USO4/USO6 where the kernel has them, Linux >= 6.2). Every read and write
// then starts with a virtio_net_hdr (offload/virtio.ts); reads can be TCP super-packets of up to 64 KiB, cut here
// by offload/segment.ts for onPacket/onPacketView (the tunnel's threads read the fd themselves and cut what they
// read), and writes may be super-packets built by offload/coalesce.ts. When the kernel refuses either ioctl the
// device is opened again exactly as before (no virtio header, one packet per read and write).

import { execFileSync } from 'node:child_process'
import { closeSync, constants, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { Socket } from 'node:net'
import type { PacketHandler, TunDevice } from '../../io/tun.js'
import { Segmenter } from '../offload/segment.js'
import { VNET_HDR_LEN } from '../offload/virtio.js'

/** _IOW('T', 202, int) */
const TUNSETIFF = 0x400454ca
const IFF_TUN = 0x0001
const IFF_NO_PI = 0x1000
const IFF_VNET_HDR = 0x4000
/** _IOW('T', 208, unsigned int) */
const TUNSETOFFLOAD = 0x400454d0
/** include/uapi/linux/if_tun.h */
export const TUN_F_CSUM = 0x01
export const TUN_F_TSO4 = 0x02
export const TUN_F_TSO6 = 0x04
export const TUN_F_USO4 = 0x20
export const TUN_F_USO6 = 0x40
/** What we ask for, best first: TSO and USO; TSO alone (kernels before 6.2 refuse the USO bits with EINVAL). */
const OFFLOAD_CHOICES = [
  TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
  TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
] as const
/** struct ifreq: char ifr_name[IFNAMSIZ = 16]; short ifr_flags; ... (40 octets on x86-64) */
const IFREQ_LEN = 40
const IFNAMSIZ = 16
const IFREQ_FLAGS_OFFSET = 16
/** Largest packet read from the device: the MTU cap is enforced above; this only bounds one read. */
const READ_BUFFER_LEN = 65_536 + 16

export const TUN_DEFAULT_NAME = 'autotun0'
/**
 * Default MTU. The exact figure for a 1500-octet IPv4 path is 1438 (1500 - 20 IPv4 - 8 UDP - 8 ESP header
 * - 8 IV - 16 ICV = 1440 for payload + padding + 2-octet trailer, a multiple of 4, so 1438 + 2 = 1440, no
 * padding). 1400 also fits an IPv6 outer header (40) and PPPoE's 1492 with margin; see docs/tunnel.md.
 */
export const TUN_DEFAULT_MTU = 1400
export const TUN_TXQUEUELEN = 1000

interface Koffi {
  load(lib: string): { func(sig: string): (...args: unknown[]) => number }
  errno(): number
}

interface PipeHandle {
  open(fd: number): number
}

type ViewHandler = (buf: Buffer, off: number, len: number) => void

export class TunError extends Error {
  override readonly name = 'TunError'
  constructor(
    message: string,
    readonly code: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/**
 * Reads packets from a TUN fd on the current thread's event loop (epoll through a libuv pipe handle) into one
 * reused buffer. The handle owns the fd: closing the reader closes it (a worker thread reads a dup()).
 */
export class TunReader {
  readonly #sock: Socket
  /** Read errors after open (the device went away): counted, reading stops. */
  errors = 0

  constructor(fd: number, onView: ViewHandler) {
    const pipeWrap = (process as unknown as { binding(n: string): Record<string, unknown> }).binding('pipe_wrap')
    const Pipe = pipeWrap.Pipe as new (type: number) => PipeHandle
    const SOCKET = (pipeWrap.constants as { SOCKET: number }).SOCKET
    const handle = new Pipe(SOCKET)
    const rc = handle.open(fd)
    if (rc !== 0) throw new TunError(`uv_pipe_open on the TUN fd failed (${rc})`, 'EPIPEOPEN')
    const buffer = Buffer.allocUnsafe(READ_BUFFER_LEN)
    this.#sock = new Socket({
      handle,
      readable: true,
      writable: false,
      onread: { buffer, callback: (n: number, b: Uint8Array) => onView(b as Buffer, 0, n) },
    } as ConstructorParameters<typeof Socket>[0] & { handle: unknown })
    this.#sock.on('error', () => {
      this.errors++
    })
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#sock.destroyed) return resolve()
      this.#sock.once('close', () => resolve())
      this.#sock.destroy()
    })
  }
}

/** dup(2) through koffi: a second fd for the same TUN queue, for a reader on another thread. */
export function dupFd(fd: number): number {
  const libc = requireKoffi().load('libc.so.6')
  const dup = libc.func('int dup(int fd)')
  const r = dup(fd)
  if (r < 0) throw new TunError(`dup(${fd}) failed`, 'EDUP')
  return r
}

/** close(2) through koffi, for fds from dupFd (fs.closeSync warns about fds it did not open, in workers). */
export function closeFd(fd: number): void {
  requireKoffi().load('libc.so.6').func('int close(int fd)')(fd)
}

const EPERM = 1
const EBUSY = 16

/** What a failed TUNSETIFF means and what to do about it (issue 13: the bare errno told a user nothing). */
export function tunSetIffMessage(name: string, errno: number): string {
  if (errno === EPERM)
    return (
      `cannot create the TUN device ${name}: operation not permitted. The tunnel needs root or CAP_NET_ADMIN ` +
      '(sudo autotunnel up ..., or a systemd unit with AmbientCapabilities=CAP_NET_ADMIN); ' +
      'or run `autotunnel up --no-tun` for publishing and name resolution without the tunnel'
    )
  if (errno === EBUSY)
    return `cannot create the TUN device ${name}: it exists and is in use (another agent?); choose another with --tun NAME`
  return `cannot create the TUN device ${name}: ioctl(TUNSETIFF) failed, errno ${errno}`
}

/** CAP_NET_ADMIN's bit in the capability sets of /proc/PID/status (linux/capability.h). */
const CAP_NET_ADMIN = 12

/**
 * Why `open({ name })` would fail for lack of privileges, or undefined when it may succeed: checked before the agent
 * touches anything (a refused start publishes nothing), from the effective capabilities in /proc/self/status.
 */
export function tunPermissionProblem(name: string, status?: string): string | undefined {
  let text = status
  if (text === undefined) {
    if (!existsSync('/dev/net/tun'))
      return 'cannot create the TUN device: /dev/net/tun is missing (modprobe tun, or give the container /dev/net/tun); or run `autotunnel up --no-tun` for publishing and name resolution without the tunnel'
    try {
      text = readFileSync('/proc/self/status', 'utf8')
    } catch {
      return undefined
    }
  }
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(text)?.[1]
  if (hex === undefined) return undefined
  return (BigInt(`0x${hex}`) >> BigInt(CAP_NET_ADMIN)) & 1n ? undefined : tunSetIffMessage(name, EPERM)
}

/** How a device was opened: with the virtio header and which offloads, or why not. */
export interface TunOffload {
  /** Reads and writes carry a virtio_net_hdr. */
  readonly vnetHdr: boolean
  /** TUN_F_* flags the kernel accepted (0 without vnetHdr). */
  readonly flags: number
  /** Why there are none: 'off' (asked not to), or the ioctl and errno that refused. */
  readonly refused?: string
}

export class LinuxTun implements TunDevice {
  readonly name: string
  readonly mtu: number
  readonly offload: TunOffload
  readonly #fd: number
  #reader: TunReader | undefined
  #view: ViewHandler = () => {}
  #closed = false
  #segmenter: Segmenter | undefined
  /** All-zero virtio header, then room for one plain packet being written. */
  readonly #plain = Buffer.alloc(VNET_HDR_LEN + 65_535)
  /** Reads refused by the segmenter (malformed virtio header or packet): counted as 'bad_vnet_hdr'. */
  vnetDrops = 0

  private constructor(name: string, mtu: number, fd: number, offload: TunOffload) {
    this.name = name
    this.mtu = mtu
    this.#fd = fd
    this.offload = offload
  }

  /** True when reads and writes carry a virtio_net_hdr. */
  get vnetHdr(): boolean {
    return this.offload.vnetHdr
  }

  /** The device fd (for a reader on another thread: dupFd it first). */
  get fd(): number {
    return this.#fd
  }

  /**
   * Creates (or attaches to) TUN device `name` and brings it up with `mtu`, the /128 `localUla`, and no
   * router solicitation or DAD (so the read loop sees only traffic). Needs CAP_NET_ADMIN.
   */
  static open(
    opts: {
      name?: string
      mtu?: number
      localUla?: string
      /** Ask for offloads (default; AUTOTUNNEL_TUN_OFFLOAD=0 turns them off). */
      offload?: boolean
      /** TUN_F_* sets to try, best first (tests pass one the kernel refuses, to exercise the fallback). */
      offloadChoices?: readonly number[]
    } = {},
  ): LinuxTun {
    const want = opts.name ?? TUN_DEFAULT_NAME
    if (Buffer.byteLength(want) >= IFNAMSIZ) throw new TunError(`interface name too long: ${want}`, 'EINVAL')
    const mtu = opts.mtu ?? TUN_DEFAULT_MTU
    let koffi: Koffi
    try {
      // koffi is CommonJS; createRequire keeps this file loadable where koffi is absent (then open() fails).
      koffi = requireKoffi()
    } catch (e) {
      throw new TunError('koffi is not installed', 'ENOKOFFI', { cause: e })
    }
    const libc = koffi.load('libc.so.6')
    const ioctl = libc.func('int ioctl(int fd, unsigned long request, ...)')
    const wantOffload = (opts.offload ?? true) && process.env.AUTOTUNNEL_TUN_OFFLOAD !== '0'
    let refused: string | undefined = wantOffload ? undefined : 'off'
    if (wantOffload) {
      const r = openDevice(koffi, ioctl, want, IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
      if (typeof r === 'number') refused = `TUNSETIFF(IFF_VNET_HDR) errno ${r}`
      else {
        for (const flags of opts.offloadChoices ?? OFFLOAD_CHOICES) {
          // The flags are the ioctl's argument itself, not a pointer to them.
          if (ioctl(r.fd, TUNSETOFFLOAD, 'unsigned long', flags) >= 0)
            return LinuxTun.#configure(r.fd, r.name, mtu, opts.localUla, { vnetHdr: true, flags })
          refused = `TUNSETOFFLOAD errno ${koffi.errno()}`
        }
        // Offloads refused: close (a non-persistent device goes with its fd) and open it as before.
        closeSync(r.fd)
      }
    }
    const r = openDevice(koffi, ioctl, want, IFF_TUN | IFF_NO_PI)
    if (typeof r === 'number') throw new TunError(tunSetIffMessage(want, r), r === EPERM ? 'EPERM' : 'ETUNSETIFF')
    return LinuxTun.#configure(r.fd, r.name, mtu, opts.localUla, { vnetHdr: false, flags: 0, refused })
  }

  static #configure(fd: number, name: string, mtu: number, localUla: string | undefined, off: TunOffload): LinuxTun {
    try {
      for (const [k, v] of [
        ['accept_ra', 0],
        ['router_solicitations', 0],
        ['accept_dad', 0],
      ] as const)
        writeFileSync(`/proc/sys/net/ipv6/conf/${name}/${k}`, String(v))
      // txqueuelen 1000 (Ethernet's default; TUN's is 500): room for a burst while the reading thread waits
      // for a CPU (on a shared 2-core box the 500-packet queue overflowed under a 64-octet UDP flood).
      ip(['link', 'set', 'dev', name, 'mtu', String(mtu), 'txqueuelen', String(TUN_TXQUEUELEN), 'up'])
      if (localUla) ip(['-6', 'addr', 'replace', `${localUla}/128`, 'dev', name, 'nodad'])
    } catch (e) {
      closeSync(fd)
      throw new TunError(`configuring ${name} failed: ${(e as Error).message}`, 'ECONFIG', { cause: e })
    }
    return new LinuxTun(name, mtu, fd, off)
  }

  /** Route a peer's ULA (/128) into this device; only peers' ULAs are routed here. */
  addRoute(ula: string): void {
    ip(['-6', 'route', 'replace', `${ula}/128`, 'dev', this.name])
  }
  removeRoute(ula: string): void {
    try {
      ip(['-6', 'route', 'del', `${ula}/128`, 'dev', this.name])
    } catch {
      // already gone with the device
    }
  }

  /** Reading starts with the first onPacket/onPacketView call (a device may be read by a worker instead). */
  onPacket(handler: PacketHandler): void {
    this.#view = (b, off, len) => handler(Buffer.from(b.subarray(off, off + len)))
    this.#startReading()
  }

  /** Like onPacket, but lends a view of the reused read buffer, valid only during the call. */
  onPacketView(handler: ViewHandler): void {
    this.#view = handler
    this.#startReading()
  }

  #startReading(): void {
    if (this.#reader || this.#closed) return
    if (this.vnetHdr) {
      const seg = new Segmenter()
      this.#segmenter = seg
      const fn: ViewHandler = (b, off, len) => this.#view(b, off, len)
      this.#reader = new TunReader(this.#fd, (b, off, len) => {
        if (seg.segment(b, off, len, fn) !== undefined) this.vnetDrops++
      })
    } else this.#reader = new TunReader(this.#fd, (b, off, len) => this.#view(b, off, len))
  }

  /** Super-packets read and the segments they were cut into (0 without offloads). */
  segmentStats(): { superPackets: number; segments: number } {
    return { superPackets: this.#segmenter?.superPackets ?? 0, segments: this.#segmenter?.segments ?? 0 }
  }

  /** Writes one plain IP packet (with offloads: behind an all-zero virtio header, in the same write). */
  write(buf: Buffer, offset: number, length: number): void {
    if (this.#closed) return
    if (this.vnetHdr) {
      // Behind an all-zero header, copied into one buffer: one write(2) (writev would need arrays per packet).
      const w = this.#plain
      buf.copy(w, VNET_HDR_LEN, offset, offset + length)
      writeSync(this.#fd, w, 0, VNET_HDR_LEN + length)
    } else writeSync(this.#fd, buf, offset, length)
  }

  /** Writes a packet that starts with its virtio header (a coalesced super-packet); only with vnetHdr. */
  writeVnet(buf: Buffer, offset: number, length: number): void {
    if (this.#closed) return
    writeSync(this.#fd, buf, offset, length)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // Closing the reader's pipe handle closes the fd; the last close removes the device.
    if (this.#reader) await this.#reader.close()
    else closeSync(this.#fd)
  }
}

type Ioctl = (fd: number, req: number, ...args: unknown[]) => number

/** open + TUNSETIFF with `flags`: the fd and the kernel's name for the device, or the errno. */
function openDevice(koffi: Koffi, ioctl: Ioctl, want: string, flags: number): { fd: number; name: string } | number {
  let fd: number
  try {
    fd = openSync('/dev/net/tun', constants.O_RDWR)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EOPEN'
    throw new TunError(
      `cannot open /dev/net/tun (${code}): ${code === 'ENOENT' ? 'this kernel or container has no TUN driver (modprobe tun, or give the container /dev/net/tun)' : 'needs root or CAP_NET_ADMIN'}; or run \`autotunnel up --no-tun\` (no tunnel: publishing and name resolution only)`,
      code,
      { cause: e },
    )
  }
  const ifr = Buffer.alloc(IFREQ_LEN)
  ifr.write(want, 0, 'latin1')
  ifr.writeUInt16LE(flags, IFREQ_FLAGS_OFFSET)
  if (ioctl(fd, TUNSETIFF, 'uint8_t *', ifr) < 0) {
    const errno = koffi.errno()
    closeSync(fd)
    return errno
  }
  return { fd, name: ifr.toString('latin1', 0, IFNAMSIZ).replace(/\0.*$/s, '') }
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

function requireKoffi(): Koffi {
  return createRequire(import.meta.url)('koffi') as Koffi
}
