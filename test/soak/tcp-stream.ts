// A TCP stream for the soak run (test/soak/), run inside a lab host:
//   node tcp-stream.js recv ADDR PORT        listens, prints `accept` per connection, `bytes N` (running total
//                                            of the current connection) every TICK_MS, `close REASON` at its end
//   node tcp-stream.js send ADDR PORT        connects, prints `connected`, writes CHUNK bytes every TICK_MS while
//                                            less than MAX_QUEUED is queued, prints `close REASON` and exits
// One line per event on stdout, so the driver learns of a break at once.
import { createConnection, createServer, type Socket } from 'node:net'

const TICK_MS = 100
const CHUNK = 8192
const MAX_QUEUED = 65536

function say(line: string): void {
  process.stdout.write(`${line}\n`)
}

function receive(addr: string, port: number): void {
  const server = createServer((sock: Socket) => {
    let bytes = 0
    say('accept')
    sock.on('data', (b: Buffer) => {
      bytes += b.length
    })
    const tick = setInterval(() => say(`bytes ${bytes}`), TICK_MS)
    const end = (reason: string): void => {
      clearInterval(tick)
      say(`close ${reason}`)
      sock.destroy()
    }
    sock.on('error', (e: NodeJS.ErrnoException) => end(e.code ?? e.message))
    sock.on('end', () => end('eof'))
  })
  server.listen(port, addr, () => say('listening'))
}

function send(addr: string, port: number): void {
  const sock = createConnection({ host: addr, port })
  const chunk = Buffer.alloc(CHUNK, 0x61)
  let tick: NodeJS.Timeout | undefined
  sock.on('connect', () => {
    say('connected')
    tick = setInterval(() => {
      if (sock.writableLength < MAX_QUEUED) sock.write(chunk)
    }, TICK_MS)
  })
  const end = (reason: string): void => {
    clearInterval(tick)
    say(`close ${reason}`)
    process.exit(0)
  }
  sock.on('error', (e: NodeJS.ErrnoException) => end(e.code ?? e.message))
  sock.on('close', () => end('closed'))
}

const [mode, addr, port] = process.argv.slice(2)
if (!addr || !port || (mode !== 'recv' && mode !== 'send')) {
  process.stderr.write('usage: tcp-stream recv|send ADDR PORT\n')
  process.exit(2)
}
if (mode === 'recv') receive(addr, Number(port))
else send(addr, Number(port))
