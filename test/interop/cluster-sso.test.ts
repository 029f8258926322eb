// Single sign-on on a cluster (docs/cluster.md, docs/sso.md): three `autotunnel server` nodes on one throwaway
// PostgreSQL share each account's SSO state. Hosts enrolled through different nodes get certificates from one
// account CA (else their KDCs would not trust each other), certificates issued through one node are fetched through
// another, and a host revoked through any node (the CLI's `account revoke-host`, the agent's ATREVOKE UPDATE) is
// refused its records and certificates by every node within the feed delay, until `account unrevoke-host`.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { exchange, queryMessage } from '../../src/dns/client/query.js'
import type { UpdateRequest, UpdateResult } from '../../src/dns/client/update.js'
import { extendedErrorText } from '../../src/dns/ede.js'
import { signMessage } from '../../src/dns/tsig.js'
import { updateMessage } from '../../src/dns/update.js'
import { Rcode } from '../../src/dns/wire/header.js'
import type { Message } from '../../src/dns/wire/message.js'
import { type RR, RRClass, RRType } from '../../src/dns/wire/rr-table.js'
import { generateKeyPair } from '../../src/sso/certs.js'
import { type Enrolled, enrol } from '../../src/sso/enrol-client.js'
import {
  CertKindCode,
  certName,
  decodeCertRdata,
  encodeRevokeRdata,
  enrolName,
  SsoRRType,
} from '../../src/sso/enrol-codec.js'
import { type NotifyServer, run, threeNodeCluster, tsigKey, ZONE } from './notify-harness.js'
import { BIN } from './server-harness.js'

const cluster = threeNodeCluster()
const [n1, n2, n3] = cluster.nodes
const D = `alice.${ZONE}`

/**
 * Message IDs across all requests: the same UPDATE sent again within a second must not be the same signed bytes,
 * which the node's TSIG replay cache would answer with the first answer (a retry that could never see a change).
 */
let nextId = 1
/** Alice's signed requests to one node only (the agent's UpdateClient would move to whichever node SRV names). */
function through(n: NotifyServer) {
  const key = tsigKey(cluster.alice)
  const send = (m: Message): Promise<Message> =>
    exchange({ host: '127.0.0.1', port: n.dnsPort }, m, {
      timeoutMs: 2000,
      encode: (x) => signMessage(x, key, { timeSigned: Math.floor(Date.now() / 1000), fudge: 300 }).wire,
    })
  return {
    async update(req: UpdateRequest): Promise<UpdateResult> {
      const res = await send(updateMessage({ id: nextId++ & 0xffff, zone: req.zone, updates: req.updates }))
      return { rcode: res.rcode, leaseSec: undefined, via: `udp:127.0.0.1:${n.dnsPort}`, res } as UpdateResult
    },
    query: (name: string, type: number) => send(queryMessage(name, type)),
    send,
  }
}

async function enrolThrough(n: NotifyServer, host: string): Promise<Enrolled> {
  const c = through(n)
  return enrol(
    { sink: c, query: c },
    {
      zone: ZONE,
      domain: D,
      host,
      account: 'alice',
      kdcKeys: (await generateKeyPair()).keys,
      clientKeys: (await generateKeyPair()).keys,
      clientPrincipals: [],
    },
  )
}

const der = (c: { rawData: ArrayBuffer }): Buffer => Buffer.from(c.rawData)
/** The bound for an account change to be in force on every node. */
const BOUND_MS = 1000

/** The CA and certificates an ATCERT query through `n` returns for `host`, or its rcode and EDE text. */
async function fetchCerts(n: NotifyServer, host: string) {
  const m = await through(n).query(certName(host, D), SsoRRType.ATCERT)
  const certs = new Map<number, Buffer>()
  for (const rr of m.answers)
    if (rr.type === SsoRRType.ATCERT && rr.data && 'raw' in rr.data) {
      const c = decodeCertRdata(rr.data.raw)
      certs.set(c.kind, c.der)
    }
  return { rcode: m.rcode, ede: extendedErrorText(m.edns), certs }
}

const aaaa = (host: string, address: string): RR => ({
  name: `${host}.${D}.`,
  type: RRType.AAAA,
  class: RRClass.IN,
  ttl: 60,
  data: { address },
})
const publish = async (n: NotifyServer, rr: RR) => (await through(n).update({ zone: `${ZONE}.`, updates: [rr] })).rcode

/** Retries `fn` until it returns true or `ms` pass; the time it took. */
async function within(ms: number, what: string, fn: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now()
  for (;;) {
    if (await fn()) return performance.now() - t0
    if (performance.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const cli = async (...args: string[]) => {
  const r = await run(process.execPath, [BIN, 'account', ...args, '--store', cluster.pg.url])
  assert.equal(r.code, 0, `account ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

test('hosts enrolled through different nodes get certificates of one account CA, fetched through any node', async () => {
  // Both first requests at once: two nodes make a CA each, one wins, both issue from the winner.
  const [laptop, desktop] = await Promise.all([enrolThrough(n1, 'laptop'), enrolThrough(n2, 'desktop')])
  assert.deepEqual(der(laptop.ca), der(desktop.ca), 'one CA for the account on every node')
  assert.ok(await desktop.client.verify({ publicKey: laptop.ca.publicKey, signatureOnly: true }))
  assert.ok(await laptop.kdc.verify({ publicKey: desktop.ca.publicKey, signatureOnly: true }))
  const phone = await enrolThrough(n3, 'phone')
  assert.deepEqual(der(phone.ca), der(laptop.ca), 'the third node too')
  // What node 1 issued to the laptop, through node 3.
  const got = await fetchCerts(n3, 'laptop')
  assert.equal(got.rcode, Rcode.NOERROR)
  assert.deepEqual(got.certs.get(CertKindCode.CLIENT), der(laptop.client))
  assert.deepEqual(got.certs.get(CertKindCode.KDC), der(laptop.kdc))
  assert.deepEqual(got.certs.get(CertKindCode.CA), der(laptop.ca))
})

test('account revoke-host --store: every node refuses the host within 1 s; unrevoke-host lifts it everywhere', async () => {
  assert.equal(await publish(n1, aaaa('tablet', 'fd00::71')), Rcode.NOERROR)
  await enrolThrough(n2, 'tablet')
  const out = await cli('revoke-host', 'alice', 'tablet')
  assert.match(out, new RegExp(`revoked host tablet of alice: deleted\\n  tablet\\.${D.replace(/\./g, '\\.')}`))
  const refusedOn = async (n: NotifyServer, addr: string) => (await publish(n, aaaa('tablet', addr))) === Rcode.REFUSED
  const ms = [
    await within(BOUND_MS, 'node 2 refuses the revoked host', () => refusedOn(n2, 'fd00::72')),
    await within(BOUND_MS, 'node 3 refuses the revoked host', () => refusedOn(n3, 'fd00::73')),
  ]
  const certs = await fetchCerts(n1, 'tablet')
  assert.equal(certs.rcode, Rcode.REFUSED, 'no certificates from node 1')
  assert.match(certs.ede ?? '', /host tablet of alice was revoked.*unrevoke-host alice tablet/)
  await assert.rejects(enrolThrough(n3, 'tablet'), /refused the KDC certificate request: REFUSED/)
  // Other hosts of the account are untouched.
  assert.equal(await publish(n2, aaaa('laptop', 'fd00::1')), Rcode.NOERROR)

  assert.match(await cli('unrevoke-host', 'alice', 'tablet'), /tablet of alice may publish its records/)
  ms.push(
    await within(
      BOUND_MS,
      'node 3 takes the host again',
      async () => (await publish(n3, aaaa('tablet', 'fd00::74'))) === Rcode.NOERROR,
    ),
  )
  await enrolThrough(n2, 'tablet')
  assert.match(await cli('unrevoke-host', 'alice', 'tablet'), /tablet of alice was not revoked/)
  console.log(
    `# revoke-host and unrevoke-host in force on other nodes after ${ms.map((m) => m.toFixed(0)).join(', ')} ms`,
  )
})

test("the agent's ATREVOKE through node 1: node 1 refuses at once, nodes 2 and 3 within 1 s, certificates gone", async () => {
  await enrolThrough(n3, 'watch')
  assert.equal(await publish(n2, aaaa('watch', 'fd00::81')), Rcode.NOERROR)
  const revoke: RR = {
    name: enrolName('watch', D),
    type: SsoRRType.ATREVOKE,
    class: RRClass.IN,
    ttl: 0,
    data: { raw: encodeRevokeRdata() },
  }
  assert.equal(await publish(n1, revoke), Rcode.NOERROR)
  assert.equal(await publish(n1, aaaa('watch', 'fd00::82')), Rcode.REFUSED, 'node 1 from its answer on')
  const ms = [
    await within(BOUND_MS, 'node 2', async () => (await publish(n2, aaaa('watch', 'fd00::83'))) === Rcode.REFUSED),
    await within(BOUND_MS, 'node 3', async () => (await publish(n3, aaaa('watch', 'fd00::84'))) === Rcode.REFUSED),
  ]
  assert.equal((await fetchCerts(n2, 'watch')).rcode, Rcode.REFUSED)
  await cli('unrevoke-host', 'alice', 'watch')
  // Unrevoked, the host enrols again; what it was issued before the revocation is not handed out.
  await within(
    BOUND_MS,
    'node 2 takes the host again',
    async () => (await publish(n2, aaaa('watch', 'fd00::85'))) === Rcode.NOERROR,
  )
  const after = await fetchCerts(n2, 'watch')
  assert.equal(after.rcode, Rcode.NOERROR)
  assert.deepEqual([...after.certs.keys()], [CertKindCode.CA], 'only the CA until it enrols again')
  console.log(`# ATREVOKE in force on nodes 2 and 3 after ${ms.map((m) => m.toFixed(0)).join(', ')} ms`)
})
