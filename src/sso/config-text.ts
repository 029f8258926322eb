// The text of the system drop-ins (docs/sso.md, "System integration"): pure functions of the account's hosts,
// written by host.ts through system-files.ts.
//   /etc/krb5.conf                  a marked block: each host's realm, its KDC at the ULA (port 88), the account CA
//                                   as PKINIT anchor, domain_realm for full and short names, auth_to_local mapping
//                                   the owner principal of our realm to the SSO user
//   /etc/krb5.keytab                our host/ keys appended to whatever entries were there
//   /etc/ssh/sshd_config.d/...      GSSAPI authentication and GSSAPI key exchange
//   /etc/ssh/ssh_config.d/...       the same for the user's host names, and the ticket hook (Match exec)

import { byCodeUnits } from '../io/order.js'
import { BLOCK_BEGIN, BLOCK_END } from './system-files.js'

export interface SsoHostEntry {
  /** FQDN, lower case, no trailing dot. */
  readonly fqdn: string
  readonly ula: string
}

export function realmOf(fqdn: string): string {
  return fqdn.replace(/\.$/, '').toUpperCase()
}

const KEYTAB_V2 = Buffer.from([0x05, 0x02])

export class KeytabError extends Error {
  override readonly name = 'KeytabError'
}

/** The system keytab with our entries appended (MIT keytab format 0x0502: a version, then length-prefixed entries). */
export function mergeKeytab(original: Buffer | null, ours: Buffer): Buffer {
  if (ours.length < KEYTAB_V2.length || !ours.subarray(0, 2).equals(KEYTAB_V2))
    throw new KeytabError('our keytab is not MIT format 0x0502')
  if (original === null || original.length === 0) return ours
  if (!original.subarray(0, 2).equals(KEYTAB_V2))
    throw new KeytabError('the system keytab is not MIT format 0x0502: not touched')
  return Buffer.concat([original, ours.subarray(KEYTAB_V2.length)])
}

function esc(s: string): string {
  return s.replace(/[.[\]()*+?{}|^$\\]/g, (c) => `\\${c}`)
}

export function krb5Block(o: {
  self: SsoHostEntry
  peers: readonly SsoHostEntry[]
  caFile: string
  account: string
  ssoUser: string
}): string {
  const hosts = [o.self, ...o.peers.filter((p) => p.fqdn !== o.self.fqdn)].sort((a, b) => byCodeUnits(a.fqdn, b.fqdn))
  const lines = [
    `${BLOCK_BEGIN} ${o.self.fqdn}: written by autotunnel up, removed by autotunnel down (docs/sso.md)`,
    '[realms]',
  ]
  for (const h of hosts) {
    const realm = realmOf(h.fqdn)
    lines.push(`\t${realm} = {`, `\t\tkdc = [${h.ula}]:88`, `\t\tpkinit_anchors = FILE:${o.caFile}`, '\t}')
  }
  lines.push('[domain_realm]')
  for (const h of hosts) {
    lines.push(`\t${h.fqdn} = ${realmOf(h.fqdn)}`)
    lines.push(`\t${h.fqdn.split('.')[0]} = ${realmOf(h.fqdn)}`)
  }
  lines.push(BLOCK_END, '')
  return `${lines.join('\n')}`
}

/** `original`, a newline if it lacks one, then our block (krb5.conf, known-hosts). */
export function krb5ConfWith(original: string, block: string): string {
  return `${original}${original === '' || original.endsWith('\n') ? '' : '\n'}${block}`
}

/** The auth_to_local rule mapping exactly OWNER@REALM to the local SSO user. */
export function authToLocalRule(account: string, realm: string, ssoUser: string): string {
  return `RULE:[1:$1@$0](^${esc(`${account}@${realm}`)}$)s/^.*$/${ssoUser}/`
}

/**
 * krb5.conf with our mapping of the owner principal to the SSO user. MIT reads auth_to_local only in the section
 * of the *default* realm (localauth.c: "realms-><defaultrealm>->auth_to_local"), and a second subsection of the same
 * name is never looked at, so the rule goes inside the default realm's existing subsection, as a marked block
 * right after its opening brace; without such a subsection our block gets one, and without a default realm our
 * block sets it to this host's realm. An explicit auth_to_local turns the implicit DEFAULT rule off, so DEFAULT
 * follows ours unless the file already had auth_to_local rules of its own.
 */
export function krb5ConfFull(o: { original: string; block: string; rule: string; selfRealm: string }): string {
  const hadRules = /^\s*auth_to_local\s*=/m.test(o.original)
  const rules = [`\t\tauth_to_local = ${o.rule}`, ...(hadRules ? [] : ['\t\tauth_to_local = DEFAULT'])]
  const defaultRealm = /^\s*default_realm\s*=\s*(\S+)/m.exec(o.original)?.[1]
  if (defaultRealm === undefined) {
    const extra = [
      '[libdefaults]',
      `\tdefault_realm = ${o.selfRealm}`,
      '[realms]',
      `\t${o.selfRealm} = {`,
      ...rules,
      '\t}',
    ]
    return krb5ConfWith(o.original, o.block.replace(`${BLOCK_END}\n`, `${extra.join('\n')}\n${BLOCK_END}\n`))
  }
  const open = new RegExp(`^[ \\t]*${esc(defaultRealm)}[ \\t]*=[ \\t]*\\{[^\\n]*\\n`, 'm').exec(o.original)
  if (!open) {
    const extra = ['[realms]', `\t${defaultRealm} = {`, ...rules, '\t}']
    return krb5ConfWith(o.original, o.block.replace(`${BLOCK_END}\n`, `${extra.join('\n')}\n${BLOCK_END}\n`))
  }
  const at = open.index + open[0].length
  const inner = `${BLOCK_BEGIN} auth_to_local for single sign-on (docs/sso.md)\n${rules.join('\n')}\n${BLOCK_END}\n`
  return krb5ConfWith(`${o.original.slice(0, at)}${inner}${o.original.slice(at)}`, o.block)
}

export function sshdDropIn(fqdn: string, hostCertificate?: string): string {
  return `# autotunnel sso on ${fqdn}: written by autotunnel up, removed by autotunnel down (docs/sso.md)
# Kerberos (GSSAPI) user authentication and key exchange; the keys are host/${fqdn} in the system keytab.
GSSAPIAuthentication yes
GSSAPIKeyExchange yes
GSSAPICleanupCredentials yes
# The lab and many hosts do not call themselves by the name their peers use: accept any host/ key of the keytab.
GSSAPIStrictAcceptorCheck no
${hostCertificate ? `# The host key certified by the account CA (clients trust it through @cert-authority).\nHostCertificate ${hostCertificate}\n` : ''}`
}

/** The known-hosts block: the account CA vouches for the host keys of the account's current hosts only. */
export function knownHostsBlock(o: { fqdn: string; hosts: readonly string[]; caBlob: Buffer }): string {
  const names = [...new Set(o.hosts.flatMap((h) => [h, h.split('.')[0] ?? h]))].sort()
  return `${BLOCK_BEGIN} ${o.fqdn}: written by autotunnel up, removed by autotunnel down (docs/sso.md)
@cert-authority ${names.join(',')} ecdsa-sha2-nistp256 ${o.caBlob.toString('base64')} autotunnel account CA
${BLOCK_END}
`
}

export function sshDropIn(o: { fqdn: string; domain: string; hosts: readonly string[]; hook: string }): string {
  const names = [`*.${o.domain}`, ...[...new Set(o.hosts.map((h) => h.split('.')[0] ?? h))].sort()]
  return `# autotunnel sso on ${o.fqdn}: written by autotunnel up, removed by autotunnel down (docs/sso.md)
# The user's hosts: get a Kerberos ticket by PKINIT on first use (the hook), then GSSAPI authentication and key
# exchange, so neither a password nor a host-key prompt is needed.
Match host "${names.join(',')}" exec "${o.hook} %h"
	GSSAPIAuthentication yes
Host ${names.join(' ')}
	GSSAPIAuthentication yes
	GSSAPIKeyExchange yes
	GSSAPIDelegateCredentials no
`
}

/** The ticket hook that ssh runs (Match exec) as the user who runs ssh. */
export function ticketHook(o: { dir: string; domain: string; account: string; ssoUser: string }): string {
  return `#!/bin/sh
# autotunnel sso: obtains a Kerberos ticket for one of the account's hosts on first use (PKINIT, RFC 4556), run by
# ssh through Match exec (/etc/ssh/ssh_config.d/autotunnel-sso.conf). Written by autotunnel up (docs/sso.md).
# Only ${o.ssoUser} can read the client key, so for anyone else this does nothing.
dir='${o.dir}'
domain='${o.domain}'
h=$(printf '%s' "$1" | tr 'A-Z' 'a-z'); h=\${h%.}
case "$h" in
  *."$domain") ;;
  *.*) exit 0 ;;
  *) h="$h.$domain" ;;
esac
[ "$(id -un)" = '${o.ssoUser}' ] && [ -r "$dir/client-key.pem" ] || exit 0
want="${o.account}@$(printf '%s' "$h" | tr 'a-z' 'A-Z')"
have=$(klist 2>/dev/null | sed -n 's/^Default principal: //p')
if [ "$have" = "$want" ] && klist -s 2>/dev/null; then exit 0; fi
# A collection cache (DIR, KEYRING, KCM) keeps one cache per realm: use ours when it is there and valid.
if [ -n "$have" ] && kswitch -p "$want" 2>/dev/null && klist -s 2>/dev/null; then exit 0; fi
kinit -X "X509_user_identity=FILE:$dir/client.pem,$dir/client-key.pem" "$want" </dev/null >/dev/null ||
  echo "autotunnel sso: no Kerberos ticket for $want (kinit said why above)" >&2
exit 0
`
}
