/**
 * A server that cannot be dialed (no listen address of its own, as behind a NAT) serves
 * through a relay: another server started with relayReservations (`serve --relay N`).
 */
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { wholeMessageNoise } from '../../net/whole-message-noise.js'
import { PetalServer } from '../../node/server.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'
import { InProcessSwarm } from '../helpers/in-process-swarm.js'
import { fullyCovered, generateGreedy, waitForServers } from '../helpers/swarm.js'

const SPEED = { decodeTokensPerSec: 1000, prefillTokensPerSec: 1000 }

describe('a server behind a relay', () => {
  const swarm = new InProcessSwarm()
  const ref = readReference('stories260k').prompts[0]
  let relay: PetalServer
  let hidden: PetalServer
  let client: SwarmClient
  beforeAll(async () => {
    relay = await swarm.start({ blocks: { start: 0, end: 3 }, relayReservations: 4 })
    hidden = await swarm.start({ blocks: { start: 3, end: 5 }, listen: [`${relay.address}/p2p-circuit`] })
    client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, fullyCovered(5))
  }, 30_000)
  afterAll(async () => { await swarm.close() })

  it('has only the relayed address, and serves a generation through it with the reference tokens', async () => {
    const id = hidden.host.peerId.toString()
    expect(hidden.address).toBe(`${relay.address}/p2p-circuit/p2p/${id}`)
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const result = await generateGreedy(model, ref.prompt_ids, 24)
    expect(result.tokens).toEqual(ref.greedy_new_ids.slice(0, 24))
    expect(result.stats.target.route).toContain(id.slice(-6))
    await model.release()
    const conns = client.host.getConnections(hidden.host.peerId)
    expect(conns.length).toBeGreaterThan(0)
    for (const conn of conns) {
      expect(conn.remoteAddr.toString()).toContain('/p2p-circuit')
      // no data or time limit: libp2p's defaults (128 KiB, 2 minutes) would cut a session off
      expect(conn.limits).toBeUndefined()
    }
  }, 30_000)

  it('a libp2p peer that is no Petal server gets no reservation: the relay is for servers', async () => {
    const stranger = createLibp2p({
      addresses: { listen: [`${relay.address}/p2p-circuit`] },
      transports: [tcp(), circuitRelayTransport()],
      connectionEncrypters: [wholeMessageNoise()],
      streamMuxers: [yamux()],
      services: { identify: identify() }
    })
    await expect(stranger).rejects.toThrow(/PERMISSION_DENIED|denied|refused/i)
  }, 30_000)

  it('push mode: the server before it forwards to it through the relay, with no failover', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true })
    const result = await generateGreedy(model, ref.prompt_ids, 24)
    expect(result.tokens).toEqual(ref.greedy_new_ids.slice(0, 24))
    expect(result.stats.target.failovers).toBe(0)
    expect(result.stats.target.route).toContain(hidden.host.peerId.toString().slice(-6))
    await model.release()
  }, 30_000)

  it('a server listening only through a node that is no relay fails to start, and says why', async () => {
    const plain = await swarm.start({ blocks: { start: 0, end: 3 } })
    const lonely = new PetalServer({
      modelDir: BUNDLED_MODEL,
      blocks: { start: 3, end: 5 },
      throughput: SPEED,
      listen: [`${plain.address}/p2p-circuit`],
      bootstrap: [plain.address],
      addressWaitMs: 1500
    })
    await expect(lonely.start()).rejects.toThrow(/refused the reservation or is no relay \(a relay is a node started with petal-node serve --relay N\)/)
  }, 30_000)

  it('one whose named relay stops stays up, warns, and listens through it again when it comes back', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => { lines.push(line) } })
    const logged = async (text: string): Promise<void> => {
      for (let waited = 0; waited < 15_000 && !lines.some(l => l.includes(text)); waited += 100) await new Promise(resolve => setTimeout(resolve, 100))
    }
    const relayKey = await generateKeyPair('Ed25519')
    const startRelay = async (listen?: string[]): Promise<PetalServer> => {
      const server = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 3 }, throughput: SPEED, relayReservations: 2, privateKey: relayKey, ...(listen !== undefined ? { listen } : {}) })
      await server.start()
      return server
    }
    let ownRelay = await startRelay()
    const relayAddress = ownRelay.address
    const behind = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 3, end: 5 }, throughput: SPEED, listen: [`${relayAddress}/p2p-circuit`], bootstrap: [relayAddress], logger })
    let returnClient: SwarmClient | undefined
    try {
      await behind.start()
      expect(behind.info().addrs).toHaveLength(1)
      await ownRelay.stop()
      await logged('unreachable: no address left')
      expect(lines.filter(l => l.includes('unreachable: no address left'))).toHaveLength(1)
      expect(behind.info().addrs).toEqual([])
      expect(behind.state).toBe('online')

      // the relay restarts where it was, with its identity: libp2p alone would never reserve again
      ownRelay = await startRelay([relayAddress.slice(0, relayAddress.indexOf('/p2p/'))])
      expect(ownRelay.address).toBe(relayAddress)
      await logged('reachable again')
      expect(lines.some(l => l.includes('listening through the relay again'))).toBe(true)
      expect(behind.info().addrs).toEqual([`${relayAddress}/p2p-circuit/p2p/${behind.host.peerId.toString()}`])
      returnClient = await SwarmClient.connect({ bootstrap: [relayAddress] })
      await waitForServers(returnClient, 'stories260k', 5, fullyCovered(5))
      const model = await LanguageModel.swarm(returnClient, BUNDLED_MODEL)
      const result = await generateGreedy(model, ref.prompt_ids, 12)
      expect(result.tokens).toEqual(ref.greedy_new_ids.slice(0, 12))
      expect(result.stats.target.route).toContain(behind.host.peerId.toString().slice(-6))
      await model.release()
    } finally {
      await returnClient?.close()
      await behind.stop()
      await ownRelay.stop()
    }
  }, 60_000)

  it('one listening through any relay it meets (/p2p-circuit), in a swarm with none, gives up after addressWaitMs', async () => {
    // a swarm of its own: the one above has a relay, which relay discovery could find
    const plain = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 3 }, throughput: SPEED })
    await plain.start()
    try {
      const lonely = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 3, end: 5 }, throughput: SPEED, listen: ['/p2p-circuit'], bootstrap: [plain.address], addressWaitMs: 1500 })
      await expect(lonely.start()).rejects.toThrow(/No address to announce after 1500 ms: a server listening only through a relay/)
    } finally {
      await plain.stop()
    }
  }, 30_000)
})

describe('push to a server behind a relay from a server that is not its relay', () => {
  const swarm = new InProcessSwarm()
  const ref = readReference('stories260k').prompts[0]
  let hidden: PetalServer
  let client: SwarmClient
  beforeAll(async () => {
    const relay = await swarm.start({ blocks: { start: 4, end: 5 }, relayReservations: 4 })
    await swarm.start({ blocks: { start: 0, end: 2 } })
    hidden = await swarm.start({ blocks: { start: 2, end: 4 }, listen: [`${relay.address}/p2p-circuit`] })
    client = await swarm.connect()
    await waitForServers(client, 'stories260k', 5, fullyCovered(5))
  }, 30_000)
  afterAll(async () => { await swarm.close() })

  it('[0,2) pushes to the relayed [2,4), which pushes to its relay [4,5): reference tokens, no failover', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL, { push: true })
    const result = await generateGreedy(model, ref.prompt_ids, 24)
    expect(result.tokens).toEqual(ref.greedy_new_ids.slice(0, 24))
    expect(result.stats.target.failovers).toBe(0)
    expect(result.stats.target.route).toMatch(new RegExp(`\\[0,2\\) -> …${hidden.host.peerId.toString().slice(-6)}\\[2,4\\) -> `))
    await model.release()
  }, 30_000)
})
