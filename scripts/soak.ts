/**
 * Soak: a swarm of `petal-node serve` processes on 127.0.0.1 under mixed load while servers
 * are killed and restarted, drained, or frozen for a while (SIGSTOP, then SIGCONT), checking
 * what must hold the whole time:
 *
 * - every greedy generation decodes the reference tokens (reference.json), whatever the mode
 *   (plain, sync, pipelined; client-mediated, push, or push with carried outputs), through failovers, in chat turns that
 *   continue a session and in n choices that copy one prompt; every sampled speculative one
 *   decodes what a local sync chain does with its seed; the OpenAI-compatible API server's
 *   completions (1 or 2 choices) say what the local model says;
 * - a generation aborted by its caller ends with an AbortError and nothing else;
 * - malformed frames get error frames or a closed stream, and no server dies of them;
 * - no server dies that the soak did not kill, every block stays served, and once the
 *   clients have closed their sessions the servers hold none;
 * - memory: each server's resident set and the client's heap once warm and at the end.
 *
 * Every block is served by three servers or more and the soak takes down one at a time, so
 * no generation has reason to fail: any failure is a finding, printed with its message.
 *
 *   npm run soak -- --minutes 10            # 8 servers, 6 workers, a server down every 8 s for 4 s (killed 60%, drained 20%, frozen 20%)
 *   npm run soak -- --quick                 # CI smoke: 25 s
 *
 * Options: --workers N, --kill-every S, --down S, --seed N, --latency-ms L (every frame a server or
 * client sends waits L ms: more runs in flight at once). One JSON line per figure; the
 * last is `soak_ok` (1 when every check held). Exits 1 when a check failed.
 */
import { appendFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import type { Libp2p } from 'libp2p'
import { DraftModelDrafter, loadDraftModel } from '../client/decoding/index.js'
import { LanguageModel } from '../client/language-model.js'
import { OpenAiServer } from '../client/openai/openai-server.js'
import { createRng } from '../client/sampling/rng.js'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import { CARRY_SUGGESTED_BYTES } from '../client/swarm/swarm-target.js'
import type { GenerateOptions, GenerationResult, SpeculationMode } from '../client/text-generation.js'
import { Checkpoint } from '../model/checkpoint.js'
import { LocalSwarm, type ServerProcess } from '../node/local-swarm.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../test/helpers/wire-client.js'
import { fullyCovered, waitForServers } from '../test/helpers/swarm.js'
import { emit } from './lib/bench-output.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const TARGET = join(ROOT, 'models', 'stories260k')
const DRAFT = join(ROOT, 'models', 'stories260k-draft')
const MODEL_ID = 'stories260k'
const BLOCKS = 5
/** The first server is everyone's bootstrap node and is never taken down; the others are. */
const BOOTSTRAP_SPAN = '0:1'
/** Every block has 3 of these or more besides the bootstrap's, so one down leaves two. */
const SPANS = ['0:2', '1:3', '2:4', '3:5', '0:3', '2:5', '4:5']
/**
 * Room for every session the workers and the API server may hold on one server while another
 * is down (up to 3 each, and 4 kept by the API): the soak is about churn, not capacity; a full
 * server's refusal is tested on its own (test/net/open-failover.test.ts).
 */
const BASE_SERVER_ARGS = ['--max-sessions', '64']

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    minutes: { type: 'string' },
    workers: { type: 'string' },
    'kill-every': { type: 'string' },
    down: { type: 'string' },
    seed: { type: 'string', default: '1' },
    'latency-ms': { type: 'string', default: '0' }
  }
})
const durationMs = 60_000 * Number(args.minutes ?? (args.quick ? 25 / 60 : 5))
const workers = Number(args.workers ?? (args.quick ? 3 : 6))
const killEveryMs = 1000 * Number(args['kill-every'] ?? (args.quick ? 6 : 8))
const downMs = 1000 * Number(args.down ?? (args.quick ? 3 : 4))
for (const [name, v] of Object.entries({ minutes: durationMs, workers, 'kill-every': killEveryMs, down: downMs })) {
  if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`Cannot soak with --${name} ${String(args[name as keyof typeof args])}: a positive number`)
}
/** Simulated one-way latency on every frame a server or client sends: more runs in flight, more races. */
const latencyMs = Number(args['latency-ms'])
if (!(Number.isFinite(latencyMs) && latencyMs >= 0)) throw new RangeError(`Cannot soak with --latency-ms ${args['latency-ms']}: a number >= 0`)
const SERVER_ARGS = [...BASE_SERVER_ARGS, ...(latencyMs > 0 ? ['--link-latency-ms', String(latencyMs)] : [])]
// --seed fixes the generator; workers and chaos draw from it in whatever order their timing gives, so two runs still differ
const rng = createRng(Number(args.seed))
const random = (): number => rng.next()
/** PETAL_SOAK_LOG=FILE: the clients' warnings and route changes (pino JSON lines), to read a stall against; PETAL_SOAK_LOG_LEVEL=debug adds every discovery's result. */
const clientLog = process.env.PETAL_SOAK_LOG === undefined ? undefined : pino({ level: process.env.PETAL_SOAK_LOG_LEVEL ?? 'info' }, pino.destination(process.env.PETAL_SOAK_LOG))

interface Reference { prompt_ids: number[], greedy_new_ids: number[] }
const references = (JSON.parse(readFileSync(join(TARGET, 'reference.json'), 'utf8')) as { prompts: Reference[] }).prompts

/** What the workers and the chaos did, and what went wrong. */
const tally = {
  ops: new Map<string, { ok: number, failed: number, ms: number[] }>(),
  wrongTokens: [] as string[],
  unexpectedErrors: new Map<string, number>(),
  kills: { SIGKILL: 0, SIGTERM: 0, SIGSTOP: 0 },
  failovers: 0,
  serverDeaths: [] as string[],
  /** What happened when (seconds since the start), for reading a failure against the chaos. */
  events: [] as string[]
}
const t0 = Date.now()
/** What each worker is doing, for the event log. */
const doing: string[] = []
/** Each worker's current swarm target, where an operation has one in hand (its waits are told when it is stuck). */
const targets: Array<{ describeWaits?: () => string } | undefined> = []
const note = (line: string): void => { tally.events.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${line}`) }
/** An operation running this long is reported as hung. */
const STUCK_MS = 90_000
/** Workers whose current operation the watchdog reported. */
const stuck = new Set<number>()
/** Workers whose loop has ended. */
const finished = new Set<number>()

const swarm = new LocalSwarm(TARGET)
const live = new Set<ServerProcess>()
/** Every server started, for PETAL_SOAK_LOG's server logs. */
const all: ServerProcess[] = []
/** Servers the chaos took down on purpose: their exits are expected. */
const victims = new Set<ServerProcess>()
const clients: SwarmClient[] = []
const models: Array<{ name: string, model: LanguageModel }> = []
let rogueNode: Libp2p | undefined
let api: OpenAiServer | undefined
/** The same model run whole here: what sampled and API generations must say. */
let local: LanguageModel | undefined
let localDrafter: DraftModelDrafter | undefined
const expected = new Map<string, Promise<GenerationResult>>()
let stopping = false
let ok = true

try {
  for (const blocks of [BOOTSTRAP_SPAN, ...SPANS]) watch((await swarm.add({ blocks, args: SERVER_ARGS }))[0] as ServerProcess)
  for (let c = 0; c < 2; c++) {
    const client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap], ...(clientLog !== undefined ? { logger: clientLog.child({ client: c }) } : {}) })
    clients.push(client)
    await waitForServers(client, MODEL_ID, BLOCKS, s => fullyCovered(BLOCKS)(s) && s.length === live.size, 60_000)
    models.push({ name: `client${c}-mediated`, model: await LanguageModel.swarm(client, TARGET, { sendDelayMs: latencyMs }) })
    models.push({ name: `client${c}-push`, model: await LanguageModel.swarm(client, TARGET, { push: true, sendDelayMs: latencyMs }) })
    // push with the servers' outputs carried to the last one (opt-in): failures mid-route go on hop by hop from the first
    models.push({ name: `client${c}-push-carried`, model: await LanguageModel.swarm(client, TARGET, { push: true, carryMaxBytes: CARRY_SUGGESTED_BYTES, sendDelayMs: latencyMs }) })
  }
  rogueNode = await bareNode()
  const draft = await loadDraftModel(Checkpoint.open(DRAFT))
  local = await LanguageModel.local(TARGET)
  localDrafter = new DraftModelDrafter(draft)
  // the API server generates through the first client, pushing, with sessions it keeps and reuses
  api = await OpenAiServer.listen({ model: (models[1] as { model: LanguageModel }).model, modelId: MODEL_ID, maxSessions: 4 }, { port: 0 })
  const began = Date.now()
  // memory once warm (a third of the way, at most a minute in): what grows after that is what would leak
  let rssWhenWarm = new Map<string, number>()
  let heapWhenWarm = 0
  const warm = setTimeout(() => { rssWhenWarm = serverRss(); heapWhenWarm = clientHeapMb() }, Math.min(60_000, durationMs / 3))
  const chaos = chaosLoop(began + durationMs)
  const loops = Promise.all(Array.from({ length: workers }, async (_, w) => { await workerLoop(w, new DraftModelDrafter(draft), began + durationMs) }))
  // workers end after their current operation; one that hangs (the watchdog named it) is not waited for
  await Promise.race([loops, untilOnlyStuckLeft(began + durationMs)])
  stopping = true
  clearTimeout(warm)
  // each step of the wind-down on stderr as it starts: a hang there shows where
  const step = (what: string): void => { process.stderr.write(`soak wind-down: ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`) }
  step('chaos')
  await chaos
  step('API server')
  await api.close()
  step('models')
  for (const { model } of models) await model.release()
  await local.release()
  step('sessions left')
  const sessionsLeft = await openSessionsLeft()
  const rssAtEnd = serverRss()
  const heapAtEnd = clientHeapMb()
  await draft.release()

  const elapsedS = (Date.now() - began) / 1000
  for (const [op, t] of tally.ops) {
    emit({ metric: `soak_ops_${op}`, value: t.ok, unit: 'ops', failed: t.failed, p50Ms: pct(t.ms, 50), maxMs: Math.max(0, ...t.ms) })
  }
  emit({ metric: 'soak_ops_per_second', value: [...tally.ops.values()].reduce((n, t) => n + t.ok + t.failed, 0) / elapsedS, unit: 'ops/s', seconds: elapsedS, workers })
  emit({ metric: 'soak_servers_taken_down', value: tally.kills.SIGKILL + tally.kills.SIGTERM + tally.kills.SIGSTOP, unit: 'servers', ...tally.kills })
  emit({ metric: 'soak_failovers', value: tally.failovers, unit: 'failovers' })
  emit({ metric: 'soak_wrong_tokens', value: tally.wrongTokens.length, unit: 'generations', examples: tally.wrongTokens.slice(0, 5) })
  emit({ metric: 'soak_unexpected_errors', value: [...tally.unexpectedErrors.values()].reduce((a, b) => a + b, 0), unit: 'errors', messages: Object.fromEntries([...tally.unexpectedErrors].slice(0, 10)) })
  emit({ metric: 'soak_servers_died_unasked', value: tally.serverDeaths.length, unit: 'servers', which: tally.serverDeaths })
  emit({ metric: 'soak_sessions_left_open', value: sessionsLeft, unit: 'sessions' })
  for (const [span, mb] of rssAtEnd) {
    const start = rssWhenWarm.get(span)
    if (start !== undefined) emit({ metric: 'soak_server_rss_mb', value: mb, unit: 'MiB', span, whenWarm: start, growth: mb - start })
  }
  emit({ metric: 'soak_client_heap_mb', value: heapAtEnd, unit: 'MiB', whenWarm: heapWhenWarm, growth: heapAtEnd - heapWhenWarm })
  if (tally.events.length > 0) process.stderr.write(`soak events:\n${tally.events.join('\n')}\n`)
  ok = tally.wrongTokens.length === 0 && tally.unexpectedErrors.size === 0 && tally.serverDeaths.length === 0 && sessionsLeft === 0
} catch (err) {
  ok = false
  process.stderr.write(`soak failed: ${(err as Error).stack ?? String(err)}\n`)
} finally {
  stopping = true
  if (process.env.PETAL_SOAK_LOG !== undefined) {
    for (const sv of all) appendFileSync(`${process.env.PETAL_SOAK_LOG}.servers`, `==== [${sv.blocks}) ${sv.address}\n${sv.stderr()}\n`)
  }
  await rogueNode?.stop()
  for (const c of clients) await c.close()
  await swarm.close()
}
emit({ metric: 'soak_ok', value: ok ? 1 : 0, unit: 'bool' })
process.exit(ok ? 0 : 1)

/** Tracks a server: an exit the chaos did not cause is a finding. */
function watch (server: ServerProcess): void {
  live.add(server)
  all.push(server)
  server.child.once('exit', (code, signal) => {
    live.delete(server)
    if (!victims.has(server) && !stopping) {
      tally.serverDeaths.push(`[${server.blocks}) exited with ${code ?? signal}: ${server.stderr().slice(-400)}`)
    }
  })
}

/** Until `until`: every killEveryMs one server (never the bootstrap) goes down, and comes back downMs later. */
async function chaosLoop (until: number): Promise<void> {
  while (Date.now() + killEveryMs < until && !stopping) {
    await sleep(killEveryMs)
    const candidates = [...live].filter(s => s.address !== swarm.bootstrap)
    const victim = candidates[Math.floor(random() * candidates.length)]
    if (victim === undefined) continue
    const r = random()
    const signal = r < 0.6 ? 'SIGKILL' : r < 0.8 ? 'SIGTERM' : 'SIGSTOP'
    if (signal === 'SIGSTOP') {
      // frozen, as a machine asleep: connections stay open and nothing answers; then it wakes
      tally.kills.SIGSTOP++
      note(`SIGSTOP [${victim.blocks}) ${victim.address.slice(-6)} at ${new Date().toISOString()}`)
      victim.child.kill('SIGSTOP')
      await sleep(downMs)
      victim.child.kill('SIGCONT')
      note(`SIGCONT [${victim.blocks}) ${victim.address.slice(-6)}`)
      continue
    }
    victims.add(victim)
    tally.kills[signal]++
    note(`${signal} [${victim.blocks}) ${victim.address.slice(-6)} at ${new Date().toISOString()}`)
    const code = await swarm.stop(victim, signal)
    if (signal === 'SIGTERM' && code !== 0) tally.serverDeaths.push(`[${victim.blocks}) drained with exit code ${String(code)}`)
    await sleep(downMs)
    if (stopping) break
    const back = (await swarm.add({ blocks: victim.blocks, args: SERVER_ARGS }))[0] as ServerProcess
    note(`restarted [${back.blocks}) as ${back.address.slice(-6)}`)
    watch(back)
  }
}

/** One worker: operations picked at random until `until`. */
async function workerLoop (w: number, drafter: DraftModelDrafter, until: number): Promise<void> {
  const ops: Array<[string, number, () => Promise<void>]> = [
    ['generate', 0.25, async () => { await generateOp(w, drafter) }],
    ['sampled', 0.15, async () => { await sampledOp(w, drafter) }],
    ['chat', 0.15, async () => { await chatOp(w) }],
    ['abort', 0.1, async () => { await abortOp(w) }],
    ['choices', 0.1, async () => { await choicesOp(w) }],
    ['api', 0.15, async () => { await apiOp(w) }],
    ['rogue', 0.1, async () => { await rogueOp(w) }]
  ]
  while (Date.now() < until) {
    let r = random()
    const [name, , op] = ops.find(([, p]) => (r -= p) < 0) ?? ops[0] as [string, number, () => Promise<void>]
    const t = tally.ops.get(name) ?? { ok: 0, failed: 0, ms: [] }
    tally.ops.set(name, t)
    const started = performance.now()
    doing[w] = name
    // a hung operation is a finding too: say what it was doing, once, and let the soak end
    const watchdog = setTimeout(() => {
      const message = `${name}: still running after ${STUCK_MS / 1000} s (${doing[w] ?? name})`
      countError(message)
      note(`worker ${w} ${message}${targets[w]?.describeWaits !== undefined ? `: ${targets[w]?.describeWaits?.()}` : ''}`)
      stuck.add(w)
    }, STUCK_MS)
    try {
      await op()
      t.ok++
    } catch (err) {
      t.failed++
      const message = `${name}: ${(err as Error).message ?? String(err)}`.slice(0, 300)
      countError(message)
      note(`worker ${w} (${doing[w] ?? name}) ${message}\n${(err as Error).stack?.split('\n').slice(1, 6).join('\n') ?? ''}`)
    }
    clearTimeout(watchdog)
    stuck.delete(w)
    const ms = performance.now() - started
    t.ms.push(ms)
    if (ms > 10_000) note(`worker ${w} (${doing[w] ?? name}) took ${(ms / 1000).toFixed(1)} s, from ${new Date(Date.now() - ms).toISOString()}`)
  }
  finished.add(w)
}

/** A greedy generation in a random mode through a random client: the reference's tokens. */
async function generateOp (w: number, drafter: DraftModelDrafter): Promise<void> {
  const ref = pick(references)
  const n = 8 + Math.floor(random() * 40)
  const { name, model } = pick(models)
  const mode = pick<SpeculationMode>(['none', 'sync', 'pipelined'])
  doing[w] = `generate ${mode} ${name} ${n} tokens`
  const opts: GenerateOptions = { maxNewTokens: n, temperature: 0, stopAtEos: false, speculation: mode, ...(mode !== 'none' ? { drafter, k: pick([2, 4, 8]), maxInFlight: pick([2, 4]) } : {}) }
  const result = await drain(model.generate(ref.prompt_ids, opts), w)
  check(`generate ${mode} ${name}`, result.tokens, ref.greedy_new_ids.slice(0, n))
}

/**
 * Sampled speculative decoding (temperature 0.8, a seed): any speculative mode and setting
 * decodes the text a local sync chain decodes with that seed, since each position's draw is
 * keyed by (seed, position).
 */
async function sampledOp (w: number, drafter: DraftModelDrafter): Promise<void> {
  const r = Math.floor(random() * references.length)
  const seed = 1 + Math.floor(random() * 3)
  const n = 8 + Math.floor(random() * 40)
  const { name, model } = pick(models)
  const mode = pick<SpeculationMode>(['sync', 'pipelined'])
  doing[w] = `sampled ${mode} seed ${seed} ${name} ${n} tokens`
  const sampling = { temperature: 0.8, seed, stopAtEos: false }
  const want = await localResult(`sampled ${r} ${seed}`, { ...sampling, maxNewTokens: 48, speculation: 'sync', k: 4 }, r)
  const result = await drain(model.generate((references[r] as Reference).prompt_ids, { ...sampling, maxNewTokens: n, speculation: mode, drafter, k: pick([2, 4, 8]), maxInFlight: pick([2, 4]) }), w)
  check(`sampled ${mode} seed ${seed} ${name}`, result.tokens, want.tokens.slice(0, n))
}

/** /v1/completions through the API server (greedy, 1 or 2 choices): each choice's text is the local model's. */
async function apiOp (w: number): Promise<void> {
  const r = Math.floor(random() * references.length)
  const n = 4 + Math.floor(random() * 28)
  const choices = 1 + Math.floor(random() * 2)
  doing[w] = `api ${choices} choices ${n} tokens`
  const want = await localResult(`api ${r} ${n}`, { maxNewTokens: n, temperature: 0 }, r)
  const res = await fetch(`${api?.url ?? ''}/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL_ID, prompt: (references[r] as Reference).prompt_ids, max_tokens: n, temperature: 0, n: choices })
  })
  const body = await res.json() as { choices?: Array<{ text: string }>, error?: { message: string } }
  if (res.status !== 200) throw new Error(`the API answered ${res.status}: ${body.error?.message ?? JSON.stringify(body).slice(0, 200)}`)
  for (const [i, c] of (body.choices ?? []).entries()) {
    if (c.text !== want.text) tally.wrongTokens.push(`api choice ${i}: got ${JSON.stringify(c.text)} want ${JSON.stringify(want.text)}`)
  }
  if (body.choices?.length !== choices) throw new Error(`the API gave ${body.choices?.length ?? 0} choices for n ${choices}`)
}

/** A generation by the local model (once per key): what the swarm's must equal. One at a time, as its drafter wants. */
async function localResult (key: string, opts: GenerateOptions, r: number): Promise<GenerationResult> {
  let p = expected.get(key)
  if (p === undefined) {
    const before = [...expected.values()]
    p = Promise.allSettled(before).then(async () => await drain((local as LanguageModel).generate((references[r] as Reference).prompt_ids, { ...opts, ...(opts.speculation !== undefined ? { drafter: localDrafter } : {}) })))
    expected.set(key, p)
  }
  return await p
}

/** Two turns of one session: the second sends only the first turn's reply and continues the text. */
async function chatOp (w: number): Promise<void> {
  const ref = pick(references)
  const { name, model } = pick(models)
  doing[w] = `chat ${name}`
  const session = await model.session({ maxTokens: 96 })
  targets[w] = session.target as { describeWaits?: () => string }
  try {
    const n1 = 4 + Math.floor(random() * 16)
    const n2 = 4 + Math.floor(random() * 16)
    doing[w] = `chat ${name}, turn 1`
    const first = await drain(session.generate(ref.prompt_ids, { maxNewTokens: n1, temperature: 0, stopAtEos: false }), w)
    check(`chat turn 1 ${name}`, first.tokens, ref.greedy_new_ids.slice(0, n1))
    doing[w] = `chat ${name}, turn 2`
    const second = await drain(session.continueWith([...ref.prompt_ids, ...first.tokens], { maxNewTokens: n2, temperature: 0, stopAtEos: false }), w)
    check(`chat turn 2 ${name}`, second.tokens, ref.greedy_new_ids.slice(n1, n1 + n2))
  } finally {
    doing[w] = `chat ${name}, closing`
    await session.close()
    targets[w] = undefined
  }
}

/** A generation its caller aborts after a few milliseconds: it ends with an AbortError (or done first). */
async function abortOp (w: number): Promise<void> {
  const ref = pick(references)
  const { name, model } = pick(models)
  doing[w] = `abort ${name}`
  try {
    const result = await drain(model.generate(ref.prompt_ids, { maxNewTokens: 48, temperature: 0, stopAtEos: false, signal: AbortSignal.timeout(5 + Math.floor(random() * 80)) }))
    check('abort (finished first)', result.tokens, ref.greedy_new_ids)
  } catch (err) {
    if ((err as Error).name !== 'AbortError' && (err as Error).name !== 'TimeoutError') throw err
  }
}

/** Three choices of one prompt (the others copy the first's prompt): each the reference's tokens. */
async function choicesOp (w: number): Promise<void> {
  const ref = pick(references)
  const n = 4 + Math.floor(random() * 20)
  const { name, model } = pick(models)
  doing[w] = `choices ${name}`
  const results = await model.generateMany(ref.prompt_ids, 3, { maxNewTokens: n, temperature: 0, stopAtEos: false })
  for (const [i, r] of results.entries()) check(`choice ${i} ${name}`, r.tokens, ref.greedy_new_ids.slice(0, n))
}

/** Malformed frames at a live server: each gets an error frame (or the stream closes); the server lives. */
async function rogueOp (w: number): Promise<void> {
  const server = pick([...live])
  if (server === undefined || rogueNode === undefined) return
  let framed
  try {
    framed = await inferenceStream(rogueNode, server.address)
  } catch {
    return // the server went down meanwhile
  }
  const kind = Math.floor(random() * 4)
  try {
    const [start, end] = server.blocks.split(':').map(Number) as [number, number]
    if (kind === 0) await framed.write({ type: 'run', runId: 1, start: 0, hidden: { dtype: 'float32', dims: [1, 1, 64], data: new Uint8Array(3) } })
    else if (kind === 1) await framed.write({ type: 'open', modelId: MODEL_ID, start: end, end: start, maxTokens: -5 })
    else {
      await openSession(framed, MODEL_ID, start, end, 32)
      const C = 64
      if (kind === 2) await framed.write(runFrame(1, 0, randomHidden(3, C + 1, w), C + 1)) // wrong hidden size
      else await framed.write(runFrame(1, 40, randomHidden(2, C, w), C)) // starts beyond the cache
    }
    const reply = await next(framed, 10_000)
    if (reply['type'] !== 'error') throw new Error(`a malformed frame (kind ${kind}) got ${JSON.stringify(reply).slice(0, 120)}`)
  } catch (err) {
    // a server taken down meanwhile closes the stream, and one draining refuses new sessions
    const gone = !live.has(server) || victims.has(server)
    if (!(gone && /stream ended|closed|reset|aborted|DRAINING/i.test((err as Error).message ?? ''))) throw new Error(`${(err as Error).message} (malformed frame kind ${kind}, server [${server.blocks}) ${server.address.slice(-6)})`)
  } finally {
    await framed.close().catch(() => {})
  }
}

/** Runs a generation to its end, counting its failovers. */
async function drain (gen: AsyncGenerator<unknown, GenerationResult>, w?: number): Promise<GenerationResult> {
  for (;;) {
    const step = await gen.next()
    if (step.done === true) {
      tally.failovers += step.value.stats.target?.failovers ?? 0
      const changes = step.value.stats.target?.routeChanges ?? []
      if (w !== undefined && changes.length > 0) doing[w] = `${doing[w] ?? ''} [route changes: ${changes.join('; ')}]`
      return step.value
    }
  }
}

function check (what: string, got: readonly number[], want: readonly number[]): void {
  if (got.length === want.length && got.every((t, i) => t === want[i])) return
  tally.wrongTokens.push(`${what}: got ${got.join(',')} want ${want.join(',')}`)
}

/** Sessions the live servers still hold once the clients' closes have arrived (up to 10 s for them). */
async function openSessionsLeft (): Promise<number> {
  const client = clients[0] as SwarmClient
  let open = 0
  for (let tries = 0; tries < 10; tries++) {
    await sleep(1000)
    open = (await client.refresh(MODEL_ID, BLOCKS)).reduce((n, s) => n + s.info.openSessions, 0)
    if (open === 0) break
  }
  return open
}

/** Resident set of each server that has run since the start (the bootstrap and those never taken down), by span, MiB. */
function serverRss (): Map<string, number> {
  const out = new Map<string, number>()
  for (const s of live) {
    try {
      const status = readFileSync(`/proc/${s.child.pid}/status`, 'utf8')
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1])
      if (Number.isFinite(kb)) out.set(`${s.blocks}#${s.child.pid}`, kb / 1024)
    } catch {
      // exited meanwhile
    }
  }
  return out
}

function clientHeapMb (): number {
  (globalThis as { gc?: () => void }).gc?.()
  return process.memoryUsage().heapUsed / 2 ** 20
}

function pick<T> (xs: readonly T[]): T {
  return xs[Math.floor(random() * xs.length)] as T
}

function pct (xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/**
 * Resolves once the soak's time is over and every worker still busy is one the watchdog reported
 * hung (or once every worker has finished: then the caller is already past waiting).
 */
async function untilOnlyStuckLeft (until: number): Promise<void> {
  const all = Array.from({ length: workers }, (_, w) => w)
  for (;;) {
    await new Promise(resolve => setTimeout(resolve, 1000))
    if (finished.size === workers) return
    if (Date.now() >= until && stuck.size > 0 && all.every(w => finished.has(w) || stuck.has(w))) return
  }
}

/** Counts an operation's failure (or hang) under its message. */
function countError (message: string): void {
  tally.unexpectedErrors.set(message, (tally.unexpectedErrors.get(message) ?? 0) + 1)
}
