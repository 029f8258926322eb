// Which store a command uses: `--store URL` (postgres://... or sqlite:DIR), else AUTOTUNNEL_STORE, else
// `--data DIR` (SQLite, the default for one machine). With PostgreSQL, --data is optional and names the node's own
// directory (its self-signed DoT certificate); with sqlite:DIR it must not name another directory.
import { StoreError } from './db.js'
import { parsePgUrl } from './pg/hosts.js'

export type StoreSpec =
  | { readonly kind: 'sqlite'; readonly dir: string }
  | { readonly kind: 'postgres'; readonly url: string; readonly dir: string | undefined }

const PG = /^postgres(ql)?:\/\//

export function resolveStore(o: { data?: string; store?: string }, env: NodeJS.ProcessEnv = process.env): StoreSpec {
  const spec = o.store ?? env.AUTOTUNNEL_STORE
  if (spec === undefined || spec === '') {
    if (o.data === undefined)
      throw new StoreError('no store: give --data DIR (SQLite) or --store postgres://... (or set AUTOTUNNEL_STORE)')
    return { kind: 'sqlite', dir: o.data }
  }
  if (PG.test(spec)) {
    // A bad host list is refused here, before anything connects (the message says what to write).
    parsePgUrl(spec)
    return { kind: 'postgres', url: spec, dir: o.data }
  }
  if (spec.startsWith('sqlite:')) {
    const dir = spec.slice('sqlite:'.length)
    if (dir === '') throw new StoreError('--store sqlite:DIR needs a directory')
    // --data given explicitly beside AUTOTUNNEL_STORE=sqlite:OTHER: the flag wins over the environment.
    if (o.data !== undefined && o.data !== dir) {
      if (o.store === undefined) return { kind: 'sqlite', dir: o.data }
      throw new StoreError(`--store ${spec} and --data ${o.data} name two different directories`)
    }
    return { kind: 'sqlite', dir }
  }
  throw new StoreError(
    `unknown store ${JSON.stringify(redact(spec))}: want postgres://USER:PASSWORD@HOST[:PORT][,HOST2[:PORT2]...]/DB or sqlite:DIR`,
  )
}

/** The URL without its password, for messages and logs. */
export function redact(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, '$1***@')
}
