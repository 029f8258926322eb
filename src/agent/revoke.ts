// Revoking one of the user's hosts (issue 8): one TSIG-signed UPDATE that deletes the host's IKE key record and
// everything else it published, so its peers refuse new IKE SAs from it and delete the existing ones (the key
// record is watched: IkeEngine.revalidate() runs at once) and drop it from their peer tables (the host-list PTR).
//
//   H.D                      all RRsets (AAAA, TXT key record)          delete name (RFC 2136 2.5.3)
//   _autotunnel._udp.H.D     all RRsets (SRV)                           delete name
//   L.D                      all RRsets (AAAA, A, TXT), L from the SRV  delete name
//   _autotunnel._udp.D       PTR _autotunnel._udp.H.D                   delete one RR (2.5.4)
//   H._t._p.D, _t._p.D PTR   each DNS-SD service type the user offers   delete name / delete one RR
//
// The same deletions, made in the server's store, are `autotunnel account revoke-host` (src/server/account-cli.ts).
// A revoked host that still runs and still holds the account key can publish itself again: see docs/ike.md,
// "Revocation and its limits".
import type { UpdateSink } from '../dns/client/update.js'
import { type RR, RRClass, RRType, type SRVData } from '../dns/wire/rr-table.js'
import { encodeRevokeRdata, enrolName, SsoRRType } from '../sso/enrol-codec.js'
import { answers, type SignedQuery } from './peer-records.js'
import { AUTOTUNNEL_SERVICE, fq, HOST_LABEL, SERVICES_ENUM } from './records.js'

export interface RevokeResult {
  readonly host: string
  /** Names whose RRsets were deleted, and the single records deleted ("name PTR target"). */
  readonly deleted: string[]
  readonly rcode: number
  readonly via: string
}

export class RevokeError extends Error {
  override readonly name = 'RevokeError'
}

function deleteName(name: string): RR {
  return { name, type: RRType.ANY, class: RRClass.ANY, ttl: 0, data: null }
}

function deletePtr(name: string, target: string): RR {
  return { name, type: RRType.PTR, class: RRClass.NONE, ttl: 0, data: { ptrdname: target } }
}

/** The update section revoking `host` of `domain` (looks up its SRV target and the DNS-SD types first). */
export async function revokeUpdates(
  query: SignedQuery,
  domain: string,
  host: string,
): Promise<{ updates: RR[]; deleted: string[] }> {
  const h = host.toLowerCase()
  if (!HOST_LABEL.test(h)) throw new RevokeError(`bad host name ${JSON.stringify(host)}: want one label`)
  const d = fq(domain.toLowerCase())
  const hostName = `${h}.${d}`
  const srvName = `${AUTOTUNNEL_SERVICE}.${hostName}`
  const listName = `${AUTOTUNNEL_SERVICE}.${d}`
  const srv = answers<SRVData>(await query.query(srvName, RRType.SRV), srvName, RRType.SRV)
  const targets = srv.map((s) => fq(s.target.toLowerCase())).filter((t) => t.endsWith(`.${d}`))
  const types = answers<{ ptrdname: string }>(
    await query.query(`${SERVICES_ENUM}.${d}`, RRType.PTR),
    `${SERVICES_ENUM}.${d}`,
    RRType.PTR,
  ).map((p) => fq(p.ptrdname.toLowerCase()))
  const updates: RR[] = [deleteName(hostName), deleteName(srvName), ...targets.map(deleteName)]
  const deleted = [hostName, srvName, ...targets]
  updates.push(deletePtr(listName, srvName))
  deleted.push(`${listName} PTR ${srvName}`)
  for (const t of types.filter((x) => x.endsWith(`.${d}`))) {
    updates.push(deleteName(`${h}.${t}`), deletePtr(t, `${h}.${t}`))
    deleted.push(`${h}.${t}`, `${t} PTR ${h}.${t}`)
  }
  return { updates, deleted }
}

/** Sends the revocation UPDATE (TSIG-signed by the sink) for `host` of `domain` in `zone`. */
export async function revokeHost(
  deps: { query: SignedQuery; sink: UpdateSink },
  o: { domain: string; zone: string; host: string },
): Promise<RevokeResult> {
  const { updates, deleted } = await revokeUpdates(deps.query, o.domain, o.host)
  const res = await deps.sink.update({ zone: fq(o.zone), updates })
  if (res.rcode !== 0) throw new RevokeError(`revocation UPDATE refused: rcode ${res.rcode}`)
  // SSO (docs/sso.md): the server marks the host revoked and issues it no more certificates.
  const sso = await deps.sink.update({
    zone: fq(o.zone),
    updates: [
      {
        name: enrolName(o.host.toLowerCase(), o.domain),
        type: SsoRRType.ATREVOKE,
        class: RRClass.IN,
        ttl: 0,
        data: { raw: encodeRevokeRdata() },
      },
    ],
  })
  if (sso.rcode !== 0)
    throw new RevokeError(`records deleted, but the server refused the SSO revocation: rcode ${sso.rcode}`)
  return { host: o.host.toLowerCase(), deleted, rcode: res.rcode, via: res.via }
}
