import { mulberry32 } from '../../src/cluster/sim/gossip-simulator.js'

/** Deterministic PRNG (mulberry32) so randomized tests replay from their seed. */
export const seededRng: (seed: number) => () => number = mulberry32

export function randInt(rng: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo + 1))
}
