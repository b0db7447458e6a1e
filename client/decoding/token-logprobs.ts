/**
 * Log-probabilities of decided tokens, as OpenAI's `logprobs` report them: the model's own
 * distribution (log-softmax of the raw logits), before temperature, top-k/top-p and the
 * repetition penalty shape what is sampled. So a token's logprob is the same whatever the
 * sampling settings and the decoding mode.
 */

/** Most alternatives a request may ask for per position (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20

export interface TokenLogprob {
  readonly token: number
  /** ln p(token), the model's distribution at this position. */
  readonly logprob: number
  /** The `top` likeliest tokens at this position, likeliest first (ties: lower id first). */
  readonly top: ReadonlyArray<{ readonly token: number, readonly logprob: number }>
}

/** Where decode records log-probabilities when asked for them (DecodeOptions.logprobs). */
export interface LogprobLog {
  /** Alternatives to list per position, 0..MAX_TOP_LOGPROBS. */
  readonly top: number
  /** Filled by decode: one entry per generated token, in order. */
  readonly generated: TokenLogprob[]
  /**
   * Filled by decode: by index into the prompt, an entry for every prompt token but the
   * first (no row before it is computed: it starts the sequence, or follows cached tokens).
   */
  readonly prompt: Array<TokenLogprob | undefined>
}

export function newLogprobLog (top: number): LogprobLog {
  if (!(Number.isInteger(top) && top >= 0 && top <= MAX_TOP_LOGPROBS)) throw new RangeError(`Cannot list ${top} top logprobs: it must be an integer in [0, ${MAX_TOP_LOGPROBS}]`)
  return { top, generated: [], prompt: [] }
}

/**
 * `token`'s log-probability under logits `row` (V,) and the `top` likeliest tokens'.
 * Float64 throughout: a log-sum-exp over 32K float32 terms loses digits otherwise.
 */
export function tokenLogprob (row: Float32Array, token: number, top: number): TokenLogprob {
  if (!(Number.isInteger(token) && token >= 0 && token < row.length)) throw new RangeError(`Cannot take the logprob of token ${token}: the vocabulary has ${row.length} tokens`)
  let max = -Infinity
  for (let i = 0; i < row.length; i++) if ((row[i] as number) > max) max = row[i] as number
  let sum = 0
  for (let i = 0; i < row.length; i++) sum += Math.exp((row[i] as number) - max)
  const logZ = max + Math.log(sum)
  return {
    token,
    logprob: (row[token] as number) - logZ,
    top: topIndices(row, top).map(t => ({ token: t, logprob: (row[t] as number) - logZ }))
  }
}

/** Indices of the `n` largest values, largest first, lower index first on ties: O(V·n), n ≤ 20. */
function topIndices (row: Float32Array, n: number): number[] {
  const best: number[] = []
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number
    if (best.length === n && !(v > (row[best[n - 1] as number] as number))) continue
    let at = best.length
    while (at > 0 && v > (row[best[at - 1] as number] as number)) at--
    best.splice(at, 0, i)
    if (best.length > n) best.pop()
  }
  return best
}
