/**
 * The speculation benchmark's swarm: three `petal-node serve` processes holding a 5-block
 * model as [0,2) [2,4) [4,5), a client connected to them, and the servers' run counters.
 */
import { basename } from 'node:path'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { fullyCovered, waitForServers } from '../../test/helpers/swarm.js'

/** Sum over the servers of what they did with runs (from their ServerInfo metrics). */
export interface ServerTotals {
  runsComputed: number
  /** Cancelled before start, aborted mid-run, or dropped on a late arrival. */
  runsDropped: number
}

/** A running benchmark swarm; `close()` stops the client and every server. */
export interface SpecSwarm {
  readonly client: SwarmClient
  readonly modelId: string
  readonly spans: string
  /** Current run counters summed over the servers (asks every server for its info). */
  totals: () => Promise<ServerTotals>
  close: () => Promise<void>
}

/**
 * Starts the servers, each with `--link-latency-ms linkLatencyMs` when that is > 0 (in-process
 * delay of every frame a server sends) and `serverArgs`, and waits until the client discovers
 * every block.
 */
export async function startSpecSwarm (dir: string, linkLatencyMs: number, serverArgs: readonly string[] = []): Promise<SpecSwarm> {
  const numBlocks = Checkpoint.open(dir).config.numLayers
  const cuts = [0, Math.min(2, numBlocks - 2), Math.min(4, numBlocks - 1), numBlocks]
  const args = [...(linkLatencyMs > 0 ? ['--link-latency-ms', String(linkLatencyMs)] : []), ...serverArgs]
  const swarm = new LocalSwarm(dir)
  const modelId = basename(dir)
  let client: SwarmClient | undefined
  try {
    await swarm.add(...[0, 1, 2].map(i => ({ blocks: `${cuts[i]}:${cuts[i + 1]}`, args })))
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, modelId, numBlocks, s => fullyCovered(numBlocks)(s) && s.length === 3, 60_000)
  } catch (err) {
    await client?.close()
    await swarm.close()
    throw err
  }
  const connected = client
  return {
    client: connected,
    modelId,
    spans: [0, 1, 2].map(i => `[${cuts[i]},${cuts[i + 1]})`).join(' '),
    totals: async () => {
      let servers = await connected.refresh(modelId, numBlocks)
      for (let tries = 1; servers.length < 3 && tries < 5; tries++) servers = await connected.refresh(modelId, numBlocks)
      if (servers.length < 3) throw new Error(`Cannot read the run counters of 3 servers: discovery found ${servers.length}`)
      let runsComputed = 0
      let runsDropped = 0
      for (const { info } of servers) {
        const m = info.metrics
        if (m === undefined) continue
        runsComputed += m.runsComputed
        runsDropped += m.runsDroppedBeforeStart + m.runsAbortedMidRun + m.runsDroppedLate
      }
      return { runsComputed, runsDropped }
    },
    close: async () => {
      await connected.close()
      await swarm.close()
    }
  }
}
