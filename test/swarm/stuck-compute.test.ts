import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { LocalSwarm, type ServerProcess } from '../../node/local-swarm.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { generateBesideTwin, waitForServers } from '../helpers/swarm.js'

/**
 * A server whose compute gets stuck mid-generation (`--simulated-hang-after-runs`: its runs
 * stop finishing while its event loop stays free, as a run whose promise never settles). It
 * answers pings, so the client's liveness probe finds it alive, and without more the client
 * would wait out its 30 s result timeout, as would every client after it. With `--stuck-after-ms` it notices that a
 * run has computed that long with nothing else to do, closes its sessions and exits 1: the
 * client fails over at once and its tokens do not change.
 */
const ref = readReference('stories260k').prompts[0]
const STUCK_AFTER_MS = 1500

describe('a server whose compute is stuck', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient
  let hung: ServerProcess
  beforeAll(async () => {
    const [, h] = await swarm.add({ blocks: '0:2' }, { blocks: '2:4', args: ['--simulated-hang-after-runs', '12', '--stuck-after-ms', String(STUCK_AFTER_MS)] }, { blocks: '4:5' })
    hung = h as ServerProcess
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
  }, 90_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  it('leaves the swarm, and the client fails over at once with the same tokens', async () => {
    const { result, onRoute, stall } = await generateBesideTwin(swarm, client, hung, { blocks: '2:4' }, ref)
    expect(onRoute).toBe(true)
    expect(result.tokens).toEqual(ref.greedy_new_ids)
    expect(result.stats.target.failovers).toBe(1)
    console.log(`[stuck compute] stall ${stall.toFixed(0)} ms; ${JSON.stringify(result.stats.target.routeChanges)}`)
    // without the watch the client waits out its 30 s result timeout (the server echoes pings)
    expect(stall).toBeLessThan(STUCK_AFTER_MS + 4000)
    const code = hung.child.exitCode ?? await new Promise(resolve => hung.child.once('exit', resolve))
    expect(code).toBe(1)
    expect(hung.stderr()).toMatch(/leaving the swarm/)
  }, 60_000)
})
