// What arrives on the agent's shared UDP port from STUN and TURN servers (RFC 8489, RFC 8656): STUN messages
// and ChannelData. Runs decodeStun, the attribute decoders the clients apply to a response (XOR-RELAYED-ADDRESS,
// XOR-PEER-ADDRESS, MESSAGE-INTEGRITY), ChannelData framing, and the TURN client's receive entry point `offer`,
// which must never throw. A decoded message re-encodes to the same attributes.
import { WireError } from '../../../src/dns/wire/errors.js'
import { FakeClock } from '../../../src/io/clock.fake.js'
import { nullLogger } from '../../../src/io/log.js'
import { FakeRandom } from '../../../src/io/random.fake.js'
import { checkIntegrity, decodeAddress, decodeStun, encodeStun, StunAttr } from '../../../src/traversal/stun.js'
import { TurnClient } from '../../../src/traversal/turn.js'
import { decodeChannelData, encodeChannelData, longTermKey } from '../../../src/traversal/turn-wire.js'
import { assertRoundTrip, expectOnly } from './harness.js'

const KEY = longTermKey('alice', 'example.org', 'secret')
const ADDRESS_ATTRS = new Set<number>([StunAttr.XOR_RELAYED_ADDRESS, StunAttr.XOR_PEER_ADDRESS])

function turnClient(): TurnClient {
  const deps = { clock: new FakeClock(), random: new FakeRandom(), log: nullLogger, send: () => {} }
  return new TurnClient(deps, { address: '192.0.2.1', port: 3478, username: 'alice', password: 'secret' })
}

const TURN = turnClient()

export function fuzz(data: Buffer): void {
  TURN.offer(data, () => {})
  const cd = decodeChannelData(data)
  if (cd) assertRoundTrip('ChannelData', cd, decodeChannelData(encodeChannelData(cd.channel, cd.data)))
  const m = expectOnly([WireError], () => decodeStun(data))
  if (m === undefined) return
  for (const a of m.attrs)
    if (ADDRESS_ATTRS.has(a.type)) expectOnly([WireError], () => decodeAddress(a.value, a.offset, 'fuzz', data))
  checkIntegrity(data, m, KEY)
  const again = decodeStun(encodeStun(m.type, m.txid, m.attrs))
  const strip = (x: typeof m) => x.attrs.map((a) => ({ type: a.type, value: a.value }))
  assertRoundTrip('STUN attributes', strip(m), strip(again))
}
