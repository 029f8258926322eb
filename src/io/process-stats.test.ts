import assert from 'node:assert/strict'
import { test } from 'node:test'
import { processStats } from './process-stats.js'

test("processStats counts a ref'd timer and reads RSS and open descriptors", () => {
  const before = processStats()
  const t = setTimeout(() => {}, 60_000)
  const during = processStats()
  clearTimeout(t)
  assert.equal((during.activeResources.Timeout ?? 0) - (before.activeResources.Timeout ?? 0), 1)
  assert.ok(during.rssBytes > 1_000_000)
  assert.ok(during.heapUsedBytes > 0)
  assert.ok(during.openFds === null || during.openFds > 2)
})
