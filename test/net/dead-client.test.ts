/**
 * A client that dies with runs queued must not hurt the server or anyone else: its
 * session and cache are freed, and another client's session keeps computing exactly.
 */
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { SpanRunner } from '../../model/span-runner.js'
import { fetchServerInfo } from '../../net/info-client.js'
import { PetalServer } from '../../node/server.js'
import { decodeTensor } from '../../protocol/tensor-codec.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../helpers/wire-client.js'

const C = 64

describe('a client that dies mid-generation', () => {
  let server: PetalServer
  let survivor: Libp2p
  let local: SpanRunner

  beforeAll(async () => {
    server = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 5 }, cacheTokens: 512, throughput: { decodeTokensPerSec: 1000, prefillTokensPerSec: 10000 } })
    await server.start()
    survivor = await bareNode()
    local = await SpanRunner.load(Checkpoint.open(BUNDLED_MODEL), 0, 5)
  })
  afterAll(async () => {
    await survivor?.stop()
    await server?.stop()
    await local?.release()
  })

  it('frees its session and cache; another session is unaffected', async () => {
    const doomed = await bareNode()
    const d = await inferenceStream(doomed, server.address)
    await openSession(d, 'stories260k', 0, 5, 256)
    const s = await inferenceStream(survivor, server.address)
    await openSession(s, 'stories260k', 0, 5, 128)
    expect((await fetchServerInfo(survivor, server.address)).openSessions).toBe(2)

    // the doomed client queues a pile of work and vanishes without closing anything
    for (let i = 0; i < 20; i++) await d.write(runFrame(i, i * 8, randomHidden(8, C, i), C))
    await doomed.stop()

    // meanwhile the survivor's runs are computed exactly
    const cache = local.newCache(0, 5)
    for (let i = 0; i < 4; i++) {
      const x = randomHidden(2, C, 100 + i)
      await s.write(runFrame(i, i * 2, x, C))
      const reply = await next(s, 10_000)
      expect(reply.type).toBe('result')
      expect(Array.from(decodeTensor(reply.hidden).data)).toEqual(Array.from(await local.forward(x, cache, i * 2)))
    }
    await expect.poll(async () => (await fetchServerInfo(survivor, server.address)).openSessions, { timeout: 10_000 }).toBe(1)
    expect((await fetchServerInfo(survivor, server.address)).freeCacheTokens).toBe(512 - 128)
    await s.close()
  })
})
