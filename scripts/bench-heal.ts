/**
 * Healing benchmark: how long a swarm goes without blocks after their only server dies, when
 * a `--num-blocks` server can move there, and what a generation caught in the gap goes
 * through. Per round, on 127.0.0.1: servers [0,3) and [3,5) of stories260k and a
 * `--num-blocks 2 --rebalance-interval S` server (it starts at [0,2)); a greedy generation
 * through them with `coverageWaitMs`; after 5 tokens the [3,5) server is killed (SIGKILL).
 * One JSON line per figure, medians over the rounds:
 * - heal_ms: from the kill until the mover says it is online at [3,5) (its info, polled);
 * - generation_stall_ms: the longest wait between two tokens of the generation;
 * - and whether every round's tokens equal local greedy decoding.
 *
 *   npm run bench:heal                       # 5 rounds, looks every ~1 s
 *   npm run bench:heal -- --interval 10      # looks every ~10 s (0.5-1.5 x, random)
 *   npm run bench:heal -- --quick            # 1 round (CI smoke run)
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { LanguageModel } from '../client/language-model.js'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import { fetchServerInfo } from '../net/info-client.js'
import { LocalSwarm, type ServerProcess } from '../node/local-swarm.js'
import { waitForServers } from '../test/helpers/swarm.js'
import { emit, median } from './lib/bench-output.js'

const BUNDLED_MODEL_DIR = fileURLToPath(new URL('../models/stories260k', import.meta.url))

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    interval: { type: 'string' }
  }
})
const rounds = Number(args.rounds ?? (args.quick ? 1 : 5))
const intervalS = Number(args.interval ?? 1)
if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`Cannot run --rounds ${args.rounds}: it must be an integer >= 1`)
if (!(Number.isFinite(intervalS) && intervalS > 0)) throw new RangeError(`Cannot use --interval ${args.interval}: it must be a number of seconds > 0`)

const PROMPT = [1, 403, 407, 261, 378]
const TOKENS = 48
const KILL_AFTER = 5
const config = { model: 'stories260k', servers: '[0,3) [3,5) + --num-blocks 2', rebalanceIntervalS: intervalS, tokens: TOKENS, killAfter: KILL_AFTER, rounds }

const expected = await localTokens()
const heals: number[] = []
const stalls: number[] = []
let allMatch = true
for (let r = 0; r < rounds; r++) {
  const { healMs, stallMs, tokens } = await round()
  heals.push(healMs)
  stalls.push(stallMs)
  allMatch &&= tokens.join(',') === expected.join(',')
}
emit({ metric: 'heal_ms', value: median(heals), unit: 'ms', rounds: heals.map(Math.round), config })
emit({ metric: 'generation_stall_ms', value: median(stalls), unit: 'ms', rounds: stalls.map(Math.round), tokensMatchLocal: allMatch, config })

/** Greedy tokens of the bundled model run locally: what every round must decode. */
async function localTokens (): Promise<number[]> {
  const model = await LanguageModel.local(BUNDLED_MODEL_DIR)
  try {
    return await generate(model, () => {})
  } finally {
    await model.release()
  }
}

/** One swarm, one kill, one generation through it. */
async function round (): Promise<{ healMs: number, stallMs: number, tokens: number[] }> {
  const swarm = new LocalSwarm(BUNDLED_MODEL_DIR)
  const speed = ['--throughput', '5000']
  let client: SwarmClient | undefined
  try {
    const [, leaving] = await swarm.add({ blocks: '0:3', args: speed }, { blocks: '3:5', args: speed }) as [ServerProcess, ServerProcess]
    const [mover] = await swarm.add({ blocks: 2, args: [...speed, '--rebalance-interval', String(intervalS)] }) as [ServerProcess]
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL_DIR, { coverageWaitMs: 120_000 })
    const watcher = client
    let healed: Promise<number> | undefined
    const arrivals: number[] = []
    const tokens = await generate(model, () => {
      arrivals.push(performance.now())
      if (arrivals.length !== KILL_AFTER) return
      const killedAt = performance.now()
      leaving.child.kill('SIGKILL')
      healed = servesAt(watcher, mover.address, 3).then(() => performance.now() - killedAt)
    })
    await model.release()
    const gaps = arrivals.slice(1).map((t, i) => t - (arrivals[i] as number))
    if (healed === undefined) throw new Error(`The generation ended before token ${KILL_AFTER}`)
    return { healMs: await healed, stallMs: Math.max(...gaps), tokens }
  } finally {
    await client?.close()
    await swarm.close()
  }
}

/** Resolves once the server at `address` says it is online with its span starting at `start`. */
async function servesAt (client: SwarmClient, address: string, start: number): Promise<void> {
  for (let deadline = Date.now() + 120_000; Date.now() < deadline; await sleep(20)) {
    const info = await fetchServerInfo(client.host, address, { signal: AbortSignal.timeout(2000) }).catch(() => undefined)
    if (info?.state === 'online' && info.start === start) return
  }
  throw new Error(`${address} did not move to block ${start} within 120 s`)
}

/** Greedy tokens of the prompt; `onToken` runs as each arrives. */
async function generate (model: LanguageModel, onToken: () => void): Promise<number[]> {
  const gen = model.generate(PROMPT, { maxNewTokens: TOKENS, temperature: 0, stopAtEos: false })
  let step = await gen.next()
  while (step.done !== true) {
    for (let i = 0; i < step.value.tokens.length; i++) onToken()
    step = await gen.next()
  }
  return step.value.tokens
}
