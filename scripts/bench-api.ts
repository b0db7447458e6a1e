/**
 * API benchmark: a multi-turn chat through `petal-node api`'s server (`OpenAiServer`) over a
 * 3-server loopback swarm. Every turn is a stateless request carrying the whole conversation,
 * as OpenAI clients send it, streamed. Two servers over the same swarm and client:
 * "pooled" (the default: a turn finds its conversation's session, whose servers hold it) and
 * "no-reuse" (`--idle-timeout 0`: each request opens a session and sends the whole
 * conversation, what a stateless server without a pool does). Conversations alternate between
 * the two, the order rotated each round. One JSON line per figure: time to the first streamed
 * token and the whole turn (median over turns 2..T), prompt tokens sent per turn.
 * Then `--choices N` samples (default 4) of one prompt: one request with `n: N` (its choices
 * decode at once, batched on the servers) against N requests one after another. Last, N
 * choices of a long prompt no session holds (`--prompt-tokens`, default 256): computed once and
 * copied to the other choices' sessions (`adopt`) against computed on every choice's session;
 * and a new conversation whose system prompt (as long) an idle session holds: copied from it
 * against computed.
 *
 *   npm run bench:api
 *   npm run bench:api -- --models random-200m --latency-ms 20
 *   npm run bench:api -- --models random-200m --parts shared --prompt-tokens 256
 *   npm run bench:api -- --quick        # CI smoke run
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { LanguageModel } from '../client/language-model.js'
import { OpenAiServer } from '../client/openai/openai-server.js'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import { Checkpoint } from '../model/checkpoint.js'
import { LocalSwarm } from '../node/local-swarm.js'
import { fullyCovered, waitForServers } from '../test/helpers/swarm.js'
import { ZEPHYR_TEMPLATE } from '../test/helpers/chat-model.js'
import { emit, median } from './lib/bench-output.js'
import { ensureRandomModel } from './lib/random-models.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: args } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, models: { type: 'string' }, turns: { type: 'string' }, rounds: { type: 'string' }, 'latency-ms': { type: 'string' }, 'max-tokens': { type: 'string' }, choices: { type: 'string' }, 'prompt-tokens': { type: 'string' }, parts: { type: 'string' } }
})
const turns = Number(args.turns ?? (args.quick ? 3 : 6))
const rounds = Number(args.rounds ?? (args.quick ? 1 : 3))
const latencyMs = Number(args['latency-ms'] ?? 0)
const replyTokens = Number(args['max-tokens'] ?? (args.quick ? 8 : 32))
if (!(Number.isInteger(turns) && turns >= 2)) throw new RangeError(`Cannot chat --turns ${args.turns}: it must be an integer >= 2`)
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`Cannot run --rounds ${args.rounds}: it must be an integer >= 1`)
const choices = Number(args.choices ?? (args.quick ? 2 : 4))
if (!(Number.isInteger(choices) && choices >= 2 && choices <= 8)) throw new RangeError(`Cannot sample --choices ${args.choices}: it must be an integer in [2, 8]`)
const PARTS = ['chat', 'choices', 'shared', 'system']
const parts = new Set((args.parts ?? PARTS.join(',')).split(','))
for (const p of parts) if (!PARTS.includes(p)) throw new RangeError(`Cannot run --parts ${args.parts}: each must be one of ${PARTS.join(', ')}`)
const promptTokens = Number(args['prompt-tokens'] ?? (args.quick ? 40 : 256))
if (!(Number.isInteger(promptTokens) && promptTokens >= 8)) throw new RangeError(`Cannot send --prompt-tokens ${args['prompt-tokens']}: it must be an integer >= 8`)
if (!(latencyMs >= 0)) throw new RangeError(`Cannot delay --latency-ms ${args['latency-ms']}: it must be a number >= 0`)
const MESSAGES = ['Tell me a story about Lily and her dog.', 'What did the dog find in the garden?', 'Who came to help them?',
  'What happened at the end of the day?', 'Did they go to the park the next morning?', 'What did Lily learn?',
  'Tell me about her friend Tom.', 'What was the happiest moment?']
const SYSTEM = 'You are a storyteller for small children. Your stories are short, warm and simple.'

for (const name of (args.models ?? 'stories260k').split(',')) {
  const dir = name.includes('/') ? name : name === 'stories260k' ? join(ROOT, 'models', 'stories260k') : ensureRandomModel(name.replace(/^random-/, '').toUpperCase())
  await benchModel(dir)
}

interface Turn { ttftMs: number, turnMs: number, promptTokens: number, sent: number }

async function benchModel (dir: string): Promise<void> {
  const name = basename(dir)
  const L = Checkpoint.open(dir).config.numLayers
  const cuts = [0, Math.round(L / 3), Math.round((2 * L) / 3), L]
  const chatDir = withChatTemplate(dir)
  const swarm = new LocalSwarm(dir)
  const latency = latencyMs > 0 ? ['--link-latency-ms', String(latencyMs)] : []
  try {
    for (let i = 0; i < 3; i++) await swarm.add({ blocks: `${cuts[i]}:${cuts[i + 1]}`, args: latency })
    const client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, name, L, fullyCovered(L))
    const model = await LanguageModel.swarm(client, chatDir, latencyMs > 0 ? { sendDelayMs: latencyMs } : {})
    const config = { turns, rounds, replyTokens, latencyMs, servers: cuts.slice(0, 3).map((c, i) => `[${c},${cuts[i + 1]})`).join(' ') }
    if (parts.has('chat')) await benchChat(model, name, config)
    if (parts.has('choices')) await benchChoices(model, client, name, L, config)
    if (parts.has('shared')) await benchSharedPrompt(model, name, config)
    if (parts.has('system')) await benchSystemPrompt(model, name, config)
    await model.release()
    await client.close()
  } finally {
    await swarm.close()
    rmSync(join(chatDir, '..'), { recursive: true, force: true })
  }
}

/**
 * Conversations through a pooled server and one without reuse, alternated, the order rotated
 * each round: time to the first token and the whole turn, prompt tokens sent per turn.
 */
async function benchChat (model: LanguageModel, name: string, config: Record<string, unknown>): Promise<void> {
  const modes: Array<[string, OpenAiServer]> = [
    ['pooled', await OpenAiServer.listen({ model, modelId: name }, { port: 0 })],
    ['no-reuse', await OpenAiServer.listen({ model, modelId: name, idleMs: 0 }, { port: 0 })]
  ]
  await conversation(modes[0]?.[1] as OpenAiServer, name, 2) // warm-up
  const results = new Map<string, Turn[]>(modes.map(([mode]) => [mode, []]))
  for (let r = 0; r < rounds; r++) {
    for (let m = 0; m < modes.length; m++) {
      const [mode, server] = modes[(m + r) % modes.length] as [string, OpenAiServer]
      results.get(mode)?.push(...(await conversation(server, name, turns)).slice(1))
    }
  }
  for (const [mode, got] of results) {
    emit({ model: name, metric: `api_ttft_ms_${mode}`, value: median(got.map(t => t.ttftMs)), unit: 'ms', config })
    emit({ model: name, metric: `api_turn_ms_${mode}`, value: median(got.map(t => t.turnMs)), unit: 'ms', config })
    emit({ model: name, metric: `api_prompt_tokens_sent_per_turn_${mode}`, value: mean(got.map(t => t.sent)), unit: 'tokens', config: { ...config, promptTokensPerTurn: mean(got.map(t => t.promptTokens)) } })
  }
  const ttft = (mode: string): number => median((results.get(mode) ?? []).map(t => t.ttftMs))
  emit({ model: name, metric: 'api_ttft_no_reuse_over_pooled', value: ttft('no-reuse') / ttft('pooled'), unit: 'x', config })
  for (const [, server] of modes) await server.close()
}

/**
 * `choices` samples of one prompt, one request with `n` against that many requests in turn,
 * alternated over the rounds (a server with as many sessions): median wall time of each way,
 * and the share of the servers' runs for the one-request way that they computed in batches.
 */
async function benchChoices (model: LanguageModel, client: SwarmClient, name: string, numBlocks: number, config: Record<string, unknown>): Promise<void> {
  const server = await OpenAiServer.listen({ model, modelId: name, maxSessions: choices }, { port: 0 })
  const ask = async (n: number, seed: number): Promise<void> => {
    const res = await fetch(`${server.url}/completions`, { method: 'POST', body: JSON.stringify({ model: name, prompt: MESSAGES[0], max_tokens: replyTokens, temperature: 0.8, seed, n }) })
    if (res.status !== 200) throw new Error(`A sampling request failed with ${res.status}: ${await res.text()}`)
    await res.json()
  }
  /** Runs computed and runs computed in batches, all servers together, so far. */
  const counts = async (): Promise<[number, number]> => (await client.refresh(name, numBlocks))
    .reduce<[number, number]>(([c, b], s) => [c + (s.info.metrics?.runsComputed ?? 0), b + (s.info.metrics?.runsBatched ?? 0)], [0, 0])
  const ways: Array<[string, () => Promise<void>]> = [
    ['one_request', async () => { await ask(choices, 1) }],
    ['sequential', async () => { for (let i = 0; i < choices; i++) await ask(1, 1 + i) }]
  ]
  await ways[0]?.[1]() // warm-up
  const times = new Map<string, number[]>(ways.map(([way]) => [way, []]))
  let [computed, batched] = [0, 0]
  for (let r = 0; r < rounds; r++) {
    for (let w = 0; w < ways.length; w++) {
      const [way, run] = ways[(w + r) % ways.length] as [string, () => Promise<void>]
      const before = await counts()
      const began = performance.now()
      await run()
      times.get(way)?.push(performance.now() - began)
      if (way !== 'one_request') continue
      const after = await counts()
      computed += after[0] - before[0]
      batched += after[1] - before[1]
    }
  }
  const ms = (way: string): number => median(times.get(way) ?? [])
  const sampling = { ...config, choices, temperature: 0.8 }
  for (const [way] of ways) emit({ model: name, metric: `api_${choices}_samples_ms_${way}`, value: ms(way), unit: 'ms', config: sampling })
  emit({ model: name, metric: 'api_samples_sequential_over_one_request', value: ms('sequential') / ms('one_request'), unit: 'x', config: sampling })
  emit({ model: name, metric: 'api_samples_runs_batched_share', value: batched / Math.max(1, computed), unit: 'fraction', config: { ...sampling, runsComputed: computed } })
  await server.close()
}

/**
 * `choices` samples of a long prompt that no session holds (a new one each round), streamed:
 * the prompt computed once and copied to the other choices' sessions on the servers ("shared",
 * the default) against computed on every choice's session ("unshared", `sharePrompt: false`).
 * Sessions close after each request (`idleMs` 0), so every request starts from none. Median
 * time to the first streamed token and to the end, the two ways alternated over the rounds.
 */
async function benchSharedPrompt (model: LanguageModel, name: string, config: Record<string, unknown>): Promise<void> {
  const ways: Array<[string, OpenAiServer]> = [
    ['shared', await OpenAiServer.listen({ model, modelId: name, maxSessions: choices, idleMs: 0 }, { port: 0 })],
    ['unshared', await OpenAiServer.listen({ model, modelId: name, maxSessions: choices, idleMs: 0, sharePrompt: false }, { port: 0 })]
  ]
  const promptOf = (round: number): number[] => roundPrompt(model, round, promptTokens)
  const ask = async (server: OpenAiServer, round: number): Promise<{ ttftMs: number, ttftAllMs: number, ms: number }> => {
    const began = performance.now()
    const res = await fetch(`${server.url}/completions`, { method: 'POST', body: JSON.stringify({ model: name, prompt: promptOf(round), max_tokens: replyTokens, temperature: 0.8, seed: round, n: choices, stream: true }) })
    if (res.status !== 200) throw new Error(`A request for ${choices} choices failed with ${res.status}: ${await res.text()}`)
    const { ttftMs, ttftAllMs } = await readEvents(res, began)
    const ms = performance.now() - began
    return { ttftMs: ttftMs ?? ms, ttftAllMs: ttftAllMs ?? ms, ms }
  }
  for (const [w, [, server]] of ways.entries()) await ask(server, w) // warm-up
  const got = new Map<string, Array<{ ttftMs: number, ttftAllMs: number, ms: number }>>(ways.map(([way]) => [way, []]))
  for (let r = 0; r < rounds; r++) {
    for (let w = 0; w < ways.length; w++) {
      const [way, server] = ways[(w + r) % ways.length] as [string, OpenAiServer]
      got.get(way)?.push(await ask(server, ways.length + r * ways.length + w))
    }
  }
  const stat = (way: string, key: 'ttftMs' | 'ttftAllMs' | 'ms'): number => median((got.get(way) ?? []).map(g => g[key]))
  const shape = { ...config, choices, promptTokens, temperature: 0.8 }
  for (const [way] of ways) {
    emit({ model: name, metric: `api_choices_long_prompt_ttft_ms_${way}`, value: stat(way, 'ttftMs'), unit: 'ms', config: shape })
    emit({ model: name, metric: `api_choices_long_prompt_every_first_token_ms_${way}`, value: stat(way, 'ttftAllMs'), unit: 'ms', config: shape })
    emit({ model: name, metric: `api_choices_long_prompt_ms_${way}`, value: stat(way, 'ms'), unit: 'ms', config: shape })
  }
  emit({ model: name, metric: 'api_choices_long_prompt_ttft_unshared_over_shared', value: stat('unshared', 'ttftMs') / stat('shared', 'ttftMs'), unit: 'x', config: shape })
  emit({ model: name, metric: 'api_choices_long_prompt_every_first_token_unshared_over_shared', value: stat('unshared', 'ttftAllMs') / stat('shared', 'ttftAllMs'), unit: 'x', config: shape })
  emit({ model: name, metric: 'api_choices_long_prompt_unshared_over_shared', value: stat('unshared', 'ms') / stat('shared', 'ms'), unit: 'x', config: shape })
  for (const [, server] of ways) await server.close()
}

/**
 * A story of `tokens` tokens led by a token of its own for each `round`, so that no session of
 * an earlier round shares more than BOS with it.
 */
function roundPrompt (model: LanguageModel, round: number, tokens: number, words = MESSAGES.join(' ')): number[] {
  let text = ''
  while (model.encode(text).length < tokens + 1) text += `${words} `
  const base = model.encode(text)
  return [base[0] as number, 100 + round, ...base.slice(1)].slice(0, tokens)
}

/**
 * Two conversations that begin with the same system prompt (`--prompt-tokens` long, a new one
 * each round), on a server that starts each round with no session: the first's one request
 * computes it (with a long question, so its session does not look like the second's
 * conversation); the second, on a new session, copies it from the first's idle session
 * ("shared", the default) or computes it ("unshared"). Median time to the second's first
 * streamed token, the two ways alternated over the rounds.
 */
async function benchSystemPrompt (model: LanguageModel, name: string, config: Record<string, unknown>): Promise<void> {
  const ways: Array<[string, boolean]> = [['shared', true], ['unshared', false]]
  const question = model.encode(SYSTEM).slice(1, 9)
  const ask = async (server: OpenAiServer, prompt: number[], maxTokens: number): Promise<{ ttftMs: number, cached: number }> => {
    const began = performance.now()
    const res = await fetch(`${server.url}/completions`, { method: 'POST', body: JSON.stringify({ model: name, prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } }) })
    if (res.status !== 200) throw new Error(`A request failed with ${res.status}: ${await res.text()}`)
    const { ttftMs, chunks } = await readEvents(res, began)
    const usage = chunks.find(c => c.usage !== undefined)?.usage
    return { ttftMs: ttftMs ?? performance.now() - began, cached: usage?.prompt_tokens_details.cached_tokens ?? 0 }
  }
  const got = new Map<string, Array<{ ttftMs: number, cached: number }>>(ways.map(([way]) => [way, []]))
  for (let r = -1; r < rounds; r++) { // round -1 warms up
    for (let w = 0; w < ways.length; w++) {
      const [way, share] = ways[(w + Math.max(0, r)) % ways.length] as [string, boolean]
      const server = await OpenAiServer.listen({ model, modelId: name, maxSessions: 2, sessionTokens: 3 * promptTokens, ...(share ? {} : { sharePrompt: false }) }, { port: 0 })
      try {
        const system = roundPrompt(model, 2 * (r + 1) + w, promptTokens)
        await ask(server, [...system, ...roundPrompt(model, 0, promptTokens + 16, SYSTEM).slice(1)], 8)
        const second = await ask(server, [...system, ...question], replyTokens)
        if (r >= 0) got.get(way)?.push(second)
      } finally {
        await server.close()
      }
    }
  }
  const shape = { ...config, promptTokens, questionTokens: question.length }
  const stat = (way: string, key: 'ttftMs' | 'cached'): number => median((got.get(way) ?? []).map(g => g[key]))
  for (const [way] of ways) {
    emit({ model: name, metric: `api_system_prompt_second_conversation_ttft_ms_${way}`, value: stat(way, 'ttftMs'), unit: 'ms', config: { ...shape, cachedTokens: stat(way, 'cached') } })
  }
  emit({ model: name, metric: 'api_system_prompt_ttft_unshared_over_shared', value: stat('unshared', 'ttftMs') / stat('shared', 'ttftMs'), unit: 'x', config: shape })
}

/**
 * Reads a streamed response to its end: when its first token came (ms after `began`; a chunk
 * of a choice that has not finished), when every choice had its first, and every chunk, parsed.
 */
async function readEvents (res: Response, began: number): Promise<{ ttftMs: number | undefined, ttftAllMs: number | undefined, chunks: any[] }> {
  const firstByChoice = new Map<number, number>()
  const chunks: any[] = []
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const bytes of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(bytes, { stream: true })
    const events = buffered.split('\n\n')
    buffered = events.pop() ?? ''
    for (const event of events) {
      const data = event.slice('data: '.length)
      if (data === '[DONE]') continue
      const chunk = JSON.parse(data)
      const choice = chunk.choices?.[0]
      if (choice !== undefined && choice.finish_reason === null && !firstByChoice.has(choice.index)) firstByChoice.set(choice.index, performance.now() - began)
      chunks.push(chunk)
    }
  }
  const firsts = [...firstByChoice.values()]
  return { ttftMs: firsts.length > 0 ? Math.min(...firsts) : undefined, ttftAllMs: firsts.length > 0 ? Math.max(...firsts) : undefined, chunks }
}

/** One conversation of `n` turns, each a streamed request with the whole conversation so far. */
async function conversation (server: OpenAiServer, model: string, n: number): Promise<Turn[]> {
  const messages: Array<{ role: string, content: string }> = [{ role: 'system', content: SYSTEM }]
  const out: Turn[] = []
  for (let t = 0; t < n; t++) {
    messages.push({ role: 'user', content: MESSAGES[t % MESSAGES.length] as string })
    const began = performance.now()
    const res = await fetch(`${server.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages, max_tokens: replyTokens, temperature: 0, stream: true, stream_options: { include_usage: true } })
    })
    if (res.status !== 200) throw new Error(`Turn ${t} failed with ${res.status}: ${await res.text()}`)
    const { ttftMs, chunks } = await readEvents(res, began)
    let reply = ''
    let usage: { prompt_tokens: number, prompt_tokens_details: { cached_tokens: number } } | undefined
    for (const chunk of chunks) {
      const delta = chunk.choices?.[0]?.delta
      if (typeof delta?.content === 'string') reply += delta.content
      if (chunk.usage !== undefined) usage = chunk.usage
    }
    const turnMs = performance.now() - began
    if (usage === undefined) throw new Error(`Turn ${t} streamed no usage`)
    out.push({ ttftMs: ttftMs ?? turnMs, turnMs, promptTokens: usage.prompt_tokens, sent: usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens })
    messages.push({ role: 'assistant', content: reply })
  }
  return out
}

/**
 * A folder named as `dir` whose files link to `dir`'s, but for tokenizer_config.json, which
 * gains Zephyr's chat template: the benchmark's models are base models (the replies need not
 * make sense, only cost what replies cost).
 */
function withChatTemplate (dir: string): string {
  const copy = join(mkdtempSync(join(tmpdir(), 'petal-bench-api-')), basename(dir))
  mkdirSync(copy)
  for (const file of readdirSync(dir)) if (file !== 'tokenizer_config.json') symlinkSync(join(dir, file), join(copy, file))
  const file = join(dir, 'tokenizer_config.json')
  const config = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {}
  writeFileSync(join(copy, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: ZEPHYR_TEMPLATE }))
  return copy
}

function mean (xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
}

