// A site gateway's miniupnpd over the life of a run: started when the lab is built, stopped and started again by
// restart-gateway and set-public-ip (lab.ts). Apart from daemons.ts, which writes the daemon's configuration and
// spawns it, because this is about the run's state: which process is the site's daemon, its stale pid file, its
// firewall chain, and when it last started.
import { rmSync } from 'node:fs'
import { miniupnpdFiles, startMiniupnpd } from './daemons.js'
import { MINIUPNPD_FLUSH } from './nft.js'
import { dev, type Site } from './plan.js'
import { inNs, LabError, pidAlive, runOk } from './sh.js'
import { type RunState, saveState } from './state.js'
import { stopProcess } from './teardown.js'

/** Starts the site's miniupnpd in its gateway namespace `netns` and records it in the run's state. */
export async function startSiteMiniupnpd(s: RunState, netns: string, site: Site): Promise<void> {
  // miniupnpd's BOOTID.UPNP.ORG is the second it started in. UDA 1.1 wants a new BOOTID on every restart, and an
  // agent ignores an ssdp:alive whose BOOTID it has already acted on (src/portmap/mapper.ts), so a restart within
  // the second of the last start (restart-gateway then set-public-ip in one test: 200 ms apart) looked like no
  // restart at all to a UPnP client, which then missed the new address. No real gateway restarts that fast:
  // start in a later second than the last start.
  const last = s.sites[site.name]?.miniupnpdStartSec
  const wait = last === undefined ? 0 : (last + 1) * 1000 - Date.now()
  if (wait > 0) await new Promise((r) => setTimeout(r, wait))
  const p = await startMiniupnpd(s.dir, netns, {
    site: site.name,
    wan: dev.wan(s.tag),
    lan: dev.bridge(s.tag),
    lanCidr: site.lan,
    stunHost: s.topology.core.stun[0],
    natpmp: site.upnp.natpmp || site.upnp.pcp,
    upnp: site.upnp.upnp,
    minLifetimeSec: site.upnp.minLifetimeSec,
    behindNat: site.nat === 'double',
  })
  s.procs = s.procs.filter((x) => x.name !== p.name).concat(p)
  // Read after it is ready, so its own clock reading (its BOOTID) is at or before this second.
  const st = s.sites[site.name]
  if (st) st.miniupnpdStartSec = Math.floor(Date.now() / 1000)
  saveState(s)
}

/** Stops the site's miniupnpd, removes its stale pid file and flushes its firewall chain. */
export async function stopSiteMiniupnpd(s: RunState, netns: string, x: Site): Promise<void> {
  const p = s.procs.find((q) => q.name === `miniupnpd-${x.name}`)
  if (p) stopProcess(p.pid, 0)
  if (p && pidAlive(p.pid)) throw new LabError(`miniupnpd of ${x.name} (pid ${p.pid}) did not exit`)
  // Killed, miniupnpd leaves its pid file, and the next one refuses to start ("MiniUPnPd is already running.
  // EXITING") while that pid still exists, which a zombie does: stopProcess returns once the daemon has exited,
  // but only its parent reaps it. That is us when the lab was made in this process; after `autotunnel lab up`
  // it is init (here reaping orphans every ~2 s) or a subreaper, so `lab restart-gateway` from the command line
  // failed. The exited daemon holds no socket or rule any more; only the file is stale.
  rmSync(miniupnpdFiles(s.dir, x.name).pid, { force: true })
  s.procs = s.procs.filter((q) => q !== p)
  saveState(s)
  await runOk(inNs(netns, ['nft', '-f', '-']), { input: MINIUPNPD_FLUSH })
}
