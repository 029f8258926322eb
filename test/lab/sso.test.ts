// Issue 11's done-when story in the lab with real MIT Kerberos and OpenSSH: two agents (desktop at home, laptop in
// the cafe) with --sso-user alice. Each lab host has its own /etc/krb5.conf, /etc/krb5.keytab and /etc/ssh (own
// host keys) through /etc/netns/NS/ overlays, so the agent's writes there are what it does on a machine. sshd runs
// in the desktop with its stock Debian configuration plus the agent's drop-in.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { chmod, cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { holdOnHost } from '../../lab/etc.js'
import { type Lab, withLab } from '../../lab/index.js'
import { createAccountCa, generateKeyPair, issueCertificate, loadCa, ownerPrincipal } from '../../src/sso/certs.js'
import { agentLog, type LabServer, MAIN, startServer, waitFor } from './agent-helpers.js'
import { DOMAIN, LAB_RESOLVER, startTunnelAgent, type TunnelAgent, waitPeer } from './tunnel-helpers.js'

const USER = 'alice'
const SSH_OPTS = [
  '-o',
  'BatchMode=yes',
  '-o',
  'StrictHostKeyChecking=yes',
  '-o',
  'UserKnownHostsFile=/dev/null',
  '-o',
  'PasswordAuthentication=no',
  '-o',
  'PubkeyAuthentication=no',
  '-o',
  'KbdInteractiveAuthentication=no',
  '-o',
  'ConnectTimeout=10',
]
const realmOf = (h: string) => `${h}.${DOMAIN}`.toUpperCase()

/** Every file below `dir` (relative path -> sha256), for byte-identity checks. */
async function tree(dir: string, base = dir): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) Object.assign(out, await tree(p, base))
    else
      out[p.slice(base.length)] = createHash('sha256')
        .update(await readFile(p))
        .digest('hex')
  }
  return out
}

/** /etc/netns/NS/{krb5.conf,krb5.keytab,ssh/,resolv.conf} for `host`; returns the clean-up. */
async function overlay(lab: Lab, host: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = join('/etc/netns', lab.netnsOf(host))
  await mkdir(dir, { recursive: true })
  await cp('/etc/krb5.conf', join(dir, 'krb5.conf'))
  await writeFile(join(dir, 'krb5.keytab'), '', { mode: 0o600 })
  await cp('/etc/ssh', join(dir, 'ssh'), { recursive: true })
  for (const f of await readdir(join(dir, 'ssh'))) if (f.startsWith('ssh_host_')) await rm(join(dir, 'ssh', f))
  for (const t of ['ed25519', 'ecdsa'])
    await lab.execOk(host, ['ssh-keygen', '-q', '-t', t, '-N', '', '-f', join(dir, 'ssh', `ssh_host_${t}_key`)])
  await writeFile(join(dir, 'resolv.conf'), `nameserver ${LAB_RESOLVER}\nsearch ${DOMAIN}\noptions timeout:1\n`)
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) }
}

test('sso: ssh between alice hosts by Kerberos PKINIT tickets, no password, no host-key prompt; revocation; down restores /etc', {
  timeout: 240_000,
}, async (t) => {
  const cleanups: (() => Promise<unknown>)[] = []
  // ip netns exec needs a mount point for the keytab overlay, and the SSO user must exist on the machine: both are
  // shared with a lab run that overlaps this one (holdOnHost), and removed by the last one only if a run made them.
  const keytab = holdOnHost(
    'krb5.keytab',
    () => {
      if (existsSync('/etc/krb5.keytab')) return false
      writeFileSync('/etc/krb5.keytab', '', { mode: 0o600 })
      return true
    },
    () => {
      if (statSync('/etc/krb5.keytab', { throwIfNoEntry: false })?.size === 0) rmSync('/etc/krb5.keytab')
    },
  )
  cleanups.push(async () => keytab.release())
  const user = holdOnHost(
    `user-${USER}`,
    () => {
      if (spawnSync('id', [USER]).status === 0) return false
      execFileSync('useradd', ['-M', '-d', '/nonexistent', '-s', '/bin/sh', USER])
      return true
    },
    () => execFileSync('userdel', [USER]),
  )
  cleanups.push(async () => user.release())
  const ccdir = `/tmp/at-sso-cc-${randomBytes(4).toString('hex')}`
  await mkdir(ccdir)
  await chmod(ccdir, 0o1777) // alice's credential cache goes here (mkdir's mode is cut by the umask)
  cleanups.push(() => rm(ccdir, { recursive: true, force: true }))
  const asAlice = (cmd: string[]) => ['runuser', '-u', USER, '--', 'env', `KRB5CCNAME=FILE:${ccdir}/cc`, ...cmd]
  try {
    await withLab(t, { sites: ['home', 'cafe'] }, async (lab) => {
      const agents: TunnelAgent[] = []
      let srv: LabServer | undefined
      const ov: Record<string, string> = {}
      const before: Record<string, Record<string, string>> = {}
      try {
        for (const h of ['desktop', 'laptop']) {
          const o = await overlay(lab, h)
          cleanups.push(o.cleanup)
          ov[h] = o.dir
          before[h] = await tree(o.dir)
        }
        srv = await startServer(lab, { leaseMin: 30 })
        const desktop = await startTunnelAgent(lab, srv, 'desktop', ['--sso-user', USER])
        agents.push(desktop)
        const laptop = await startTunnelAgent(lab, srv, 'laptop', ['--sso-user', USER])
        agents.push(laptop)
        await waitPeer(laptop, 'desktop', desktop.ula)
        await waitPeer(desktop, 'laptop', laptop.ula)
        // Both krb5.conf files know both realms at their ULAs (the agents wrote them from DNS).
        for (const h of ['desktop', 'laptop'])
          await waitFor(
            `${h}'s krb5.conf to name both KDCs`,
            async () => {
              const c = await readFile(join(ov[h] as string, 'krb5.conf'), 'utf8')
              return c.includes(`kdc = [${desktop.ula}]:88`) && c.includes(`kdc = [${laptop.ula}]:88`)
            },
            30_000,
            200,
          )
        await lab.waitListening('desktop', 88, { proto: 'tcp', timeoutMs: 10_000 })
        await mkdir('/run/sshd', { recursive: true })
        const sshd = lab.spawn('desktop', ['/usr/sbin/sshd', '-D', '-e'], { logName: 'sshd-desktop' })
        cleanups.push(async () => sshd.stop())
        await lab.waitListening('desktop', 22, { proto: 'tcp', timeoutMs: 5000 })

        // ssh desktop as alice: the hook gets a ticket by PKINIT, GSSAPI key exchange and authentication do the rest.
        const ssh = await lab.exec('laptop', asAlice(['ssh', ...SSH_OPTS, 'desktop', 'id', '-un']), {
          timeoutMs: 30_000,
        })
        if (ssh.code !== 0) {
          const v = await lab.exec('laptop', asAlice(['ssh', '-vvv', ...SSH_OPTS, 'desktop', 'id', '-un']), {
            timeoutMs: 30_000,
          })
          const hook = `${lab.ssoShareDirOf('laptop')}/laptop.${DOMAIN}`
          const x = await lab.exec('laptop', asAlice(['sh', '-x', `${hook}/ticket-hook`, 'desktop']))
          const k = await lab.exec(
            'laptop',
            asAlice([
              'kinit',
              '-V',
              '-X',
              `X509_user_identity=FILE:${hook}/client.pem,${hook}/client-key.pem`,
              `${USER}@${realmOf('desktop')}`,
            ]),
          )
          t.diagnostic(`hook -x: ${x.stdout}${x.stderr}\nkinit -V: ${k.code} ${k.stdout}${k.stderr}`)
          const kl = await lab.exec('laptop', asAlice(['klist']))
          t.diagnostic(
            `ssh -vvv: ${v.stderr}\nklist: ${kl.stdout}${kl.stderr}\nsshd: ${await readFile(sshd.log, 'utf8')}`,
          )
          for (const a of agents)
            t.diagnostic(
              `${a.host} kdc.log: ${await readFile(join(a.state, 'sso', 'kdc', 'kdc.log'), 'utf8').catch(String)}`,
            )
          t.diagnostic(`laptop krb5.conf: ${await readFile(join(ov.laptop as string, 'krb5.conf'), 'utf8')}`)
        }
        assert.equal(ssh.stdout.trim(), USER, ssh.stderr)
        await waitFor(
          'sshd to log the gssapi method',
          async () => /Accepted gssapi/.test(await readFile(sshd.log, 'utf8')),
          5000,
          100,
        )
        t.diagnostic((await readFile(sshd.log, 'utf8')).split('\n').find((l) => /Accepted gssapi/.test(l)) ?? '')

        const klist = await lab.execOk('laptop', asAlice(['klist']))
        t.diagnostic(klist.stdout)
        assert.match(klist.stdout, new RegExp(`Default principal: ${USER}@${realmOf('desktop').replace(/\./g, '\\.')}`))
        const m = /(\d\d\/\d\d\/\d\d \d\d:\d\d:\d\d)\s+(\d\d\/\d\d\/\d\d \d\d:\d\d:\d\d)\s+krbtgt\//.exec(klist.stdout)
        assert.ok(m?.[1] && m[2], klist.stdout)
        const hours = (Date.parse(m[2]) - Date.parse(m[1])) / 3_600_000
        assert.ok(hours > 9.9 && hours <= 10, `ticket lifetime ${hours} h`)

        // Without GSSAPI on the client: the host certificate (account CA, @cert-authority in the system known-hosts
        // file) gets past host-key checking with no known_hosts entry; authentication then has no method left.
        const noGss = ['-o', 'GSSAPIAuthentication=no', '-o', 'GSSAPIKeyExchange=no']
        const certOnly = await lab.exec('laptop', asAlice(['ssh', ...SSH_OPTS, ...noGss, 'desktop', 'id', '-un']), {
          timeoutMs: 30_000,
        })
        assert.doesNotMatch(certOnly.stderr, /Host key verification failed|authenticity of host/, certOnly.stderr)
        assert.match(certOnly.stderr, /Permission denied/, 'past host-key checking, refused at authentication')
        const untrusted = await lab.exec(
          'laptop',
          asAlice(['ssh', ...SSH_OPTS, ...noGss, '-o', 'GlobalKnownHostsFile=/dev/null', 'desktop', 'id', '-un']),
          { timeoutMs: 30_000 },
        )
        assert.match(
          untrusted.stderr,
          /Host key verification failed/,
          'control: without the CA the host key is unknown',
        )

        const sftp = await lab.exec('laptop', asAlice(['sftp', ...SSH_OPTS, '-b', '-', 'desktop']), {
          input: 'pwd\n',
          timeoutMs: 30_000,
        })
        assert.equal(sftp.code, 0, `sftp: ${sftp.stderr}`)
        assert.match(sftp.stdout, /Remote working directory/)

        // Another local user of the laptop: no certificate key to read, so no ticket, no login.
        const other = await lab.exec(
          'laptop',
          [
            'runuser',
            '-u',
            'nobody',
            '--',
            'env',
            `KRB5CCNAME=FILE:/tmp/at-sso-nobody-${lab.name}`,
            'ssh',
            ...SSH_OPTS,
            'desktop',
            'id',
            '-un',
          ],
          { timeoutMs: 30_000 },
        )
        assert.notEqual(other.code, 0, 'nobody cannot log in')
        assert.doesNotMatch(other.stdout, /alice|nobody/)

        // bob's CA, even with a certificate claiming alice's principal, gets no ticket from the desktop's KDC.
        const bobDir = join(ccdir, 'bob')
        await mkdir(bobDir)
        const bobCa = await createAccountCa('bob', `bob.${DOMAIN.split('.').slice(1).join('.')}`)
        const bk = await generateKeyPair()
        const bobCert = await issueCertificate({
          ca: await loadCa(bobCa.certPem, bobCa.keyPem),
          kind: 'client',
          publicKey: bk.keys.publicKey as never,
          account: 'alice',
          fqdn: `laptop.${DOMAIN}`,
          principals: [ownerPrincipal(USER, realmOf('desktop'))],
        })
        await writeFile(join(bobDir, 'c.pem'), bobCert)
        await writeFile(join(bobDir, 'k.pem'), bk.keyPem, { mode: 0o600 })
        await writeFile(join(bobDir, 'ca.pem'), bobCa.certPem)
        /** kinit for alice@DESKTOP in `host` (its krb5.conf) with a certificate, and extra trust anchors. */
        const kinitIn = (host: string, cert: string, key: string, anchors: string[] = []) =>
          lab.exec(
            host,
            [
              'env',
              `KRB5CCNAME=FILE:${bobDir}/cc-${host}`,
              'kinit',
              '-X',
              `X509_user_identity=FILE:${cert},${key}`,
              ...anchors.flatMap((a) => ['-X', `X509_anchors=FILE:${a}`]),
              `${USER}@${realmOf('desktop')}`,
            ],
            { timeoutMs: 15_000 },
          )
        // The client is given bob's CA too, so it sends his chain and the refusal is the desktop KDC's own.
        const aliceCa = `${lab.ssoShareDirOf('laptop')}/laptop.${DOMAIN}/ca.pem`
        const bob = await kinitIn('laptop', join(bobDir, 'c.pem'), join(bobDir, 'k.pem'), [
          aliceCa,
          join(bobDir, 'ca.pem'),
        ])
        assert.notEqual(bob.code, 0, "bob's certificate is refused")
        assert.doesNotMatch(
          bob.stderr,
          /verify own certificate|Cannot contact/,
          'refused by the KDC, not by the client',
        )
        t.diagnostic(`bob: ${bob.stderr.trim()}`)

        // Revocation: the desktop revokes the laptop; within 60 s the desktop's KDC refuses the laptop's certificate
        // (tried from the desktop itself, which still reaches its KDC) and the laptop gets no ticket.
        const share = `${lab.ssoShareDirOf('laptop')}/laptop.${DOMAIN}`
        const laptopCert = [join(share, 'client.pem'), join(share, 'client-key.pem')] as const
        assert.equal((await kinitIn('desktop', ...laptopCert)).code, 0, 'the laptop certificate works before')
        assert.equal((await kinitIn('laptop', ...laptopCert)).code, 0, 'from the laptop too')
        const t0 = Date.now()
        await lab.execOk('desktop', ['node', MAIN, 'revoke', 'laptop', '--state', desktop.state])
        await waitFor(
          'the KDC to refuse',
          async () => (await kinitIn('desktop', ...laptopCert)).code !== 0,
          60_000,
          250,
        )
        const refused = await kinitIn('desktop', ...laptopCert)
        t.diagnostic(
          `desktop KDC refuses the laptop ${Date.now() - t0} ms after autotunnel revoke: ${refused.stderr.trim()}`,
        )
        assert.match(refused.stderr, /mismatch|Pre-?authentication failed/i)
        const own = await kinitIn(
          'desktop',
          `${lab.ssoShareDirOf('desktop')}/desktop.${DOMAIN}/client.pem`,
          `${lab.ssoShareDirOf('desktop')}/desktop.${DOMAIN}/client-key.pem`,
        )
        assert.equal(own.code, 0, `the desktop's own certificate keeps working: ${own.stderr}`)
        await waitFor(
          'the laptop to get no ticket',
          async () => (await kinitIn('laptop', ...laptopCert)).code !== 0,
          60_000 - (Date.now() - t0),
          500,
        )
        t.diagnostic(`laptop gets no ticket ${Date.now() - t0} ms after autotunnel revoke`)
        await waitFor(
          "the desktop to stop trusting the laptop's host certificate",
          async () => {
            const k = await readFile(join(ov.desktop as string, 'ssh', 'ssh_known_hosts'), 'utf8')
            return /@cert-authority desktop,desktop\.alice\.members\.example ecdsa/.test(k) && !k.includes('laptop')
          },
          60_000 - (Date.now() - t0),
          200,
        )

        // down: every file under /etc (the overlays) byte-identical to before, the shared directory gone.
        for (const a of [laptop, desktop]) {
          await lab.execOk(a.host, ['node', MAIN, 'down', '--state', a.state], { timeoutMs: 30_000 })
        }
        for (const h of ['desktop', 'laptop'])
          assert.deepEqual(await tree(ov[h] as string), before[h], `${h}: /etc restored`)
        assert.equal(existsSync(`${lab.ssoShareDirOf('desktop')}/desktop.${DOMAIN}`), false)
        assert.equal(existsSync(share), false)
      } catch (e) {
        for (const a of agents) t.diagnostic(`--- ${a.host} log tail ---\n${(await agentLog(a)).slice(-6000)}`)
        throw e
      } finally {
        for (const a of agents) await a.stop()
        await srv?.stop()
      }
    })
  } finally {
    for (const c of cleanups.reverse()) await c().catch((e) => t.diagnostic(`cleanup: ${e}`))
  }
})
