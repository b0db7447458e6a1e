/** The OpenAI-compatible HTTP API over a local model: what it answers equals what the SDK generates. */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { MIN_SHARED_TOKENS } from '../../client/openai/completion-request.js'
import { OpenAiServer, type OpenAiServerInit } from '../../client/openai/openai-server.js'
import { sharedPrefix } from '../../client/openai/session-pool.js'
import type { GenerateOptions } from '../../client/text-generation.js'
import { chatModelCopy } from '../helpers/chat-model.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { events, post, sdkResult, withServer } from '../helpers/openai-http.js'

const GREEDY = { temperature: 0, max_tokens: 24 }

describe('OpenAI-compatible API', () => {
  const dir = chatModelCopy()
  let model: LanguageModel
  let server: OpenAiServer
  beforeAll(async () => {
    model = await LanguageModel.local(dir)
    server = await OpenAiServer.listen({ model, modelId: 'stories260k', maxSessions: 2 }, { port: 0 })
  })
  afterAll(async () => {
    await server.close()
    await model.release()
    rmSync(join(dir, '..'), { recursive: true, force: true })
  })

  it('lists its model', async () => {
    const res = await fetch(`${server.url}/models`)
    expect(await res.json()).toMatchObject({ object: 'list', data: [{ id: 'stories260k', object: 'model', owned_by: 'petal' }] })
    expect(((await (await fetch(`${server.url}/models/stories260k`)).json()) as { id: string }).id).toBe('stories260k')
    expect((await fetch(`${server.url}/models/gpt-4`)).status).toBe(404)
  })

  it('completes a prompt as the SDK does, with OpenAI usage and finish reason', async () => {
    const { status, json } = await post(server, '/completions', { model: 'stories260k', prompt: 'Once upon a time', ...GREEDY })
    const expected = await sdkResult(model.generate('Once upon a time', { temperature: 0, maxNewTokens: 24 }))
    expect(status).toBe(200)
    expect(json).toMatchObject({ object: 'text_completion', model: 'stories260k', choices: [{ index: 0, text: expected.text, finish_reason: expected.stopReason === 'max-new-tokens' ? 'length' : 'stop' }] })
    expect(json.id).toMatch(/^cmpl-/)
    const promptLength = model.encode('Once upon a time').length
    expect(json.usage).toMatchObject({ prompt_tokens: promptLength, completion_tokens: expected.tokens.length, total_tokens: promptLength + expected.tokens.length })
    expect(json.petal.route).toBe('local')
  })

  it('takes token ids as the prompt, and a seed makes sampling repeat', async () => {
    const ids = model.encode('Lily had a')
    const sampled = { prompt: ids, temperature: 1, top_k: 20, seed: 7, max_tokens: 16 }
    const first = await post(server, '/completions', sampled)
    const second = await post(server, '/completions', sampled)
    const expected = await sdkResult(model.generate(ids, { temperature: 1, topK: 20, seed: 7, maxNewTokens: 16 }))
    expect(first.json.choices[0].text).toBe(expected.text)
    expect(second.json.choices[0].text).toBe(expected.text)
    expect((await post(server, '/completions', { prompt: [1, 999_999] })).json.error.param).toBe('prompt')
  })

  it('streams the same text as server-sent events, then the finish, the usage and [DONE]', async () => {
    const whole = await post(server, '/completions', { prompt: 'The cat', ...GREEDY })
    const got = await events(server, '/completions', { prompt: 'The cat', ...GREEDY, stream_options: { include_usage: true } })
    expect(got.at(-1)).toBe('[DONE]')
    const usage = got.at(-2)
    expect(usage.choices).toEqual([])
    const { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: totalTokens } = whole.json.usage
    expect(usage.usage).toMatchObject({ prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: totalTokens })
    // the same prompt again: its session held all of it (but one token, which a run must carry)
    expect(usage.usage.prompt_tokens_details.cached_tokens).toBe(promptTokens - 1)
    const finish = got.at(-3)
    expect(finish.choices[0].finish_reason).toBe(whole.json.choices[0].finish_reason)
    const chunks = got.slice(0, -3)
    expect(chunks.length).toBeGreaterThan(1)
    expect(chunks.map(c => c.choices[0].text).join('')).toBe(whole.json.choices[0].text)
    expect(new Set(got.slice(0, -1).map(c => c.id)).size).toBe(1)
  })

  it('n choices: each on a session of its own, choice i sampled with seed + i, whole and streamed', async () => {
    const body = { prompt: 'Tom saw a big red ball', temperature: 1, top_k: 40, seed: 11, max_tokens: 16, n: 2 }
    const whole = await post(server, '/completions', body)
    expect(whole.status).toBe(200)
    const texts = (whole.json.choices as Array<{ index: number, text: string }>).map(c => c.text)
    expect(whole.json.choices.map((c: { index: number }) => c.index)).toEqual([0, 1])
    const expected = await Promise.all([11, 12].map(async seed => await sdkResult(model.generate('Tom saw a big red ball', { temperature: 1, topK: 40, seed, maxNewTokens: 16 }))))
    expect(texts).toEqual(expected.map(e => e.text))
    expect(texts[0]).not.toBe(texts[1])
    expect(whole.json.usage.completion_tokens).toBe(expected[0]!.tokens.length + expected[1]!.tokens.length)
    // the prompt was computed in this request (once, for both choices): it counts as sent, not cached
    expect(whole.json.usage.prompt_tokens_details.cached_tokens).toBeLessThan(whole.json.usage.prompt_tokens - 1)
    const got = await events(server, '/completions', { ...body, stream_options: { include_usage: true } })
    const byChoice = [0, 1].map(i => got.filter(e => e !== '[DONE]' && e.choices[0]?.index === i))
    for (const [i, chunks] of byChoice.entries()) {
      expect(chunks.map(c => c.choices[0].text).join('')).toBe(texts[i])
      expect(chunks.at(-1).choices[0].finish_reason).toBe('length')
    }
    expect(got.at(-2).usage.completion_tokens).toBe(whole.json.usage.completion_tokens)
  })

  it('n choices of a long prompt: computed once and copied, each choice still what the SDK samples with its seed', async () => {
    const prompt = 'Once upon a time, there was a little girl named Lily. She loved to play in the park with her dog Max. One day, they found a big red ball under a tree, and'
    expect(model.encode(prompt).length).toBeGreaterThan(MIN_SHARED_TOKENS + 1)
    const body = { prompt, temperature: 1, top_k: 40, seed: 5, max_tokens: 12, n: 2 }
    const whole = await post(server, '/completions', body)
    const expected = await Promise.all([5, 6].map(async seed => await sdkResult(model.generate(prompt, { temperature: 1, topK: 40, seed, maxNewTokens: 12 }))))
    expect(whole.json.choices.map((c: { text: string }) => c.text)).toEqual(expected.map(e => e.text))
    expect(whole.json.usage.prompt_tokens_details.cached_tokens).toBeLessThan(whole.json.usage.prompt_tokens - 1)
    const streamed = await events(server, '/completions', { ...body, seed: 7 })
    const again = await Promise.all([7, 8].map(async seed => await sdkResult(model.generate(prompt, { temperature: 1, topK: 40, seed, maxNewTokens: 12 }))))
    for (const i of [0, 1]) {
      const text = streamed.filter(e => e !== '[DONE]' && e.choices[0]?.index === i).map(e => e.choices[0].text).join('')
      expect(text).toBe(again[i]?.text)
    }
  })

  it('chats through the template; the next turn reuses the session and sends only what it lacks', async () => {
    const first = [{ role: 'system', content: 'Tell a story.' }, { role: 'user', content: 'Lily went to the park.' }]
    const one = await post(server, '/chat/completions', { messages: first, ...GREEDY })
    expect(one.json).toMatchObject({ object: 'chat.completion', choices: [{ message: { role: 'assistant' } }] })
    const reply = one.json.choices[0].message.content as string
    const second = [...first, { role: 'assistant', content: reply }, { role: 'user', content: 'What did she find?' }]
    const two = await post(server, '/chat/completions', { messages: second, ...GREEDY })
    // the reference: a fresh session given the whole conversation
    const ids = model.tokenizer.encode(model.chatTemplate!.render(second), { addSpecialTokens: false })
    const session = await model.session()
    const expected = await sdkResult(session.continueWith(ids, { temperature: 0, maxNewTokens: 24 }))
    await session.close()
    expect(two.json.choices[0].message.content).toBe(expected.text)
    expect(two.json.usage.prompt_tokens).toBe(ids.length)
    // all of the first turn's prompt and reply were in the caches (but the reply's last token)
    expect(two.json.usage.prompt_tokens_details.cached_tokens).toBeGreaterThanOrEqual(one.json.usage.total_tokens - 2)
    expect(one.json.usage.prompt_tokens_details.cached_tokens).toBeLessThan(one.json.usage.prompt_tokens)
  })

  it('a new conversation\'s session copies the system prompt from an idle one; that conversation keeps its own session', async () => {
    const system = { role: 'system', content: 'You tell short, warm stories about Lily, her dog Max and their friends in the park, and every story ends well.' }
    const userA = { role: 'user', content: 'Tell me about the day Lily and Max found a big red ball under the old tree near the pond, and what they did with it.' }
    const userB = { role: 'user', content: 'Who is Tom?' }
    const ask = async (api: OpenAiServer, messages: unknown[]): Promise<any> => (await post(api, '/chat/completions', { messages, ...GREEDY })).json
    const [a1, b1, a2] = await withServer({ model, maxSessions: 4 }, async api => {
      const a1 = await ask(api, [system, userA])
      const b1 = await ask(api, [system, userB])
      const a2 = await ask(api, [system, userA, { role: 'assistant', content: a1.choices[0].message.content }, { role: 'user', content: 'And then?' }])
      return [a1, b1, a2]
    })
    const rendered = (user: unknown): number[] => model.tokenizer.encode(model.chatTemplate!.render([system, user as { role: string, content: string }]), { addSpecialTokens: false }) // as the API encodes
    const shared = sharedPrefix(rendered(userA), rendered(userB)) // the system prompt and the user turn's markup
    expect(shared).toBeGreaterThan(MIN_SHARED_TOKENS)
    expect(a1.usage.prompt_tokens_details.cached_tokens).toBe(0)
    expect(b1.usage.prompt_tokens_details.cached_tokens).toBe(shared) // copied, not sent
    expect(a2.usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(a1.usage.prompt_tokens) // A's session still holds A
    // what they answer is what a server whose sessions copy nothing answers
    const plain = await withServer({ model, maxSessions: 4, sharePrompt: false }, async api => {
      await ask(api, [system, userA])
      return await ask(api, [system, userB])
    })
    expect(plain.usage.prompt_tokens_details.cached_tokens).toBe(0)
    expect(b1.choices[0].message.content).toBe(plain.choices[0].message.content)
  })

  it('streams a chat: the role first, then the content deltas', async () => {
    const messages = [{ role: 'user', content: 'Tell me about a dog.' }]
    const whole = await post(server, '/chat/completions', { messages, ...GREEDY })
    const got = await events(server, '/chat/completions', { messages, ...GREEDY })
    expect(got[0]).toMatchObject({ object: 'chat.completion.chunk', choices: [{ delta: { role: 'assistant' } }] })
    const deltas = got.slice(0, -2).map(c => c.choices[0].delta.content as string)
    expect(deltas.join('')).toBe(whole.json.choices[0].message.content)
    expect(got.at(-2).choices[0]).toMatchObject({ delta: {}, finish_reason: whole.json.choices[0].finish_reason })
  })

  it('answers bad requests with OpenAI-shaped errors, and keeps serving', async () => {
    const cases: Array<[string, unknown, number, string | null]> = [
      ['/completions', '{"prompt": ', 400, 'invalid_json'],
      ['/completions', { prompt: 'x', model: 'gpt-4' }, 404, 'model_not_found'],
      ['/completions', { prompt: 'x', best_of: 3 }, 400, 'unsupported_parameter'],
      ['/completions', { prompt: 'x', n: 3 }, 400, 'invalid_value'], // more choices than the 2 sessions
      ['/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 100_000 }, 400, 'context_length_exceeded'],
      ['/embeddings', { input: 'x' }, 404, 'not_found']
    ]
    for (const [path, body, status, code] of cases) {
      const res = await post(server, path, body)
      expect([res.status, res.json.error.code]).toEqual([status, code])
      expect(typeof res.json.error.message).toBe('string')
    }
    expect((await fetch(`${server.url}/completions`)).status).toBe(405)
    const ok = await post(server, '/completions', { prompt: 'Once upon a time', ...GREEDY })
    expect(ok.status).toBe(200)
  })

  it('refuses a body past the limit with 413', async () => {
    await withServer({ model, maxBodyBytes: 1000 }, async small => {
      const res = await post(small, '/completions', { prompt: 'x'.repeat(5000) })
      expect([res.status, res.json.error.code]).toEqual([413, 'body_too_large'])
    })
  })

  it('refuses chat for a model without a template', async () => {
    const base = await LanguageModel.local(BUNDLED_MODEL)
    try {
      await withServer({ model: base }, async plain => {
        const res = await post(plain, '/chat/completions', { messages: [{ role: 'user', content: 'x' }] })
        expect([res.status, res.json.error.code]).toEqual([400, 'no_chat_template'])
      })
    } finally {
      await base.release()
    }
  })

  it('GET /metrics: requests by endpoint and status, tokens in and out, sessions, in Prometheus\'s text format', async () => {
    await withServer({ model, maxSessions: 2 }, async api => {
      const ok = [await post(api, '/completions', { prompt: 'Once upon a time', ...GREEDY, max_tokens: 5 }), await post(api, '/completions', { prompt: 'Once upon a time there', ...GREEDY, max_tokens: 5 })]
      expect((await post(api, '/completions', { prompt: 'x', temperature: -1 })).status).toBe(400)
      const res = await fetch(`${api.url.replace(/\/v1$/, '')}/metrics`)
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
      const text = await res.text()
      const value = (sample: string): number => Number(new RegExp(`^${sample.replace(/[{}"]/g, c => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1])
      expect(value('petal_api_requests_total{endpoint="completion",status="200"}')).toBe(2)
      expect(value('petal_api_requests_total{endpoint="completion",status="400"}')).toBe(1)
      const usage = ok.map(r => r.json.usage)
      expect(value('petal_api_prompt_tokens_total')).toBe(usage[0].prompt_tokens + usage[1].prompt_tokens)
      expect(value('petal_api_prompt_tokens_cached_total')).toBe(usage[0].prompt_tokens_details.cached_tokens + usage[1].prompt_tokens_details.cached_tokens)
      expect(value('petal_api_prompt_tokens_cached_total')).toBeGreaterThan(0) // the second prompt continues the first's session
      expect(value('petal_api_completion_tokens_total')).toBe(usage[0].completion_tokens + usage[1].completion_tokens)
      expect(value('petal_api_time_to_first_token_seconds_count')).toBe(2)
      expect(value('petal_api_sessions{state="idle"}')).toBe(1)
      expect(value('petal_api_sessions{state="busy"}')).toBe(0)
      expect(text).toContain('# TYPE petal_api_requests_total counter')
    })
  })

  it('CORS: only with an allowed origin; the preflight needs no key', async () => {
    const cors = async (api: OpenAiServer): Promise<Array<string | null>> => {
      const preflight = await fetch(`${api.url}/chat/completions`, { method: 'OPTIONS', headers: { origin: 'https://ui.example', 'access-control-request-method': 'POST' } })
      const call = await post(api, '/completions', { prompt: 'x', max_tokens: 2 }, { origin: 'https://ui.example', authorization: 'Bearer k' })
      expect(call.status).toBe(200)
      return [String(preflight.status), preflight.headers.get('access-control-allow-origin'), preflight.headers.get('access-control-allow-headers'), call.headers.get('access-control-allow-origin')]
    }
    await withServer({ model, apiKey: 'k', corsOrigin: 'https://ui.example' }, async api => {
      expect(await cors(api)).toEqual(['204', 'https://ui.example', 'authorization, content-type', 'https://ui.example'])
    })
    // without --cors-origin nothing allows a page: the preflight is an unauthorized request
    await withServer({ model, apiKey: 'k' }, async api => {
      expect(await cors(api)).toEqual(['401', null, null, null])
    })
  })

  it('wants the API key when it has one', async () => {
    await withServer({ model, apiKey: 'sesame' }, async locked => {
      expect((await post(locked, '/completions', { prompt: 'x', max_tokens: 2 })).status).toBe(401)
      expect((await post(locked, '/completions', { prompt: 'x', max_tokens: 2 }, { authorization: 'Bearer wrong!' })).status).toBe(401)
      expect((await post(locked, '/completions', { prompt: 'x', max_tokens: 2 }, { authorization: 'Bearer sesame' })).status).toBe(200)
    })
  })
})

describe('OpenAI-compatible API under load and hang-ups', () => {
  // 5 ms each way around every run: a generation takes long enough to leave or to queue behind
  const slowOpts: GenerateOptions = { temperature: 0, maxNewTokens: 16 }
  let slow: LanguageModel
  beforeAll(async () => { slow = await LanguageModel.local(BUNDLED_MODEL, { oneWayLatencyMs: 5 }) })
  afterAll(async () => { await slow.release() })

  it('a client that hangs up mid-stream aborts its generation; the session is closed and the next request is exact', async () => {
    await withServer({ model: slow, maxSessions: 1 }, async api => {
      const controller = new AbortController()
      const res = await fetch(`${api.url}/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 400, stream: true }), signal: controller.signal })
      const reader = res.body!.getReader()
      await reader.read() // the first event
      controller.abort()
      await expect.poll(() => api.sessions, { timeout: 5000 }).toEqual({ busy: 0, idle: 0 })
      const after = await post(api, '/completions', { prompt: 'Lily', temperature: 0, max_tokens: 16 })
      const expected = await sdkResult(slow.generate('Lily', slowOpts))
      expect(after.json.choices[0].text).toBe(expected.text)
    })
  })

  it('requests beyond the sessions wait their turn; beyond maxWaiting they get 429', async () => {
    await withServer({ model: slow, maxSessions: 1, maxWaiting: 1 }, async api => {
      const prompts = ['Lily', 'Tom', 'The sun']
      const answers = prompts.map(p => post(api, '/completions', { prompt: p, temperature: 0, max_tokens: 16 }))
      const got = await Promise.all(answers)
      expect(got.map(r => r.status).sort()).toEqual([200, 200, 429])
      const refused = got.find(r => r.status === 429)
      expect(refused?.json.error.code).toBe('sessions_busy')
      for (const [i, r] of got.entries()) {
        if (r.status !== 200) continue
        expect(r.json.choices[0].text).toBe((await sdkResult(slow.generate(prompts[i] as string, slowOpts))).text)
      }
    })
  })
})
