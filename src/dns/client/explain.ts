// What a failed exchange with the DNS service means for the person running the agent (issue 13 finding 3): a raw
// "rcode 9" or "self-signed certificate" says nothing about what to do. Each explanation names the cause and the fix,
// and says whether retrying can help: a wrong key or a domain outside the account is a configuration error (the agent
// exits non-zero so a service manager shows it), a server that does not answer is transient.
import { Rcode, rcodeName } from '../wire/header.js'

export type FailureKind = 'key' | 'domain' | 'tls' | 'clock' | 'unreachable' | 'quota' | 'prohibited' | 'other'

export interface Explained {
  readonly kind: FailureKind
  /** One line: cause, then what to do. */
  readonly message: string
  /** A configuration error that retrying cannot fix. */
  readonly fatal: boolean
}

export interface ExplainContext {
  /** The user's domain, USER.ZONE (no trailing dot). */
  readonly domain: string
  readonly keyName: string
  /** Where the request went: "tls:198.51.100.10:853". */
  readonly via: string
  /** No UPDATE succeeded yet in this run: a REFUSED then means the configuration, not a quota reached later. */
  readonly neverSucceeded?: boolean
}

/**
 * A DNS answer with an error RCODE (and the TSIG error field of its TSIG RR, if any, and the EXTRA-TEXT of its
 * Extended DNS Error, RFC 8914, if any: the server's own words beat a guess).
 */
export function explainRcode(
  rcode: number,
  tsigError: number | undefined,
  c: ExplainContext,
  extraText?: string,
): Explained {
  const zone = c.domain.split('.').slice(1).join('.')
  const code = tsigError ? `${rcodeName(rcode)}/${rcodeName(tsigError, true)}` : rcodeName(rcode)
  // A policy refusal the server explained (a revoked host: src/server/revoked-hosts.ts). Not fatal: the operator
  // can lift it, and the publisher's backoff then publishes again without a restart.
  if (rcode === Rcode.REFUSED && extraText)
    return {
      kind: 'prohibited',
      fatal: false,
      message: `the server at ${c.via} refused the update (${code}): ${extraText}`,
    }
  if (tsigError === Rcode.BADKEY || tsigError === Rcode.BADSIG || (rcode === Rcode.NOTAUTH && tsigError === undefined))
    return tsigError === undefined
      ? {
          kind: 'domain',
          fatal: true,
          message:
            `the server at ${c.via} is not authoritative for ${zone} (${code}): ${c.domain} is not in this account ` +
            'or not on this server; check --domain and --server',
        }
      : {
          kind: 'key',
          fatal: true,
          message:
            `wrong key or key secret: the server at ${c.via} does not accept key ${c.keyName} (${code}); ` +
            '--key-file must be the JSON `autotunnel account add --json` printed for this account (or use the ' +
            'password of the account with --password-stdin)',
        }
  if (tsigError === Rcode.BADTIME)
    return {
      kind: 'clock',
      fatal: false,
      message: `this machine's clock differs from the server's by more than the TSIG fudge (${code}): set the clock (NTP)`,
    }
  if (rcode === Rcode.NOTZONE)
    return {
      kind: 'domain',
      fatal: true,
      message: `${c.domain} is not in this account's zone ${zone} on ${c.via} (${code}): check --domain`,
    }
  if (rcode === Rcode.REFUSED)
    return c.neverSucceeded
      ? {
          kind: 'domain',
          fatal: true,
          message:
            `the server at ${c.via} refused the update (${code}): ${c.domain} is not in this account (key ` +
            `${c.keyName}), or the account is over its record quota; check --domain and the key file`,
        }
      : {
          kind: 'quota',
          fatal: false,
          message: `the server at ${c.via} refused the update (${code}): the account may be over its record quota`,
        }
  return { kind: 'other', fatal: false, message: `the server at ${c.via} answered ${code}` }
}

const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
])

/** A connection or transport failure (no DNS answer): TLS verification, refused, unreachable, timed out. */
export function explainTransport(e: unknown, c: { via: string }): Explained {
  const err = e as Error & { code?: string }
  const code = err?.code ?? ''
  const text = err?.message ?? String(e)
  const fix =
    "pass --ca DIR/tls.crt (the server's --data directory) or --tls-fingerprint SHA256 (printed by `autotunnel server`)"
  if (UNTRUSTED.has(code) || /self[- ]signed certificate|unable to verify the first certificate/i.test(text))
    return { kind: 'tls', fatal: false, message: `TLS failed: certificate not trusted (${text}) at ${c.via}: ${fix}` }
  if (/fingerprint .* does not match/.test(text))
    return {
      kind: 'tls',
      fatal: false,
      message: `TLS failed: ${text} at ${c.via}: --tls-fingerprint must be the one \`autotunnel server\` prints now`,
    }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return {
      kind: 'tls',
      fatal: false,
      message:
        `TLS failed: the certificate does not name the server (${text}) at ${c.via}: the server's certificate must ` +
        'cover the name and addresses it advertises (--advertise), or pin it with --tls-fingerprint',
    }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')
    return { kind: 'tls', fatal: false, message: `TLS failed: ${text} at ${c.via}: renew the server's certificate` }
  if (UNREACHABLE.has(code) || /timed out|no answer/i.test(text))
    return { kind: 'unreachable', fatal: false, message: `no answer from ${c.via}: ${text}` }
  return { kind: 'other', fatal: false, message: `${c.via}: ${text}` }
}

/** Connection errors that mean "cannot reach it" (and so make trying another address worthwhile). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EADDRNOTAVAIL'])

/** The error carries an explanation (UpdateError and the agent's fatal exit use it). */
export class ExplainedError extends Error {
  override readonly name = 'ExplainedError'
  constructor(
    readonly explained: Explained,
    options?: { cause?: unknown },
  ) {
    super(explained.message, options)
  }
}
