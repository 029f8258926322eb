// The network lab as a TypeScript API: `const lab = await Lab.up({ sites: ['home'] })`, `await lab.exec('desktop',
// ['ping', '-c1', '198.51.100.10'])`, `await lab.down()`. The `autotunnel lab` CLI (lab/cli.ts) drives the same class
// on a run persisted in its run directory, so one process may build a lab and another operate or remove it.
import { existsSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { STATE_DIR_ENV } from '../src/agent/state-dir.js'
import { SSO_DEFAULT_ENV, SSO_SHARE_DIR_ENV } from '../src/sso/share-dir.js'
import { spawnLogged, startCoturn, waitCoturn } from './daemons.js'
import { writeEtcOverlays } from './etc.js'
import { startSiteMiniupnpd, stopSiteMiniupnpd } from './gateway.js'
import { ensureTools, loadTopology, track, untrack } from './guard.js'
import { linkRules } from './nft.js'
import { dev, hostBatch, linkBatch, nsScripts, planState, siteOf, uplinkNode } from './plan.js'
import { type ExecResult, inNs, LabCommandError, LabError, pidAlive, type RunOptions, run, runOk } from './sh.js'
import {
  type LossDirection,
  listRuns,
  loadState,
  newRunName,
  newTag,
  type RunState,
  runDir,
  runsRoot,
  saveState,
  validRunName,
} from './state.js'
import { liveNamespaces, stopProcess, teardown } from './teardown.js'
import {
  gatewayAddress,
  inCidr,
  intToIp,
  isDocumentationAddress,
  parseCidr,
  resolveTopology,
  type Topology,
} from './topology.js'

export { LabError }

export interface LabUpOptions {
  /** Run name (namespaces are `atl-<name>-<node>`); default a fresh random one. */
  name?: string
  /** 'standard' (default), a Topology object, or a path to a JSON topology file. */
  topology?: 'standard' | Topology | string
  /** Build only these sites (internet hosts are always built). */
  sites?: string[]
  /** Tear the run down on SIGINT/SIGTERM and at process exit (default true). */
  signals?: boolean
  /** false: the run outlives this process (the CLI's `lab up`); default true. */
  owned?: boolean
}

export interface LabProcess {
  pid: number
  log: string
  /** SIGTERM to its process group, SIGKILL after 1.5 s. */
  stop(): void
}

export interface LinkOptions {
  /** Which direction drops: `both` (default), `up` (from host or site), `down` (towards it). */
  direction?: LossDirection
}

export class Lab {
  #s: RunState

  private constructor(s: RunState) {
    this.#s = s
  }

  /** Builds a topology and returns once every host can route and every miniupnpd has learned its address. */
  static async up(opts: LabUpOptions = {}): Promise<Lab> {
    if (process.getuid?.() !== 0) throw new LabError('the lab needs root (network namespaces)')
    await ensureTools()
    Lab.gc()
    const name = opts.name ?? newRunName()
    if (!validRunName(name)) throw new LabError(`bad run name ${JSON.stringify(name)}: [a-z0-9-], at most 20`)
    if (loadState(name)) throw new LabError(`run ${name} exists; \`autotunnel lab down ${name}\` first`)
    const topo = resolveTopology(loadTopology(opts.topology), opts.sites)
    const owned = opts.owned ?? true
    const dir = runDir(name)
    rmSync(dir, { recursive: true, force: true })
    const s = planState(name, newTag(), dir, topo, owned ? process.pid : null)
    const present = liveNamespaces()
    const clash = Object.values(s.nodes).filter((n) => present.has(n.ns))
    if (clash.length) throw new LabError(`namespace ${clash[0]!.ns} exists: is run ${name} still up?`)
    saveState(s)
    const lab = new Lab(s)
    if (opts.signals ?? true) track(lab)
    try {
      await lab.#build()
    } catch (e) {
      lab.downSync(true)
      throw e
    }
    if (!owned) untrack(lab)
    return lab
  }

  /** Opens an existing run (made by another process). */
  static attach(name: string): Lab {
    const s = loadState(name)
    if (!s) throw new LabError(`no lab run ${name}`)
    return new Lab(s)
  }

  /** Runs with a state file; `live` is false when its namespaces are gone (after a reboot) or its owner died. */
  static list(): { name: string; live: boolean; createdAt: string; dir: string; owner: number | null }[] {
    const present = liveNamespaces()
    return listRuns().map((s) => ({
      name: s.name,
      live: present.has(s.nodes.core!.ns) && (s.ownerPid === null || pidAlive(s.ownerPid)),
      createdAt: s.createdAt,
      dir: s.dir,
      owner: s.ownerPid,
    }))
  }

  /** Deletes the directories that down({ keepLogs: true }) left (logs of failed or interrupted runs). */
  static cleanLogs(): string[] {
    const root = runsRoot()
    if (!existsSync(root)) return []
    const gone = readdirSync(root).filter((d) => existsSync(join(root, d, 'state.down.json')))
    for (const d of gone) rmSync(join(root, d), { recursive: true, force: true })
    return gone
  }

  /** Removes runs whose owning process died without tearing them down. */
  static gc(): string[] {
    const gone: string[] = []
    for (const s of listRuns()) {
      if (s.ownerPid !== null && !pidAlive(s.ownerPid)) {
        teardown(s, false)
        gone.push(s.name)
      }
    }
    return gone
  }

  async #build(): Promise<void> {
    const s = this.#s
    await runOk(['ip', '-batch', '-'], {
      input: `${Object.values(s.nodes)
        .map((n) => `netns add ${n.ns}`)
        .join('\n')}\n`,
    })
    writeEtcOverlays(s)
    await runOk(['ip', '-batch', '-'], { input: linkBatch(s) })
    const scripts = nsScripts(s)
    const core = s.nodes.core!.ns
    const coreReady = (async () => {
      await runOk(inNs(core, ['sh', '-s']), { input: scripts.get('core')! })
      const p = startCoturn(s.dir, core, s.topology.core.stun)
      s.procs.push(p)
      saveState(s)
      await waitCoturn(core, s.topology.core.stun, p)
    })()
    const others = [...scripts].filter(([n]) => n !== 'core')
    await Promise.all([coreReady, ...others.map(([n, sc]) => runOk(inNs(s.nodes[n]!.ns, ['sh', '-s']), { input: sc }))])
    await Promise.all(
      s.topology.sites.filter((x) => x.miniupnpd).map((x) => startSiteMiniupnpd(s, this.netnsOf(x.name), x)),
    )
  }

  get name(): string {
    return this.#s.name
  }

  /** A copy of the run's state (names, addresses, processes, link conditions). */
  get state(): RunState {
    return structuredClone(this.#s)
  }

  get dir(): string {
    return this.#s.dir
  }

  /** Every host: internet hosts first, then site hosts. */
  hosts(): string[] {
    return Object.keys(this.#s.hosts)
  }

  sites(): string[] {
    return this.#s.topology.sites.map((x) => x.name)
  }

  /** Namespace of a host, a site's gateway (by site name), `<site>-cgn` or `core`. */
  netnsOf(node: string): string {
    const n = this.#s.nodes[node]
    if (!n) throw new LabError(`no host, site or node ${node} in run ${this.name}`)
    return n.ns
  }

  addressOf(host: string): string {
    return this.#host(host).address
  }

  /** The site a host is in now (null for a host on the internet). */
  siteOf(host: string): string | null {
    return this.#host(host).site
  }

  publicIpOf(site: string): string {
    const x = this.#s.sites[site]
    if (!x) throw new LabError(`no site ${site} in run ${this.name}`)
    return x.publicIp
  }

  /** Address of a site's gateway on its LAN (the NAT-PMP/PCP server, UPnP at http://ADDR:2189/rootDesc.xml). */
  gatewayOf(site: string): string {
    return gatewayAddress(siteOf(this.#s, site).lan)
  }

  #host(host: string) {
    const h = this.#s.hosts[host]
    if (!h) throw new LabError(`no host ${host} in run ${this.name}`)
    return h
  }

  /**
   * The node's default agent state directory (AUTOTUNNEL_STATE_DIR, src/agent/state-dir.ts): the lab's hosts share
   * the machine's disk, where a machine has its own /var/lib, so `autotunnel up` and `status` without --state find
   * the node's own agent. Inside the run directory: removed with the run.
   */
  stateDirOf(node: string): string {
    return join(this.#s.dir, 'state', node)
  }

  /**
   * Where the node's agent puts what single sign-on shares with the SSO user (SSO_SHARE_DIR_ENV, src/sso/host.ts;
   * /var/lib/autotunnel/sso on a machine): per node, as the hosts share one disk. Inside the run directory.
   */
  ssoShareDirOf(node: string): string {
    return join(this.#s.dir, 'sso', node)
  }

  #env(node: string): Record<string, string> {
    return {
      [STATE_DIR_ENV]: this.stateDirOf(node),
      [SSO_SHARE_DIR_ENV]: this.ssoShareDirOf(node),
      [SSO_DEFAULT_ENV]: 'off',
    }
  }

  /** argv that runs `argv` inside `node` (with the node's state directory): for callers with their own stdio. */
  argv(node: string, argv: string[]): string[] {
    const env = Object.entries(this.#env(node)).map(([k, v]) => `${k}=${v}`)
    return inNs(this.netnsOf(node), ['env', ...env, ...argv])
  }

  /** Runs a command in `node` and collects its output; never throws for a non-zero exit. */
  exec(node: string, argv: string[], opts: RunOptions = {}): Promise<ExecResult> {
    return run(this.argv(node, argv), opts)
  }

  /** Like exec(), but throws LabCommandError on a non-zero exit. */
  async execOk(node: string, argv: string[], opts: RunOptions = {}): Promise<ExecResult> {
    const full = this.argv(node, argv)
    const r = await run(full, opts)
    if (r.code !== 0) throw new LabCommandError(full, r)
    return r
  }

  /** Resolves once something in `node` listens on `port` (UDP or TCP, any address); throws after `timeoutMs`. */
  async waitListening(node: string, port: number, opts: { proto?: 'udp' | 'tcp'; timeoutMs?: number } = {}) {
    const flag = opts.proto === 'tcp' ? '-Hltn' : '-Hlun'
    const deadline = Date.now() + (opts.timeoutMs ?? 5000)
    for (;;) {
      const r = await this.exec(node, ['ss', flag, `sport = :${port}`])
      if (r.stdout.trim()) return
      if (Date.now() > deadline) throw new LabError(`${node}: nothing listening on ${opts.proto ?? 'udp'} ${port}`)
      await new Promise((res) => setTimeout(res, 10))
    }
  }

  /** Starts a long-running process in `node`; output goes to `<run dir>/<logName>.log`; stopped by down(). */
  spawn(node: string, argv: string[], opts: { logName?: string; env?: NodeJS.ProcessEnv } = {}): LabProcess {
    const s = this.#s
    const base = opts.logName ?? `${node}-${argv[0]?.split('/').pop() ?? 'proc'}`
    let logName = base
    for (let i = 2; s.procs.some((p) => p.name === logName); i++) logName = `${base}-${i}`
    const env = { ...(opts.env ?? process.env), ...this.#env(node) }
    const p = spawnLogged(this.netnsOf(node), argv, logName, join(s.dir, `${logName}.log`), env)
    s.procs.push(p)
    saveState(s)
    return { pid: p.pid, log: p.log, stop: () => stopProcess(p.pid) }
  }

  /** Moves a host to another site: new link to that site's gateway, new address, new default route. */
  async move(host: string, site: string): Promise<void> {
    const s = this.#s
    const h = this.#host(host)
    if (h.site === null) throw new LabError(`${host} is on the internet; only site hosts move`)
    const to = siteOf(s, site)
    if (h.site === site) throw new LabError(`${host} is already in ${site}`)
    const lan = parseCidr(to.lan)
    const used = new Set(
      Object.values(s.hosts)
        .filter((x) => x.site === site)
        .map((x) => x.address),
    )
    let n = lan.network + 10
    while (used.has(intToIp(n))) n++
    if (n >= lan.network + lan.size - 1) throw new LabError(`site ${site} has no free address`)
    const address = intToIp(n)
    const hostNs = this.netnsOf(host)
    const gwNs = this.netnsOf(site)
    const port = dev.port(s.tag, h.index)
    await runOk(inNs(hostNs, ['ip', 'link', 'del', dev.eth(s.tag)]))
    await runOk([
      'ip',
      'link',
      'add',
      port,
      'netns',
      gwNs,
      'type',
      'veth',
      'peer',
      'name',
      dev.eth(s.tag),
      'netns',
      hostNs,
    ])
    await Promise.all([
      runOk(inNs(gwNs, ['ip', '-batch', '-']), {
        input: `link set ${port} master ${dev.bridge(s.tag)}\nlink set ${port} up\n`,
      }),
      runOk(inNs(hostNs, ['ip', '-batch', '-']), {
        input: `${hostBatch(s.tag, address, lan.prefixLen, gatewayAddress(to.lan), false).join('\n')}\n`,
      }),
    ])
    h.site = site
    h.address = address
    saveState(s)
    await this.#applyLink(host)
  }

  /** Restarts a site's gateway: conntrack flushed; miniupnpd restarted with its mappings and lease file gone. */
  async restartGateway(site: string): Promise<void> {
    const x = siteOf(this.#s, site)
    const gwNs = this.netnsOf(site)
    if (x.miniupnpd) {
      await stopSiteMiniupnpd(this.#s, this.netnsOf(x.name), x)
      rmSync(join(this.#s.dir, `miniupnpd-${site}.leases`), { force: true })
    }
    await runOk(inNs(gwNs, ['conntrack', '-F']))
    if (x.nat === 'double') await runOk(inNs(this.netnsOf(`${site}-cgn`), ['conntrack', '-F']))
    if (x.miniupnpd) await startSiteMiniupnpd(this.#s, this.netnsOf(x.name), x)
  }

  /** Changes a site's public address: the uplink's address, the core's route, and miniupnpd (restarted, keeping leases). */
  async setPublicIp(site: string, addr: string): Promise<void> {
    const s = this.#s
    const x = siteOf(s, site)
    if (!isDocumentationAddress(addr)) throw new LabError(`${addr} is not in 192.0.2/24, 198.51.100/24, 203.0.113/24`)
    const taken = [
      s.topology.core.router,
      ...s.topology.core.stun,
      ...s.topology.internet.map((h) => h.address),
      ...Object.entries(s.sites)
        .filter(([n]) => n !== site)
        .map(([, v]) => v.publicIp),
    ]
    if (taken.includes(addr) || s.topology.sites.some((y) => y.nat === 'none' && inCidr(addr, parseCidr(y.lan)))) {
      throw new LabError(`${addr} is already used in run ${this.name}`)
    }
    const old = s.sites[site]!.publicIp
    if (old === addr) return
    const upNs = this.netnsOf(uplinkNode(x))
    const wan = dev.wan(s.tag)
    const coreDev = s.coreDevs[site]!
    const mini = x.miniupnpd
    if (mini) await stopSiteMiniupnpd(this.#s, this.netnsOf(x.name), x)
    await runOk(inNs(upNs, ['ip', '-batch', '-']), {
      input: `addr add ${addr}/32 dev ${wan}\naddr del ${old}/32 dev ${wan}\nroute replace default via ${s.topology.core.router} dev ${wan} onlink\n`,
    })
    const coreCmds = [`route del ${old}/32 dev ${coreDev}`, `route add ${addr}/32 dev ${coreDev}`]
    if (x.nat === 'none') coreCmds.push(`route replace ${x.lan} via ${addr} dev ${coreDev} onlink`)
    await runOk(inNs(this.netnsOf('core'), ['ip', '-batch', '-']), { input: `${coreCmds.join('\n')}\n` })
    await runOk(inNs(upNs, ['conntrack', '-F']))
    s.sites[site]!.publicIp = addr
    saveState(s)
    if (mini) await startSiteMiniupnpd(this.#s, this.netnsOf(x.name), x)
  }

  /** Drops `percent` % of the packets crossing a link (site name: its uplink; host name: its access link). */
  async loss(link: string, percent: number, opts: LinkOptions = {}): Promise<void> {
    if (!(percent >= 0 && percent <= 100)) throw new LabError(`loss must be 0..100, got ${percent}`)
    const l = this.#link(link)
    l.lossPercent = percent
    l.lossDirection = opts.direction ?? 'both'
    await this.#applyLink(link)
  }

  /** Cuts a link: every packet in both directions is dropped until restore(). */
  async cut(link: string): Promise<void> {
    this.#link(link).cut = true
    await this.#applyLink(link)
  }

  /** Undoes cut(); loss set by loss() stays. */
  async restore(link: string): Promise<void> {
    this.#link(link).cut = false
    await this.#applyLink(link)
  }

  #link(link: string) {
    if (!this.#s.hosts[link] && !this.#s.sites[link]) throw new LabError(`no link ${link}: name a host or a site`)
    this.#s.links[link] ??= { lossPercent: 0, lossDirection: 'both', cut: false }
    return this.#s.links[link]
  }

  /** The link's two ends, upstream first: [core or gateway side, host or site side]. */
  #linkEnds(link: string): [{ ns: string; dev: string }, { ns: string; dev: string }] {
    const s = this.#s
    const h = s.hosts[link]
    if (h && h.site !== null) {
      return [
        { ns: this.netnsOf(h.site), dev: dev.port(s.tag, h.index) },
        { ns: this.netnsOf(link), dev: dev.eth(s.tag) },
      ]
    }
    const core = { ns: this.netnsOf('core'), dev: s.coreDevs[link]! }
    if (h) return [core, { ns: this.netnsOf(link), dev: dev.eth(s.tag) }]
    return [core, { ns: this.netnsOf(uplinkNode(siteOf(s, link))), dev: dev.wan(s.tag) }]
  }

  async #applyLink(link: string): Promise<void> {
    const l = this.#s.links[link]
    if (!l) return
    const [up, down] = this.#linkEnds(link)
    const upLoss = l.lossDirection === 'down' ? 0 : l.lossPercent
    const downLoss = l.lossDirection === 'up' ? 0 : l.lossPercent
    await Promise.all([
      runOk(inNs(up.ns, ['nft', '-f', '-']), { input: linkRules(up.dev, l.cut, upLoss) }),
      runOk(inNs(down.ns, ['nft', '-f', '-']), { input: linkRules(down.dev, l.cut, downLoss) }),
    ])
    saveState(this.#s)
  }

  /** Removes everything of the run: processes, namespaces (with their veths), and the run directory. */
  async down(opts: { keepLogs?: boolean } = {}): Promise<void> {
    this.downSync(opts.keepLogs ?? false)
  }

  downSync(keepLogs = false): void {
    untrack(this)
    const fresh = existsSync(join(this.#s.dir, 'state.json')) ? loadState(this.#s.name) : null
    teardown(fresh ?? this.#s, keepLogs)
  }

  /** Hosts, sites and addresses, as printed by `autotunnel lab up`. */
  summary(): LabSummary {
    const s = this.#s
    return {
      name: s.name,
      dir: s.dir,
      core: { netns: this.netnsOf('core'), router: s.topology.core.router, stun: s.topology.core.stun },
      sites: s.topology.sites.map((x) => ({
        name: x.name,
        nat: x.nat,
        publicIp: s.sites[x.name]!.publicIp,
        lan: x.lan,
        gateway: gatewayAddress(x.lan),
        netns: this.netnsOf(x.name),
        ...(x.miniupnpd ? { upnp: { natpmp: x.upnp.natpmp, pcp: x.upnp.pcp, upnp: x.upnp.upnp } } : {}),
      })),
      hosts: Object.entries(s.hosts).map(([name, h]) => ({
        name,
        site: h.site,
        address: h.address,
        publicIp: h.site === null || siteOf(s, h.site).nat === 'none' ? h.address : s.sites[h.site]!.publicIp,
        netns: this.netnsOf(name),
      })),
    }
  }
}

export interface LabSummary {
  name: string
  dir: string
  core: { netns: string; router: string; stun: [string, string] }
  sites: {
    name: string
    nat: string
    publicIp: string
    lan: string
    gateway: string
    netns: string
    upnp?: { natpmp: boolean; pcp: boolean; upnp: boolean }
  }[]
  hosts: { name: string; site: string | null; address: string; publicIp: string; netns: string }[]
}
