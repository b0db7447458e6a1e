import { fetchServerInfo } from '../../net/info-client.js'
import type { SwarmClient } from './swarm-client.js'
import type { KnownServer } from './server-directory.js'

/** One model of the swarm and its servers, as discovery found them. */
export interface ModelSnapshot {
  readonly modelId: string
  readonly numBlocks: number
  readonly servers: readonly KnownServer[]
}

/**
 * What the swarm serves. The DHT indexes blocks, not models, so the models are learned
 * from the servers the client is connected to (the bootstrap nodes and whoever they led
 * to); each model's servers then come from the DHT. With `modelId`, only that model.
 */
export async function collectSwarmStatus (swarm: SwarmClient, opts: { modelId?: string, timeoutMs?: number } = {}): Promise<ModelSnapshot[]> {
  const timeoutMs = opts.timeoutMs ?? 5000
  const infos = await Promise.allSettled(swarm.host.getPeers().map(async p =>
    await fetchServerInfo(swarm.host, p, { signal: AbortSignal.timeout(timeoutMs) })))
  const models = new Map<string, number>()
  for (const r of infos) {
    if (r.status === 'fulfilled' && (opts.modelId === undefined || r.value.modelId === opts.modelId)) models.set(r.value.modelId, r.value.numBlocks)
  }
  if (opts.modelId !== undefined && !models.has(opts.modelId)) return []
  const out: ModelSnapshot[] = []
  for (const [modelId, numBlocks] of [...models].sort(([a], [b]) => a.localeCompare(b))) {
    out.push({ modelId, numBlocks, servers: await swarm.refresh(modelId, numBlocks) })
  }
  return out
}
