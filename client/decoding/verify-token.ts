import { argmax } from '../sampling/index.js'
import type { RandomSource } from './keyed-random.js'

/** A proposed token as the verifier sees it: q undefined means one-hot at `token`. */
export interface DraftGuess {
  readonly token: number
  readonly q: Float64Array | undefined
}

/** The decided token and whether it is the draft. */
export interface Verdict {
  readonly token: number
  readonly accepted: boolean
}

/**
 * Decides the token at one position from the target's distribution p and, if there is one, a
 * draft. With a draft this is speculative sampling (Leviathan et al. 2023): accept x with
 * probability min(1, p(x)/q(x)), else draw from norm(max(0, p - q)); either way the result is
 * distributed as p. Without a draft it draws from p. When `greedy` the result is argmax(p)
 * and the draft is accepted iff it equals it; no randomness is used.
 *
 * p (V,), q (V,) -> token in [0, V)
 */
export function verifyToken (p: Float64Array, draft: DraftGuess | undefined, random: RandomSource, greedy: boolean): Verdict {
  if (greedy) {
    const token = argmax(p)
    return { token, accepted: draft?.token === token }
  }
  if (draft === undefined) return { token: random.sample(p), accepted: false }
  const x = draft.token
  const px = p[x] ?? 0
  const qx = draft.q === undefined ? 1 : (draft.q[x] ?? 0)
  if (!(qx > 0)) throw new RangeError(`Cannot verify draft token ${x}: its draft probability is ${qx}, it could not have been drawn`)
  if (random.uniform() * qx < px) return { token: x, accepted: true }
  const residual = residualDistribution(p, draft)
  return { token: residual === undefined ? random.sample(p) : random.sample(residual), accepted: false }
}

/**
 * max(0, p - q), unnormalized (sampling normalizes); undefined when its mass is zero to
 * rounding (p == q, where rejection cannot happen but for rounding).
 *
 * p (V,), q (V,) -> residual (V,)
 */
export function residualDistribution (p: Float64Array, draft: DraftGuess): Float64Array | undefined {
  const r = new Float64Array(p.length)
  let mass = 0
  for (let i = 0; i < p.length; i++) {
    const qi = draft.q === undefined ? (i === draft.token ? 1 : 0) : (draft.q[i] ?? 0)
    const d = (p[i] as number) - qi
    if (d > 0) {
      r[i] = d
      mass += d
    }
  }
  return mass > 1e-12 ? r : undefined
}
