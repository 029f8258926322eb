// `autotunnel browse`: DNS-SD browsing (RFC 6763 sections 4, 6, 9) in the user's domain, with TSIG-signed queries
// (names under a user's domain are private to that user, seed 002 section 7.2). Without a TYPE, the service types
// come from `_services._dns-sd._udp.DOMAIN`.
import type { Message } from '../dns/wire/message.js'
import { type PTRData, RRType, type SRVData, type TXTData } from '../dns/wire/rr-table.js'
import { byCodeUnits } from '../io/order.js'
import type { BrowseResult } from './agent.js'
import { fq, SERVICES_ENUM } from './records.js'

export interface SignedQuery {
  query(name: string, type: number): Promise<Message>
}

function answers<T>(m: Message, name: string, type: number): T[] {
  const n = name.toLowerCase()
  return m.answers.filter((r) => r.type === type && r.name.toLowerCase() === n && r.data).map((r) => r.data as T)
}

/** Strips ".DOMAIN." from a name under the domain. */
function relative(name: string, domain: string): string {
  const d = `.${fq(domain).toLowerCase()}`
  return name.toLowerCase().endsWith(d) ? name.slice(0, name.length - d.length) : name
}

export async function browseServices(
  q: SignedQuery,
  domain: string,
  type: string | undefined,
): Promise<BrowseResult[]> {
  const d = fq(domain)
  let types: string[]
  if (type) {
    types = [type.includes('.') ? type.replace(/\.$/, '') : `_${type.replace(/^_/, '')}._tcp`]
  } else {
    const enumName = `${SERVICES_ENUM}.${d}`
    const m = await q.query(enumName, RRType.PTR)
    types = [...new Set(answers<PTRData>(m, enumName, RRType.PTR).map((p) => relative(p.ptrdname, d)))].sort()
  }
  const out: BrowseResult[] = []
  for (const t of types) {
    const typeName = `${t}.${d}`
    const ptrs = answers<PTRData>(await q.query(typeName, RRType.PTR), typeName, RRType.PTR)
    const instances: BrowseResult['instances'][number][] = []
    for (const p of ptrs) {
      const [srvM, txtM] = await Promise.all([q.query(p.ptrdname, RRType.SRV), q.query(p.ptrdname, RRType.TXT)])
      const srv = answers<SRVData>(srvM, p.ptrdname, RRType.SRV)[0]
      if (!srv) continue
      const txt = answers<TXTData>(txtM, p.ptrdname, RRType.TXT).flatMap((x) =>
        x.strings.map((s) => s.toString('utf8')).filter((s) => s !== ''),
      )
      const addrs = await Promise.all(
        [RRType.AAAA, RRType.A].map(async (at) =>
          answers<{ address: string }>(await q.query(srv.target, at), srv.target, at).map((a) => a.address),
        ),
      )
      const instanceName = p.ptrdname.slice(0, Math.max(0, p.ptrdname.length - typeName.length - 1))
      instances.push({
        name: instanceName || p.ptrdname,
        host: srv.target,
        port: srv.port,
        txt,
        addresses: addrs.flat(),
      })
    }
    out.push({ type: t, instances: instances.sort((a, b) => byCodeUnits(a.name, b.name)) })
  }
  return out
}
