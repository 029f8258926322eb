// Shared helpers of the dns-*.test.ts interop tests: a BIND `named` on a random loopback port with a temp
// directory, UDP/TCP exchanges, and Debian's dnspython (/usr/bin/python3) as an independent implementation.
// Everything started here is stopped by t.after, also when the test fails.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { frameTcp, TcpDeframer } from '../../src/dns/tcp-framing.js'
import { emptyMessage, encodeMessage } from '../../src/dns/wire/message.js'
import { RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { freePort, LOOPBACK } from './ports.js'

export { freePort, LOOPBACK }

export function tempDir(t: TestContext, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface BindKey {
  name: string
  /** BIND spelling: hmac-sha256, hmac-md5, ... */
  algorithm: string
  secretB64: string
}

export interface Named {
  port: number
  dir: string
  log: () => string
}

/** Starts `named -g` for `zone` (records in zone-file syntax after the SOA/NS/A lines) with update-policy for `keys`. */
export async function startNamed(t: TestContext, zone: string, keys: BindKey[], records = ''): Promise<Named> {
  const dir = tempDir(t, 'dns-named-')
  const port = await freePort()
  const keyConf = keys.map((k) => `key "${k.name}" { algorithm ${k.algorithm}; secret "${k.secretB64}"; };`).join('\n')
  const grants = keys.map((k) => `grant ${k.name} zonesub ANY;`).join(' ')
  writeFileSync(
    join(dir, 'named.conf'),
    `${keyConf}
options {
  directory "${dir}"; pid-file "${dir}/named.pid"; session-keyfile "${dir}/session.key";
  managed-keys-directory "${dir}";
  listen-on port ${port} { ${LOOPBACK}; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; notify no; allow-query { any; };
  allow-transfer { ${keys.length > 0 ? keys.map((k) => `key ${k.name};`).join(' ') : 'none;'} };
};
controls { };
zone "${zone}" { type primary; file "${dir}/zone.db"; update-policy { ${grants} }; };
`,
  )
  writeFileSync(
    join(dir, 'zone.db'),
    `$TTL 60
@ IN SOA ns.${zone}. hostmaster.${zone}. ( 1 3600 600 86400 60 )
  IN NS ns.${zone}.
ns IN A ${LOOPBACK}
${records}
`,
  )
  const proc: ChildProcess = spawn('named', ['-g', '-n', '1', '-c', join(dir, 'named.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  proc.stderr?.on('data', (d: Buffer) => {
    log += d.toString()
  })
  t.after(async () => {
    if (proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r))
      proc.kill('SIGTERM')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))])
      if (proc.exitCode === null) proc.kill('SIGKILL')
    }
  })
  const deadline = Date.now() + 15_000
  // named logs "running on Linux ..." and "running as: named ..." at once and the bare "running" line only after
  // "all zones loaded": waiting for the word alone let a loaded machine query before the zone was there (SERVFAIL).
  while (!/ running$/m.test(log)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`named did not start:\n${log}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  const soa = encodeMessage(emptyMessage({ id: 1, questions: [{ name: zone, type: RRType.SOA, class: RRClass.IN }] }))
  for (let i = 0; ; i++) {
    try {
      await udpExchange(port, soa, 500)
      break
    } catch (e) {
      if (i >= 10) throw new Error(`named on port ${port} does not answer: ${String(e)}\n${log}`)
    }
  }
  return { port, dir, log: () => log }
}

/** Sends one UDP datagram to 127.0.0.1:port and resolves with the first reply. */
export function udpExchange(port: number, wire: Buffer, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    const timer = setTimeout(() => {
      s.close()
      reject(new Error(`no UDP reply from port ${port}`))
    }, timeoutMs)
    s.once('message', (m) => {
      clearTimeout(timer)
      s.close()
      resolve(m)
    })
    s.once('error', (e) => {
      clearTimeout(timer)
      s.close()
      reject(e)
    })
    s.send(wire, port, LOOPBACK)
  })
}

/** Sends one framed message over TCP and collects reply messages until `done` says so (or the peer closes). */
export function tcpExchange(
  port: number,
  wire: Buffer,
  done: (msgs: Buffer[]) => boolean,
  timeoutMs = 5000,
): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const sock = new Socket()
    const de = new TcpDeframer()
    const got: Buffer[] = []
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`TCP exchange with port ${port} timed out after ${got.length} messages`))
    }, timeoutMs)
    const finish = () => {
      clearTimeout(timer)
      sock.destroy()
      resolve(got)
    }
    sock.on('data', (chunk) => {
      got.push(...de.push(chunk))
      if (done(got)) finish()
    })
    sock.on('close', finish)
    sock.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    sock.connect(port, LOOPBACK, () => sock.write(frameTcp(wire)))
  })
}

/** Runs a dnspython script with Debian's interpreter; the script reads `input` on stdin and prints JSON. */
export function dnspython(script: string, input: string): unknown {
  const r = spawnSync('/usr/bin/python3', ['-c', script], { input, encoding: 'utf8', timeout: 20_000 })
  if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** Runs a command to completion (dig, kdig, nsupdate) and returns its exit code and output. */
export function run(
  cmd: string,
  args: string[],
  input?: string,
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 20_000 })
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' }
}

/** Async variant of run, for commands that talk to a listener running in this process. */
export function runAsync(
  cmd: string,
  args: string[],
  input?: string,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => p.kill('SIGKILL'), 20_000)
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
    })
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    p.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    p.on('close', (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
    p.stdin.end(input ?? '')
  })
}
