import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { collectSwarmStatus } from '../../client/swarm/swarm-status.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { fullyCovered, peerIdOf, waitForServers } from '../helpers/swarm.js'

const CLI = fileURLToPath(new URL('../../bin/petal-node.js', import.meta.url))
const run = promisify(execFile)

describe('servers joining and leaving', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient

  // Servers announce their speeds: measured at start while other test files load the
  // cores, a joining server's speed could make two hops look faster than its one. The one
  // that joins is faster (5 blocks: 1 ms against 5 ms of compute for the two hops), so a
  // fresh process's noisy RTT cannot make its one hop lose either (it did once, in CI).
  const speed = ['--throughput', '1000']
  const fasterSpeed = ['--throughput', '5000']

  beforeAll(async () => {
    await swarm.add({ blocks: '0:3', args: speed }, { blocks: '3:5', args: speed }, { blocks: '0:2', args: speed })
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await swarm.close()
  })

  it('`petal-node status` shows the model, its coverage and every server', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'status', '--bootstrap', swarm.bootstrap])
    expect(stdout).toContain('model stories260k: 5 blocks, 3 servers, all blocks covered')
    for (const s of swarm.servers) expect(stdout).toContain(peerIdOf(s.address).slice(-8))
    expect(stdout).toMatch(/\[0,3\)\s+online/)
    expect(stdout).toMatch(/\bRUNS\s+QUEUED$/m) // each server's runs computed and waiting now
    const json = JSON.parse((await run(process.execPath, [CLI, 'status', '--bootstrap', swarm.bootstrap, '--json'])).stdout)
    expect(json.models[0].servers).toHaveLength(3)
    // the announced speed, not a measured one
    for (const server of json.models[0].servers) expect(server.info.throughput.decodeTokensPerSec).toBe(1000)
  }, 30_000)

  it('a server that joins is used by new sessions', async () => {
    const [joined] = await swarm.add({ blocks: '0:5', args: fasterSpeed }) // one faster hop for everything beats two
    const id = peerIdOf(joined?.address ?? '')
    await waitForServers(client, 'stories260k', 5, s => s.some(x => x.info.peerId === id))
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const session = await model.session({ maxTokens: 64 })
    expect(session.target.stats().route).toBe(`…${id.slice(-6)}[0,5)`)
    await session.close()
    await model.release()
  }, 30_000)

  it('a server that exits disappears from status within 30 s, and a warning names uncovered blocks', async () => {
    const leaving = swarm.servers.find(s => s.blocks === '3:5')
    if (leaving === undefined) throw new Error('no [3,5) server')
    expect(await swarm.stop(leaving, 'SIGTERM')).toBe(0)
    const t0 = Date.now()
    await waitForServers(client, 'stories260k', 5, s => !s.some(x => x.info.peerId === peerIdOf(leaving.address)), 30_000)
    expect(Date.now() - t0).toBeLessThan(30_000)
    const late = swarm.servers.find(s => s.blocks === '0:5')
    if (late !== undefined) await swarm.stop(late, 'SIGKILL')
    const models = await collectSwarmStatus(client)
    expect(fullyCovered(5)([...models[0]?.servers ?? []])).toBe(false)
    const { stdout } = await run(process.execPath, [CLI, 'status', '--bootstrap', swarm.bootstrap])
    expect(stdout).toContain('WARNING: no server holds blocks 3, 4 of stories260k')
  }, 60_000)
})
