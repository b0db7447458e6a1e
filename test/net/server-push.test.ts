/**
 * Push mode and simulated link latency: two in-process servers on stories260k,
 * [0, 2) and [2, 5), and a bare client on 127.0.0.1.
 */
import type { Libp2p } from 'libp2p'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { SpanRunner } from '../../model/span-runner.js'
import { PetalServer } from '../../node/server.js'
import type { FramedStream } from '../../protocol/framed-stream.js'
import { PROTOCOL_PUSH } from '../../protocol/ids.js'
import { decodeTensor } from '../../protocol/tensor-codec.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../helpers/wire-client.js'

const MODEL = 'stories260k'
const C = 64
const THROUGHPUT = { decodeTokensPerSec: 1000, prefillTokensPerSec: 10000 } // skip measuring

describe('push mode between two servers', () => {
  let first: PetalServer // [0, 2)
  let second: PetalServer // [2, 5)
  let slow: PetalServer // [0, 2), 150 ms one-way latency
  let client: Libp2p
  let localA: SpanRunner
  let localB: SpanRunner
  const streams: FramedStream[] = []

  async function dial (server: PetalServer): Promise<FramedStream> {
    const framed = await inferenceStream(client, server.address)
    streams.push(framed)
    return framed
  }

  beforeAll(async () => {
    second = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 2, end: 5 }, throughput: THROUGHPUT })
    await second.start()
    // the first server learns the second's address by joining through it
    first = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 2 }, bootstrap: [second.address], throughput: THROUGHPUT })
    slow = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 2 }, linkLatencyMs: 150, throughput: THROUGHPUT })
    const ckpt = Checkpoint.open(BUNDLED_MODEL)
    ;[localA, localB, client] = await Promise.all([SpanRunner.load(ckpt, 0, 2), SpanRunner.load(ckpt, 2, 5), bareNode(), first.start(), slow.start()])
  })

  afterAll(async () => {
    for (const f of streams) f.abort(new Error('test done'))
    await client?.stop()
    await Promise.all([first?.stop(), second?.stop(), slow?.stop()])
    await Promise.all([localA?.release(), localB?.release()])
  })

  it('forwards a run to the next server; the client gets both outputs, equal to a local forward', async () => {
    const [a, b] = [await dial(first), await dial(second)]
    await openSession(a, MODEL, 0, 2)
    const sessionB = await openSession(b, MODEL, 2, 5)
    const push = [{ peerId: second.host.peerId.toString(), sessionId: sessionB }]
    const [cacheA, cacheB] = [localA.newCache(), localB.newCache()]
    for (const [runId, start, T] of [[1, 0, 5], [2, 5, 1], [3, 6, 1]] as const) {
      const x = randomHidden(T, C, runId)
      await a.write(runFrame(runId, start, x, C, 'float32', { push }))
      const fromA = await next(a)
      const fromB = await next(b)
      expect(fromA).toMatchObject({ type: 'result', runId, start })
      expect(fromB).toMatchObject({ type: 'result', runId, start })
      const midway = await localA.forward(x, cacheA, start)
      expect(decodeTensor(fromA['hidden']).data).toEqual(midway)
      expect(decodeTensor(fromB['hidden']).data).toEqual(await localB.forward(midway, cacheB, start))
    }
    // all three pushes went over one reused stream
    const pushStreams = first.host.getConnections(second.host.peerId).flatMap(c => c.streams).filter(s => s.protocol === PROTOCOL_PUSH)
    expect(pushStreams).toHaveLength(1)
  })

  it('with replyOutput false only the last server answers', async () => {
    const [a, b] = [await dial(first), await dial(second)]
    await openSession(a, MODEL, 0, 2)
    const sessionB = await openSession(b, MODEL, 2, 5)
    const push = [{ peerId: second.host.peerId.toString(), sessionId: sessionB }]
    await a.write(runFrame(1, 0, randomHidden(2, C), C, 'float16', { push, replyOutput: false }))
    expect(await next(b)).toMatchObject({ type: 'result', runId: 1, hidden: { dtype: 'float16', dims: [1, 2, C] } })
    await a.write(runFrame(2, 2, randomHidden(1, C), C)) // nothing from run 1 is waiting on a
    expect(await next(a)).toMatchObject({ type: 'result', runId: 2 })
  })

  it('with carry only the last hop answers, with every earlier hop\'s output (a self-hop on the way)', async () => {
    // route [0,2) on first -> [2,3) on second -> [3,5) on second (pushed to itself)
    const [a, b23, b35] = [await dial(first), await dial(second), await dial(second)]
    const opened = await (async () => { await a.write({ type: 'open', modelId: MODEL, start: 0, end: 2, maxTokens: 64 }); return await next(a) })()
    expect(opened).toMatchObject({ type: 'opened', carriesOutputs: true })
    const s23 = await openSession(b23, MODEL, 2, 3)
    const s35 = await openSession(b35, MODEL, 3, 5)
    const peer = second.host.peerId.toString()
    const push = [{ peerId: peer, sessionId: s23 }, { peerId: peer, sessionId: s35 }]
    const ckpt = Checkpoint.open(BUNDLED_MODEL)
    const [local23, local35] = await Promise.all([SpanRunner.load(ckpt, 2, 3), SpanRunner.load(ckpt, 3, 5)])
    const [cacheA, cache23, cache35] = [localA.newCache(), local23.newCache(), local35.newCache()]
    try {
      for (const [runId, start, T] of [[1, 0, 3], [2, 3, 1]] as const) {
        const x = randomHidden(T, C, 10 + runId)
        await a.write(runFrame(runId, start, x, C, 'float32', { push, carry: true }))
        const reply = await next(b35)
        const outA = await localA.forward(x, cacheA, start)
        const out23 = await local23.forward(outA, cache23, start)
        expect(reply).toMatchObject({ type: 'result', runId, start })
        expect(reply['carried']).toHaveLength(2)
        expect(decodeTensor(reply['carried'][0]).data).toEqual(outA)
        expect(decodeTensor(reply['carried'][1]).data).toEqual(out23)
        expect(decodeTensor(reply['hidden']).data).toEqual(await local35.forward(out23, cache35, start))
      }
      // nothing came back on the earlier hops' streams: their next frame answers a plain run
      await a.write(runFrame(3, 4, randomHidden(1, C), C))
      expect(await next(a)).toMatchObject({ type: 'result', runId: 3 })
      await b23.write(runFrame(4, 4, randomHidden(1, C), C))
      expect(await next(b23)).toMatchObject({ type: 'result', runId: 4 })
    } finally {
      await Promise.all([local23.release(), local35.release()])
    }
  })

  it('reports an unreachable next server to the client as PUSH_FAILED naming the peer', async () => {
    const a = await dial(first)
    await openSession(a, MODEL, 0, 2)
    const ghost = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    await a.write(runFrame(1, 0, randomHidden(1, C), C, 'float32', { push: [{ peerId: ghost, sessionId: 'nope' }] }))
    const replies = [await next(a), await next(a)] // the result of this hop, and the push failure
    expect(replies).toContainEqual(expect.objectContaining({ type: 'result', runId: 1 }))
    const error = replies.find(r => r['type'] === 'error')
    expect(error).toMatchObject({ runId: 1, code: 'PUSH_FAILED' })
    expect(error?.['message']).toContain(ghost)
  })

  it('drops a push for a session the next server does not know, and keeps serving', async () => {
    const [a, b] = [await dial(first), await dial(second)]
    await openSession(a, MODEL, 0, 2)
    const sessionB = await openSession(b, MODEL, 2, 5)
    const peerId = second.host.peerId.toString()
    await a.write(runFrame(1, 0, randomHidden(1, C), C, 'float32', { push: [{ peerId, sessionId: 'f'.repeat(24) }], replyOutput: false }))
    await a.write(runFrame(2, 0, randomHidden(1, C), C, 'float32', { push: [{ peerId, sessionId: sessionB }], replyOutput: false }))
    expect(await next(b)).toMatchObject({ type: 'result', runId: 2 }) // run 1 never reached b's session
  })

  it('delays every frame by linkLatencyMs, overlapping in flight and in order', async () => {
    const framed = await dial(slow)
    const began = performance.now()
    await openSession(framed, MODEL, 0, 2)
    expect(performance.now() - began).toBeGreaterThanOrEqual(145)
    const sent = performance.now()
    for (let i = 0; i < 5; i++) await framed.write(runFrame(i + 1, i, randomHidden(1, C, i), C))
    const arrivals: number[] = []
    for (let i = 0; i < 5; i++) {
      expect(await next(framed)).toMatchObject({ type: 'result', runId: i + 1 })
      arrivals.push(performance.now() - sent)
    }
    expect(arrivals[0]).toBeGreaterThanOrEqual(145)
    expect(arrivals[4]).toBeLessThan(145 * 3) // not 5 x 150 ms: frames overlap in flight
  })
})
