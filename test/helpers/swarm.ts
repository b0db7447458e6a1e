import type { LanguageModel } from '../../client/language-model.js'
import { uncoveredBlocks } from '../../client/routing/route-planner.js'
import type { GenerationResult } from '../../client/text-generation.js'
import type { SwarmClient } from '../../client/swarm/swarm-client.js'
import type { KnownServer } from '../../client/swarm/server-directory.js'

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
