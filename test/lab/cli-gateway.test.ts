// The gateway commands from the command line, where each `autotunnel lab ...` is its own process and so not the
// parent of the miniupnpd it restarts (issue 14: `lab restart-gateway` failed with "MiniUPnPd is already running.
// EXITING"). This process makes itself a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER): the daemons that
// `lab up` leaves behind become our children, which Node never reaps, so a killed miniupnpd stays a zombie for
// the whole test. That is the worst case of an init that reaps late (on this machine every ~2 s), made certain.
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Lab } from '../../lab/index.js'
import { run } from '../../lab/sh.js'
import { udpReceiver, udpSend } from './helpers.js'

const BIN = fileURLToPath(new URL('../../../bin/autotunnel', import.meta.url))
const PR_SET_CHILD_SUBREAPER = 36

interface Koffi {
  load(lib: string): { func(sig: string): (...args: number[]) => number }
}

function becomeSubreaper(): void {
  const koffi = createRequire(import.meta.url)('koffi') as Koffi
  const prctl = koffi
    .load('libc.so.6')
    .func('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)')
  assert.equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0, 'prctl(PR_SET_CHILD_SUBREAPER)')
}

async function cli(args: string[]): Promise<string> {
  const r = await run([BIN, 'lab', ...args])
  assert.equal(r.code, 0, `lab ${args.join(' ')}: ${r.stderr}${r.stdout}`)
  return r.stdout
}

describe('lab CLI: gateway restarts from another process', { skip: process.getuid?.() !== 0 && 'needs root' }, () => {
  const name = `tgw${process.pid.toString(36)}`
  let lab: Lab
  before(async () => {
    becomeSubreaper()
    await cli(['up', '--name', name, '--sites', 'home'])
    lab = Lab.attach(name)
  })
  after(async () => {
    await run([BIN, 'lab', 'down', name])
  })

  it('restart-gateway: miniupnpd comes back with no mappings and maps again (NAT-PMP, reachable from outside)', async () => {
    const gw = lab.gatewayOf('home')
    const before = await lab.execOk('desktop', ['natpmpc', '-g', gw, '-a', '40010', '50010', 'udp', '600'])
    assert.match(before.stdout, /Mapped public port 40010 protocol UDP to local port 50010/)
    const old = lab.state.procs.find((p) => p.name === 'miniupnpd-home')!.pid
    assert.match(await cli(['restart-gateway', name, 'home']), /gateway of home restarted/)
    const now = Lab.attach(name).state.procs.find((p) => p.name === 'miniupnpd-home')!.pid
    assert.notEqual(now, old)
    const list = await lab.execOk('desktop', ['upnpc', '-i', '-u', `http://${gw}:2189/rootDesc.xml`, '-l'])
    assert.doesNotMatch(list.stdout, /->192\.168\.1\.10:/, 'mappings survived the restart')
    const m = await lab.execOk('desktop', ['natpmpc', '-g', gw, '-a', '40011', '50011', 'udp', '600'])
    assert.match(m.stdout, /Mapped public port 40011 protocol UDP to local port 50011/)
    const got = await udpReceiver(lab, 'desktop', 50011)
    await udpSend(lab, 'server', lab.publicIpOf('home'), 40011, 'hello after restart-gateway')
    assert.equal(await got.received(), 'hello after restart-gateway')
  })

  it('set-public-ip (which restarts miniupnpd too): the gateway reports the new address and maps there', async () => {
    assert.match(await cli(['set-public-ip', name, 'home', '203.0.113.112']), /home public address is now/)
    const gw = lab.gatewayOf('home')
    const g = await lab.execOk('desktop', ['natpmpc', '-g', gw])
    assert.match(g.stdout, /Public IP address : 203\.0\.113\.112\b/)
    const m = await lab.execOk('desktop', ['natpmpc', '-g', gw, '-a', '40012', '50012', 'udp', '600'])
    assert.match(m.stdout, /Mapped public port 40012 protocol UDP to local port 50012/)
    const got = await udpReceiver(lab, 'desktop', 50012)
    await udpSend(lab, 'server', '203.0.113.112', 40012, 'hello at the new address')
    assert.equal(await got.received(), 'hello at the new address')
  })
})
