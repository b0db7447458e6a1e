/** logprobs, echo and logit_bias through the OpenAI-compatible API: the SDK's numbers, in OpenAI's shapes. */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NgramDrafter, type TokenLogprob } from '../../client/decoding/index.js'
import { LanguageModel } from '../../client/language-model.js'
import { OpenAiServer } from '../../client/openai/openai-server.js'
import { TokenPieces } from '../../client/tokenizer/index.js'
import { chatModelCopy } from '../helpers/chat-model.js'
import { events, post, sdkResult } from '../helpers/openai-http.js'

const CLOSE = 1e-9 // the API and the SDK run the same local model: the same numbers

describe('OpenAI-compatible API: logprobs, echo and logit_bias', () => {
  const dir = chatModelCopy()
  let model: LanguageModel
  let server: OpenAiServer
  let pieces: TokenPieces
  beforeAll(async () => {
    model = await LanguageModel.local(dir)
    server = await OpenAiServer.listen({ model, modelId: 'stories260k', maxSessions: 2 }, { port: 0 })
    pieces = new TokenPieces(model.tokenizer)
  })
  afterAll(async () => {
    await server.close()
    await model.release()
    rmSync(join(dir, '..'), { recursive: true, force: true })
  })

  /** Completions' parallel lists against SDK entries (`undefined`: a prompt's first token). */
  function expectCompletionLogprobs (got: any, ids: readonly number[], want: ReadonlyArray<TokenLogprob | undefined>, top: number): void {
    expect(got.tokens).toEqual(ids.map(id => pieces.of(id).text))
    expect(got.token_logprobs).toHaveLength(ids.length)
    for (const [i, w] of want.entries()) {
      if (w === undefined) {
        expect(got.token_logprobs[i]).toBeNull()
        expect(got.top_logprobs[i]).toBeNull()
        continue
      }
      expect(Math.abs(got.token_logprobs[i] - w.logprob)).toBeLessThan(CLOSE)
      expect(Object.keys(got.top_logprobs[i])).toHaveLength(top)
      for (const t of w.top) expect(Math.abs(got.top_logprobs[i][pieces.of(t.token).text] - t.logprob)).toBeLessThan(CLOSE)
    }
  }

  it('completions: logprobs N lists each token\'s logprob and N alternatives, and offsets into the text', async () => {
    const { json } = await post(server, '/completions', { prompt: 'Once upon a time', temperature: 0, max_tokens: 20, logprobs: 3 })
    const sdk = await sdkResult(model.generate('Once upon a time', { temperature: 0, maxNewTokens: 20, logprobs: 3 }))
    const choice = json.choices[0]
    expect(choice.text).toBe(sdk.text)
    expectCompletionLogprobs(choice.logprobs, sdk.tokens, sdk.logprobs!, 3)
    // greedy: every token is its position's likeliest
    for (const [i, lp] of (choice.logprobs.token_logprobs as number[]).entries()) expect(lp).toBe(Math.max(...Object.values(choice.logprobs.top_logprobs[i] as Record<string, number>)))
    const offsets = choice.logprobs.text_offset as number[]
    expect(offsets[0]).toBe(0)
    for (const [i, token] of (choice.logprobs.tokens as string[]).entries()) expect(choice.text.slice(offsets[i], offsets[i + 1] ?? choice.text.length)).toBe(token)
  })

  it('chat: logprobs true with top_logprobs, the tokens spelling the reply', async () => {
    const messages = [{ role: 'user', content: 'Tell me about a dog.' }]
    const { json } = await post(server, '/chat/completions', { messages, temperature: 0, max_tokens: 16, logprobs: true, top_logprobs: 2 })
    const ids = model.tokenizer.encode(model.chatTemplate!.render(messages), { addSpecialTokens: false })
    const session = await model.session()
    const sdk = await sdkResult(session.continueWith(ids, { temperature: 0, maxNewTokens: 16, logprobs: 2 }))
    await session.close()
    const content = json.choices[0].logprobs.content as Array<{ token: string, logprob: number, bytes: number[], top_logprobs: Array<{ token: string, logprob: number }> }>
    expect(content.map(c => c.token).join('')).toBe(json.choices[0].message.content)
    expect(content).toHaveLength(sdk.tokens.length)
    for (const [i, c] of content.entries()) {
      expect(Math.abs(c.logprob - (sdk.logprobs![i] as TokenLogprob).logprob)).toBeLessThan(CLOSE)
      expect(c.top_logprobs.map(t => t.token)).toEqual(sdk.logprobs![i]!.top.map(t => pieces.of(t.token).text))
      expect(Buffer.from(c.bytes).toString('utf8')).toBe(c.token)
    }
    // without logprobs the field stays null
    expect((await post(server, '/chat/completions', { messages, temperature: 0, max_tokens: 4 })).json.choices[0].logprobs).toBeNull()
  })

  it('echo with max_tokens 0 scores the prompt: what LanguageModel.score gives', async () => {
    const text = 'Once upon a time, there was a little girl named Lily.'
    const { status, json } = await post(server, '/completions', { prompt: text, echo: true, max_tokens: 0, logprobs: 1 })
    expect(status).toBe(200)
    const scored = await model.score(text, { top: 1 })
    expect(scored.logprobs[0]).toBeUndefined()
    const choice = json.choices[0]
    expect(choice.text).toBe(text)
    expect(choice.finish_reason).toBe('length')
    expectCompletionLogprobs(choice.logprobs, scored.tokens, scored.logprobs, 1)
    expect(json.usage).toMatchObject({ prompt_tokens: scored.tokens.length, completion_tokens: 0 })
    // the scores are the model's: the sum of the same text's logprobs through generation's own path
    const generated = await sdkResult(model.generate(scored.tokens.slice(0, 3), { temperature: 0, maxNewTokens: 1, logprobs: 0 }))
    expect(Math.abs((generated.promptLogprobs![2] as TokenLogprob).logprob - (scored.logprobs[2] as TokenLogprob).logprob)).toBeLessThan(1e-5)
  })

  it('echo while generating, streamed: the prompt and its scores first, then the completion\'s', async () => {
    const body = { prompt: 'Lily and Ben', echo: true, temperature: 0, max_tokens: 12, logprobs: 2 }
    const whole = (await post(server, '/completions', body)).json.choices[0]
    const got = await events(server, '/completions', body)
    const chunks = got.slice(0, -2).map(c => c.choices[0])
    expect(chunks.map(c => c.text).join('')).toBe(whole.text)
    expect(whole.text.startsWith('Lily and Ben')).toBe(true)
    const joined: Record<string, unknown[]> = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }
    for (const c of chunks) for (const [key, list] of Object.entries(joined)) list.push(...c.logprobs[key])
    expect(joined).toEqual(whole.logprobs)
    const promptLength = model.encode('Lily and Ben').length
    expect(whole.logprobs.token_logprobs[0]).toBeNull()
    expect(whole.logprobs.token_logprobs.slice(1).every((x: unknown) => typeof x === 'number')).toBe(true)
    expect(whole.logprobs.tokens).toHaveLength(promptLength + 12)
    const offsets = whole.logprobs.text_offset as number[]
    expect(whole.text.slice(offsets[promptLength])).toBe(whole.text.slice('Lily and Ben'.length))
  })

  it('logit_bias bans a token the greedy text had, as the SDK does, in every decoding mode', async () => {
    const plain = await sdkResult(model.generate('Once upon a time', { temperature: 0, maxNewTokens: 24 }))
    const banned = plain.tokens[0] as number // "," after the prompt
    const body = { prompt: 'Once upon a time', temperature: 0, max_tokens: 24, logit_bias: { [banned]: -100 } }
    const { json } = await post(server, '/completions', body)
    const sdk = await sdkResult(model.generate('Once upon a time', { temperature: 0, maxNewTokens: 24, logitBias: { [banned]: -100 } }))
    expect(json.choices[0].text).toBe(sdk.text)
    expect(sdk.tokens).not.toContain(banned)
    expect(sdk.text).not.toBe(plain.text)
    const speculative = await sdkResult(model.generate('Once upon a time', { temperature: 0, maxNewTokens: 24, logitBias: { [banned]: -100 }, speculation: 'pipelined', drafter: new NgramDrafter() }))
    expect(speculative.tokens).toEqual(sdk.tokens)
    expect((await post(server, '/completions', { ...body, logit_bias: { 999999: 1 } })).json.error.param).toBe('logit_bias')
  })

  it('presence and frequency penalties: fewer repeats than plain greedy, as the SDK gives, in every decoding mode', async () => {
    const prompt = 'Once upon a time'
    const opts = { temperature: 0, maxNewTokens: 40, stopAtEos: false }
    const repeats = (tokens: readonly number[]): number => tokens.length - new Set(tokens).size
    const plain = await sdkResult(model.generate(prompt, opts))
    const sdk = await sdkResult(model.generate(prompt, { ...opts, presencePenalty: 1.5, frequencyPenalty: 0.5 }))
    expect(repeats(sdk.tokens)).toBeLessThan(repeats(plain.tokens))
    const { json } = await post(server, '/completions', { prompt, temperature: 0, max_tokens: 40, presence_penalty: 1.5, frequency_penalty: 0.5 })
    expect(json.choices[0].text).toBe(sdk.text)
    for (const speculation of ['sync', 'pipelined'] as const) {
      const speculative = await sdkResult(model.generate(prompt, { ...opts, presencePenalty: 1.5, frequencyPenalty: 0.5, speculation, drafter: new NgramDrafter() }))
      expect(speculative.tokens).toEqual(sdk.tokens)
    }
    // sampling: same seed, same text in plain and speculative decoding
    const sampled = { ...opts, temperature: 0.8, seed: 4, presencePenalty: 1, frequencyPenalty: 0.5 }
    const sampledPlain = await sdkResult(model.generate(prompt, sampled))
    expect((await sdkResult(model.generate(prompt, { ...sampled, speculation: 'pipelined', drafter: new NgramDrafter() }))).tokens).toEqual(sampledPlain.tokens)
  })
})
