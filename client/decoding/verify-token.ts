import { argmax } from '../sampling/index.js'
import { keyedRandom, type RandomSource } from './keyed-random.js'

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
  return verifyCandidates(p, draft, () => undefined, random)
}

/**
 * Speculative sampling over several candidates (SpecInfer's multi-step verification, with
 * candidates drawn without replacement as in recursive rejection sampling): candidate i, drawn
 * from q_i = q without the earlier candidates, is accepted with probability
 * min(1, p_i(x) / q_i(x)), where p_1 = p and p_(i+1) = norm(max(0, p_i - q_i)); when every
 * candidate is rejected the token is drawn from the last residual. Since
 * p_i = min(p_i, q_i) + max(0, p_i - q_i) at every step, the result is distributed as p
 * whatever the candidates are; more candidates only make it likelier that the result is one
 * of them (a tree's branch then already carries it). The draft is candidate 0;
 * `nextCandidate(taken)` gives the next or undefined. `accepted` means the draft itself.
 *
 * p (V,), q (V,) -> token in [0, V)
 */
export function verifyCandidates (p: Float64Array, draft: DraftGuess, nextCandidate: (taken: readonly number[]) => number | undefined, random: RandomSource): Verdict {
  const q = (v: number): number => draft.q === undefined ? (v === draft.token ? 1 : 0) : (draft.q[v] ?? 0)
  let target = p // p_i, unnormalized: its mass is targetMass
  let targetMass = 1
  const taken: number[] = []
  let rest = 1 // q's mass outside the candidates tried
  for (let x: number | undefined = draft.token; x !== undefined; x = nextCandidate(taken)) {
    const qx = q(x) / rest
    if (!(qx > 0) || taken.includes(x)) throw new RangeError(`Cannot verify candidate ${x}: its draft probability is ${qx}, it could not have been drawn`)
    if (random.uniform() * qx * targetMass < (target[x] ?? 0)) return { token: x, accepted: taken.length === 0 }
    taken.push(x)
    // max(0, p_i - q_i). q_i is q / rest off the earlier candidates and 0 on them, but p_i is
    // already 0 there (a rejected x has p_i(x) < q_i(x)), so q / rest everywhere gives the same.
    const residual = new Float64Array(p.length)
    let mass = 0
    for (let v = 0; v < p.length; v++) {
      const d = (target[v] as number) / targetMass - q(v) / rest
      if (d > 0) {
        residual[v] = d
        mass += d
      }
    }
    // zero to rounding: p_i == q_i, where rejection cannot happen but for rounding
    if (!(mass > 1e-12)) return { token: random.sample(target), accepted: false }
    target = residual
    targetMass = mass
    rest -= q(x)
    if (!(rest > 1e-12)) break
  }
  return { token: random.sample(target), accepted: false }
}

/** Candidates a sampled position is verified against: its draft and up to this many - 1 more. */
export const SAMPLED_CANDIDATES = 4

/**
 * The next verification candidate of a sampled position: a draw from q without the candidates
 * `taken` (the draft first), keyed by (seed, position, 'draft', taken.length); undefined once
 * SAMPLED_CANDIDATES are taken or they hold all of q's mass. The drafter draws the draft with
 * index 0 and offers candidates 1.. as the draft's alternatives; the verifier tries them in the
 * same order, so a branch on one carries exactly the token the verifier will test.
 *
 * q (V,) -> token in [0, V)
 */
export function keyedCandidate (q: Float64Array, taken: readonly number[], seed: number, position: number): number | undefined {
  if (taken.length === 0 || taken.length >= SAMPLED_CANDIDATES) return undefined
  let rest = 1
  for (const t of taken) rest -= q[t] ?? 0
  if (!(rest > 1e-12)) return undefined
  const skip = [...taken].sort((a, b) => a - b) // one pass over q, stepping over the taken tokens in order
  let next = 0
  let u = keyedRandom(seed, position, 'draft', taken.length).uniform() * rest
  let last: number | undefined
  for (let v = 0; v < q.length; v++) {
    if (v === skip[next]) {
      next++
      continue
    }
    const qv = q[v] as number
    if (!(qv > 0)) continue
    last = v
    u -= qv
    if (u < 0) return v
  }
  return last // rounding left u a hair above 0
}

/** Every candidate of a position after its draft `first`, in the order the verifier tries them (keyedCandidate). */
export function keyedCandidates (q: Float64Array, first: number, seed: number, position: number): number[] {
  const taken = [first]
  for (let c = keyedCandidate(q, taken, seed, position); c !== undefined; c = keyedCandidate(q, taken, seed, position)) taken.push(c)
  return taken.slice(1)
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
