/**
 * Several generations of one prompt that compute it once: the first generation's session runs
 * the prompt, and as soon as that run is back (its first chunk, or its end) every other session
 * copies the first's caches, and the logits after the prompt's last token, from the servers
 * (ChatSession.adopt): their first token costs no run at all. `generateMany` and the API's
 * `n` choices start this way.
 */
import type { ChatSession } from './language-model.js'
import type { GenerateChunk, GenerateOptions, GenerationResult } from './text-generation.js'

/**
 * One generation per session after `ids`, the first session computing the prompt for all.
 * `options(i)` are generation i's. The streams must be consumed together: the others wait for
 * the first's prompt run, and fail if the first ends before it is back.
 */
export function sharedPromptGenerations (sessions: readonly ChatSession[], ids: readonly number[], options: (index: number) => GenerateOptions): Array<AsyncGenerator<GenerateChunk, GenerationResult>> {
  const [first] = sessions
  if (first === undefined) return []
  const primed = Promise.withResolvers<void>()
  primed.promise.catch(() => {}) // the others are told; the first's own error reaches its consumer
  return sessions.map((session, index) => index === 0
    ? priming(first.continueWith(ids, options(0)), primed)
    : afterPriming(session, first, ids, primed.promise, options(index)))
}

/**
 * The first generation: `primed` resolves once its first run is back (its first chunk, or its
 * end), when its caches hold the prompt and its tap the logits after it.
 */
async function * priming (stream: AsyncGenerator<GenerateChunk, GenerationResult>, primed: PromiseWithResolvers<void>): AsyncGenerator<GenerateChunk, GenerationResult> {
  try {
    const next = await stream.next()
    primed.resolve()
    if (next.done === true) return next.value
    yield next.value
    return yield * stream
  } catch (err) {
    primed.reject(err) // before its prompt was back: the others fail with the first's own error
    throw err
  } finally {
    primed.reject(new Error('The first generation ended before its prompt was computed')) // no-op once settled
    await stream.return(undefined as never) // a consumer that stopped early stops the generation too
  }
}

/** Another generation: once the first holds the prompt, its session copies it from there, then generates. */
async function * afterPriming (session: ChatSession, first: ChatSession, ids: readonly number[], primed: Promise<void>, opts: GenerateOptions): AsyncGenerator<GenerateChunk, GenerationResult> {
  await primed
  opts.signal?.throwIfAborted()
  await session.adopt(first, ids)
  return yield * session.continueWith(ids, opts)
}
