/**
 * Real `petal-node serve` processes on 127.0.0.1: the ready line, info over the
 * network, a persisted identity, --num-blocks filling the swarm's gaps, draining
 * on SIGTERM, and one-line errors for bad flags.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { findServers } from '../../net/discovery.js'
import { createPetalHost } from '../../net/host.js'
import { fetchServerInfo } from '../../net/info-client.js'
import { loadOrCreateIdentity } from '../../node/identity.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { bareNode } from '../helpers/wire-client.js'
import { CliProcesses, exited, untilReady, type CliProcess } from '../helpers/cli-process.js'

const READY = /^ready (\/ip4\/\S+\/p2p\/\w+) blocks \[(\d+),(\d+)\) of (\S+)$/m

interface Served {
  child: ChildProcess
  address: string
  span: [number, number]
  stderr: () => string
}

const processes = new CliProcesses()

/** Runs `petal-node serve ...args`. */
function serve (args: string[]): CliProcess {
  return processes.run(['serve', ...args])
}

/** Starts a server and waits for its ready line. */
async function startServer (args: string[]): Promise<Served> {
  const started = serve(['--model', BUNDLED_MODEL, '--listen', '/ip4/127.0.0.1/tcp/0', ...args])
  const m = await untilReady(started, READY, 20_000)
  expect(started.stdout().trim().split('\n')).toHaveLength(1) // one line, nothing else on stdout
  return { child: started.child, address: m[1] as string, span: [Number(m[2]), Number(m[3])], stderr: started.stderr }
}

describe('petal-node serve', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petal-serve-'))
  const servers: Served[] = []
  let client: Libp2p

  beforeAll(async () => { client = await bareNode() })

  afterAll(async () => {
    processes.killAll()
    await client?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  it('prints a ready line with its full address and answers info over the network', async () => {
    const identity = join(dir, 'first.key')
    const first = await startServer(['--num-blocks', '2', '--identity', identity])
    servers.push(first)
    expect(first.span).toEqual([0, 2]) // alone in the swarm: the first window
    const peerId = peerIdFromPrivateKey(await loadOrCreateIdentity(identity)).toString()
    expect(first.address.endsWith(`/p2p/${peerId}`)).toBe(true)
    const info = await fetchServerInfo(client, first.address)
    expect(info).toMatchObject({ peerId, modelId: 'stories260k', numBlocks: 5, start: 0, end: 2, state: 'online', openSessions: 0 })
    expect(info.throughput.decodeTokensPerSec).toBeGreaterThan(0)
    expect(first.stderr()).toContain('"msg":"online"') // pino JSON logs on stderr
  }, 30_000)

  it('--num-blocks servers started one after another cover every block', async () => {
    for (let i = 0; i < 2; i++) {
      servers.push(await startServer(['--num-blocks', '2', '--bootstrap', servers[0]!.address]))
    }
    expect(servers.map(s => s.span)).toEqual([[0, 2], [2, 4], [3, 5]])
    // a DHT client finds all three through provider records and info
    const host = await createPetalHost({ dhtServer: false, bootstrap: [servers[0]!.address] })
    try {
      await expect.poll(async () => (await findServers(host, 'stories260k', 5, { timeoutMs: 3000 })).map(s => [s.info.start, s.info.end]),
        { timeout: 10_000, interval: 200 }).toEqual([[0, 2], [2, 4], [3, 5]])
    } finally {
      await host.stop()
    }
  }, 60_000)

  it('drains on SIGTERM and exits 0 within a few seconds', async () => {
    const began = performance.now()
    for (const s of servers) s.child.kill('SIGTERM')
    expect(await Promise.all(servers.map(async s => await exited(s.child)))).toEqual(servers.map(() => 0))
    expect(performance.now() - began).toBeLessThan(5000)
    expect(servers[0]!.stderr()).toContain('"msg":"draining"')
  }, 15_000)

  it('still drains and exits on SIGTERM when nobody reads its output any more (a dead parent)', async () => {
    const orphan = await startServer(['--num-blocks', '1'])
    // the reader's ends of stdout and stderr close, as when the process that started it dies:
    // every later write gets EPIPE (once, this made pino retry its exit flush forever)
    orphan.child.stdout?.destroy()
    orphan.child.stderr?.destroy()
    const began = performance.now()
    orphan.child.kill('SIGTERM')
    expect(await exited(orphan.child)).toBe(0)
    expect(performance.now() - began).toBeLessThan(5000)
  }, 30_000)

  it('--metrics: Prometheus metrics that count the runs it computed', async () => {
    const started = serve(['--model', BUNDLED_MODEL, '--listen', '/ip4/127.0.0.1/tcp/0', '--blocks', '0:5', '--metrics', '127.0.0.1:0'])
    const address = (await untilReady(started, READY, 20_000))[1] as string
    const url = /^metrics (http:\/\/127\.0\.0\.1:\d+\/metrics)$/m.exec(started.stdout())?.[1] as string
    const read = async (name: string): Promise<number> => {
      const text = await (await fetch(url)).text()
      return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1])
    }
    expect(await read('petal_blocks_served')).toBe(5)
    const before = await read('petal_runs_computed_total')
    const swarm = await SwarmClient.connect({ bootstrap: [address] })
    const model = await LanguageModel.swarm(swarm, BUNDLED_MODEL)
    try {
      for await (const chunk of model.generate('Once upon a time', { maxNewTokens: 8, temperature: 0 })) expect(typeof chunk.text).toBe('string')
    } finally {
      await model.release()
      await swarm.close()
    }
    // the prompt's run and one run per token after the first
    expect(await read('petal_runs_computed_total') - before).toBeGreaterThanOrEqual(8)
    expect(await read('petal_server_state{state="online"}')).toBe(1)
    started.child.kill('SIGTERM')
    expect(await exited(started.child)).toBe(0)
  }, 30_000)

  it('rejects bad flags with one line on stderr and exit code 1', async () => {
    const cases = [
      ['--model', BUNDLED_MODEL, '--blocks', '0:2', '--frobnicate'],
      ['--model', BUNDLED_MODEL, '--blocks', '0:2', '--num-blocks', '2'],
      ['--model', BUNDLED_MODEL, '--blocks', '0:2', '--simulated-row-ms', '-1'],
      ['--model', BUNDLED_MODEL, '--blocks', '0:2', '--rebalance-interval', '60'],
      ['--model', BUNDLED_MODEL, '--num-blocks', '2', '--rebalance-min-gain', '0.5'],
      ['--model', BUNDLED_MODEL, '--blocks', '0:2', '--relay', '4', '--listen', '/p2p-circuit'],
      ['--model', BUNDLED_MODEL, '--blocks', '0:2', '--announce', '127.0.0.1:4001'],
      ['--model', BUNDLED_MODEL, '--blocks', '0:2', '--metrics', 'localhost'],
      ['--model', BUNDLED_MODEL, '--blocks', '0:2', '--announce', '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBs9rjFZGW3dttt1KSBwZGY4xsgSW57MAduiWGr68gTom']
    ]
    await Promise.all(cases.map(async args => {
      const run = serve(args)
      expect(await exited(run.child)).toBe(1)
      const lines = run.stderr().trim().split('\n')
      expect(lines, run.stderr()).toHaveLength(1)
      expect(lines[0]).toMatch(/^petal-node: /)
      for (const flag of ['--announce', '--relay']) if (args.includes(flag)) expect(lines[0]).toContain(flag)
    }))
  }, 20_000)
})
