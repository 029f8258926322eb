import assert from 'node:assert/strict'
import { test } from 'node:test'
import { hostLabel, parsePgUrl } from './hosts.js'

test('parsePgUrl: the host lists libpq accepts', () => {
  const cases: [string, string[], string][] = [
    // One host: the URL goes to pg as given (its defaults, its parsing).
    ['postgres://u:pw@db.internal/autotunnel', ['db.internal'], 'postgres://u:pw@db.internal/autotunnel'],
    ['postgresql://u@127.0.0.1:5433/db', ['127.0.0.1:5433'], 'postgresql://u@127.0.0.1:5433/db'],
    ['postgres://u@[::1]:5433/db', ['[::1]:5433'], 'postgres://u@[::1]:5433/db'],
    ['postgres:///db', ['(default host)'], 'postgres:///db'],
    ['postgres://u@/db?host=/run/pg', ['/run/pg'], 'postgres://u@/db?host=/run/pg'],
    // ... without target_session_attrs, which pg does not know.
    [
      'postgres://u@h:1/db?target_session_attrs=read-write&sslmode=require',
      ['h:1'],
      'postgres://u@h:1/db?sslmode=require',
    ],
    // Several hosts in the authority: a placeholder host, each connection aimed at one of them.
    [
      'postgres://u:p%40ss@h1:5432,h2:5433/db?target_session_attrs=read-write',
      ['h1:5432', 'h2:5433'],
      'postgres://u:p%40ss@localhost/db',
    ],
    ['postgres://u@h1,[2001:db8::2]:6000,h3/db', ['h1', '[2001:db8::2]:6000', 'h3'], 'postgres://u@localhost/db'],
    // host= and port= lists (also unix socket directories), one port for all or one per host.
    [
      'postgres://u@/db?host=/tmp/a,/tmp/b&port=5432,5433&application_name=x',
      ['/tmp/a:5432', '/tmp/b:5433'],
      'postgres://u@localhost/db?application_name=x',
    ],
    [
      'postgres://u@/db?host=10.0.0.1,10.0.0.2&port=6432',
      ['10.0.0.1:6432', '10.0.0.2:6432'],
      'postgres://u@localhost/db',
    ],
    ['postgres://u@h1,h2/db?target_session_attrs=primary', ['h1', 'h2'], 'postgres://u@localhost/db'],
  ]
  for (const [url, hosts, conn] of cases) {
    const u = parsePgUrl(url)
    assert.deepEqual(u.hosts.map(hostLabel), hosts, url)
    assert.equal(u.connectionString, conn, url)
  }
  assert.deepEqual(parsePgUrl('postgres://u@h1:5432,h2/db').hosts, [
    { host: 'h1', port: 5432 },
    { host: 'h2', port: undefined },
  ])
})

test('parsePgUrl: a bad list is refused with what to write instead', () => {
  const cases: [string, RegExp][] = [
    ['postgres://u@h1:5432,,h2/db', /host 2 of 3 is empty/],
    ['postgres://u@h1:5432,h2:x/db', /port "x" of host 2 \(h2\) is not a port number/],
    ['postgres://u@h1:5432,h2:70000/db', /port "70000"/],
    [
      'postgres://u@h1:1/db?target_session_attrs=standby',
      /target_session_attrs=standby: .* use target_session_attrs=read-write/,
    ],
    ['postgres://u@h1,h2/db?target_session_attrs=any', /needs the writable primary/],
    ['postgres://u@h1,h2/db?host=h3', /hosts given twice/],
    ['postgres://u@h1:1,h2/db?port=5432', /ports given twice/],
    ['postgres://u@/db?host=a,b,c&port=1,2', /3 hosts but 2 ports/],
    ['postgres://u@h/db?port=1,2', /several ports for one host/],
    ['postgres://u@h1,[::1/db', /IPv6 address is written \[ADDRESS\]/],
    ['postgres://u@h%zz,h2/db', /not valid percent-encoding/],
  ]
  for (const [url, want] of cases) assert.throws(() => parsePgUrl(url), want, url)
})
