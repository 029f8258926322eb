import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Command } from 'commander'
import { registerCommands } from './commands.js'
import { commandPath, EXAMPLES } from './help.js'

function program(): Command {
  const p = new Command().name('autotunnel')
  registerCommands(p)
  return p
}

function all(cmd: Command): Command[] {
  return cmd.commands.flatMap((c) => [c, ...all(c)])
}

function helpOf(cmd: Command): string {
  let text = ''
  cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) })
  cmd.outputHelp()
  return text
}

test('--help of every command: an Examples section, required options marked, no empty defaults (issue 13)', () => {
  const cmds = all(program())
  assert.ok(cmds.length >= 29, `found ${cmds.length} commands`)
  for (const c of cmds) {
    const path = commandPath(c)
    const h = helpOf(c)
    assert.match(h, /\nExamples:\n {2}\$ autotunnel /, `${path}: no Examples section`)
    assert.doesNotMatch(h, /default: \[\]/, `${path}: an empty list shown as a default`)
    assert.doesNotMatch(h, /default: ""/, `${path}: an empty default`)
    for (const o of c.options) {
      const flat = h.replace(/\s+/g, ' ')
      if (o.mandatory)
        assert.ok(flat.includes(`${o.description} (required`), `${path}: ${o.long} is required but not marked so`)
      const d: unknown = o.defaultValue
      if (typeof d === 'string' && d && !o.negate)
        assert.ok(flat.includes(`default: ${d}`), `${path}: ${o.long} default ${d} not shown`)
    }
  }
  for (const path of Object.keys(EXAMPLES))
    assert.ok(
      cmds.some((c) => commandPath(c) === path),
      `examples for a command that does not exist: ${path}`,
    )
})

test('agent commands share one --state default, so status/down/browse find an agent started without it', () => {
  const p = program()
  const defaults = ['up', 'status', 'down', 'browse', 'revoke'].map(
    (n) => p.commands.find((c) => c.name() === n)?.options.find((o) => o.long === '--state')?.defaultValue,
  )
  assert.ok(typeof defaults[0] === 'string' && defaults[0].length > 0)
  assert.deepEqual(new Set(defaults).size, 1, JSON.stringify(defaults))
})
