import { randomBytes, randomInt } from 'node:crypto'

// Randomness as an injected edge: ULAs, LLQ ids, PCP nonces, SPIs and IKE nonces all come from here,
// so tests can make them repeatable.
export interface Random {
  bytes(n: number): Buffer
  /** Uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number
}

export class SystemRandom implements Random {
  bytes(n: number): Buffer {
    return randomBytes(n)
  }
  int(maxExclusive: number): number {
    return randomInt(maxExclusive)
  }
}
