import { LanguageModel, type SwarmModelOptions } from '../../client/language-model.js'
import { uncoveredBlocks } from '../../client/routing/route-planner.js'
import type { GenerationResult } from '../../client/text-generation.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { KnownServer } from '../../client/swarm/server-directory.js'
import type { SwarmTarget } from '../../client/swarm/swarm-target.js'
import type { LocalSwarm, ServerProcess, ServerSpec } from '../../node/local-swarm.js'

/** Polls discovery until `check` accepts the servers found, or fails after `timeoutMs`. */
export async function waitForServers (client: SwarmClient, modelId: string, numBlocks: number, check: (s: KnownServer[]) => boolean, timeoutMs = 30_000): Promise<KnownServer[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const servers = await client.refresh(modelId, numBlocks)
    if (check(servers)) return servers
    if (Date.now() > deadline) throw new Error(`discovery did not settle in ${timeoutMs} ms: ${servers.map(s => `${s.info.peerId}[${s.info.start},${s.info.end})`).join(' ')}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

export const fullyCovered = (numBlocks: number) => (servers: KnownServer[]): boolean =>
  uncoveredBlocks(servers.map(s => s.info), 0, numBlocks).length === 0

/** The peer id at the end of a /p2p/ multiaddr. */
export function peerIdOf (address: string): string {
  return address.split('/p2p/')[1] ?? ''
}

/** Greedy generation of `n` tokens after `promptIds`, EOS ignored, run to the end: its result. */
export async function generateGreedy (model: LanguageModel, promptIds: readonly number[], n: number): Promise<GenerationResult> {
  const gen = model.generate(promptIds, { maxNewTokens: n, temperature: 0, stopAtEos: false })
  for (;;) {
    const step = await gen.next()
    if (step.done === true) return step.value
  }
}

/** What generateBesideTwin saw. */
export interface TwinFailover {
  result: GenerationResult
  /** Whether `bad` was on the route the generation started with. */
  onRoute: boolean
  /** The longest gap between two tokens, ms. */
  stall: number
  /** The twin's process. */
  twin: ServerProcess
}

/**
 * Greedy generation of a reference prompt whose route is chosen while `bad` is the only
 * server of its span; only then does `twin` (a healthy server of that span) join, so the
 * failover has somewhere to go. The session and model are closed after it.
 */
export async function generateBesideTwin (swarm: LocalSwarm, client: SwarmClient, bad: ServerProcess, twin: ServerSpec, ref: { prompt_ids: number[], greedy_new_ids: number[] }, opts: SwarmModelOptions = {}): Promise<TwinFailover> {
  const model = await LanguageModel.swarm(client, swarm.model, opts)
  const session = await model.session({ maxTokens: 128 })
  const target = session.target as SwarmTarget
  const before = (await client.refresh('stories260k', 5)).length
  const [joined] = await swarm.add(twin)
  await waitForServers(client, 'stories260k', 5, s => s.length === before + 1)
  const gen = session.generate(ref.prompt_ids, { maxNewTokens: ref.greedy_new_ids.length, temperature: 0, stopAtEos: false })
  const arrivals: number[] = []
  let onRoute = false
  let step = await gen.next()
  while (step.done !== true) {
    if (arrivals.length === 0) onRoute = target.route.some(h => h.peerId === peerIdOf(bad.address))
    arrivals.push(performance.now())
    step = await gen.next()
  }
  await session.close()
  await model.release()
  const stall = Math.max(...arrivals.slice(1).map((t, i) => t - (arrivals[i] as number)))
  return { result: step.value, onRoute, stall, twin: joined as ServerProcess }
}
