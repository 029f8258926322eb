// The faults the soak run injects, one kind per lab operation (docs/lab.md), and the seeded schedule: rounds
// holding every kind once, each round shuffled, so a run of N rounds holds every kind N times.

export const FAULT_KINDS = [
  'move',
  'gateway-restart',
  'public-ip',
  'loss',
  'cut',
  'server-term',
  'server-kill',
  'agent-kill',
] as const
export type FaultKind = (typeof FAULT_KINDS)[number]

/** Injection lengths from issue 14: 10 % loss for 10 s, a 5 s cut. */
export const LOSS_PERCENT = 10
export const LOSS_MS = 10_000
export const CUT_MS = 5_000

/** mulberry32: a small seeded generator, so a seed printed by a run replays its schedule. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function pick<T>(rand: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rand() * xs.length)]!
}

/** An endless schedule of shuffled rounds of `kinds`. */
export function* schedule(rand: () => number, kinds: readonly FaultKind[] = FAULT_KINDS): Generator<FaultKind> {
  for (;;) {
    const round = [...kinds]
    for (let i = round.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1))
      ;[round[i], round[j]] = [round[j]!, round[i]!]
    }
    yield* round
  }
}
