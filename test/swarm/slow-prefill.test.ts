import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { drainGeneration } from '../../client/text-generation.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { waitForServers } from '../helpers/swarm.js'

/**
 * A server whose compute blocks its event loop, as onnxruntime's does for a bigger model on a
 * CPU (`--simulated-busy-row-ms`), gets a long prompt: 3.6 s of compute, far past the client's
 * liveness probe (a ping after 200 ms, 1 s to echo) and its result timeout (2 s). It computes
 * the prompt in pieces, echoes pings between them and reports progress, so the client waits
 * for it: no failover (there is no other server for its blocks), the same tokens as local
 * decoding. Before pieces the probe took it for frozen; before progress the timeout failed it.
 * Sent as chunks along the route, the prompt queues six runs at that server: each wait counts
 * from the server's last answer on the session, not from when the run was sent.
 */
const BUSY_MS_PER_ROW = 8
const PROMPT_TOKENS = 450 // 3.6 s of busy compute on the [2,4) server, pieces of 32 rows

describe('a server computing a long prompt for seconds', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient
  beforeAll(async () => {
    await swarm.add({ blocks: '0:2' }, { blocks: '2:4', args: ['--simulated-busy-row-ms', String(BUSY_MS_PER_ROW)] }, { blocks: '4:5' })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
  }, 90_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => 1 + (i * 37) % 500)
  const opts = { maxNewTokens: 6, temperature: 0, stopAtEos: false }
  let expected: number[]
  beforeAll(async () => {
    const local = await LanguageModel.local(BUNDLED_MODEL)
    expected = (await drainGeneration(local.generate(prompt, opts))).tokens
    await local.release()
  })

  // whole: one 3.6 s run; in chunks: six of 0.6 s queued at the busy server, the last answered 3.6 s after it was sent
  for (const pipelinePrefill of [false, true]) {
    it(`is waited for, not failed over (${pipelinePrefill ? 'the prompt in chunks along the route' : 'the prompt as one run'})`, async () => {
      const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { liveness: { afterMs: 200, timeoutMs: 1000 }, timeoutMs: 2000, pipelinePrefill })
      const began = performance.now()
      const result = await drainGeneration(model.generate(prompt, opts))
      const ms = performance.now() - began
      await model.release()
      console.log(`[slow prefill${pipelinePrefill ? ', chunks' : ''}] ${PROMPT_TOKENS} tokens through a server busy ${BUSY_MS_PER_ROW} ms a row: ${ms.toFixed(0)} ms, failovers ${result.stats.target.failovers}`)
      expect(result.tokens).toEqual(expected)
      expect(result.stats.target.failovers).toBe(0)
      expect(ms).toBeGreaterThan(PROMPT_TOKENS * BUSY_MS_PER_ROW) // it did take that long
    }, 60_000)
  }
})
