// Test helper: a lab that is always torn down, even when the test fails or is interrupted.
import type { TestContext } from 'node:test'
import { Lab, type LabUpOptions } from './lab.js'

/**
 * Brings a lab up, runs `fn`, and tears the lab down whatever happens. On failure the run directory (state and
 * every daemon's log) is kept and its path is added to the error message. `t` (optional) gets a diagnostic.
 */
export async function withLab<T>(t: TestContext | null, opts: LabUpOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await Lab.up(opts)
  try {
    const out = await fn(lab)
    await lab.down()
    return out
  } catch (e) {
    await lab.down({ keepLogs: true })
    t?.diagnostic(`lab ${lab.name} logs kept in ${lab.dir}`)
    if (e instanceof Error) e.message += ` (lab logs: ${lab.dir})`
    throw e
  }
}
