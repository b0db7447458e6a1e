import { peerIdFromString } from '@libp2p/peer-id'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { fetchServerInfo } from '../../net/info-client.js'
import { LocalSwarm, type ServerProcess } from '../../node/local-swarm.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { generateBesideTwin, peerIdOf, waitForServers } from '../helpers/swarm.js'

/**
 * A server whose main thread is held forever mid-generation (`--simulated-freeze-after-runs`,
 * as a device hung inside a synchronous onnxruntime run). Its clients take it for frozen with
 * their liveness probe, but the process would stay, connected and announced, for every client
 * after them to probe too. With `--exit-when-frozen-ms` a worker thread that watches the main
 * thread kills the process. A process stopped whole (SIGSTOP) and continued is not killed.
 */
const ref = readReference('stories260k').prompts[0]
const LIVENESS = { afterMs: 400, timeoutMs: 800 }
const exited = async (server: ServerProcess, timeoutMs: number): Promise<NodeJS.Signals | number | null> =>
  server.child.exitCode ?? server.child.signalCode ?? await new Promise(resolve => {
    const timer = setTimeout(() => { resolve(null) }, timeoutMs)
    server.child.once('exit', (code, signal) => { clearTimeout(timer); resolve(signal ?? code) })
  })

describe('a server whose main thread is held', () => {
  const swarm = new LocalSwarm(BUNDLED_MODEL)
  let client: SwarmClient
  let frozen: ServerProcess
  let twin: ServerProcess
  beforeAll(async () => {
    const [, f] = await swarm.add({ blocks: '0:2' }, { blocks: '2:4', args: ['--simulated-freeze-after-runs', '12', '--exit-when-frozen-ms', '1500'] }, { blocks: '4:5' })
    frozen = f as ServerProcess
    client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
  }, 90_000)
  afterAll(async () => {
    for (const s of swarm.servers) s.child.kill('SIGCONT')
    await client?.close()
    await swarm.close()
  })

  it('is failed over by its client and then kills itself', async () => {
    const run = await generateBesideTwin(swarm, client, frozen, { blocks: '2:4', args: ['--exit-when-frozen-ms', '1000'] }, ref, { liveness: LIVENESS })
    const { result, onRoute } = run
    twin = run.twin
    expect(onRoute).toBe(true)
    expect(result.tokens).toEqual(ref.greedy_new_ids)
    expect(result.stats.target.failovers).toBe(1)
    // held since its 13th run: gone 1.5 s later, by its own watcher's SIGKILL
    expect(await exited(frozen, 10_000)).toBe('SIGKILL')
    expect(frozen.stderr()).toMatch(/the main thread has not run for \d+ ms/)
  }, 60_000)

  it('a process stopped whole and continued lives on', async () => {
    twin.child.kill('SIGSTOP')
    await new Promise(resolve => setTimeout(resolve, 2500)) // past its 1 s limit
    twin.child.kill('SIGCONT')
    expect(await exited(twin, 2000)).toBeNull()
    const info = await fetchServerInfo(client.host, peerIdFromString(peerIdOf(twin.address)))
    expect(info.state).toBe('online')
  }, 30_000)
})
