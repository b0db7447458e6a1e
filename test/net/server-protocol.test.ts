/**
 * A PetalServer in-process on stories260k blocks [0, 5), spoken to frame by frame
 * from a bare libp2p node on 127.0.0.1.
 */
import type { Libp2p } from 'libp2p'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { SpanRunner } from '../../model/span-runner.js'
import { fetchServerInfo } from '../../net/info-client.js'
import { PetalServer } from '../../node/server.js'
import { encodeFrame } from '../../protocol/frames.js'
import type { FramedStream } from '../../protocol/framed-stream.js'
import { PETAL_VERSION } from '../../protocol/ids.js'
import { decodeTensor, encodeTensor } from '../../protocol/tensor-codec.js'
import { BUNDLED_MODEL, maxAbsDiff } from '../helpers/fixtures.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../helpers/wire-client.js'

const MODEL = 'stories260k'
const C = 64 // hidden size of stories260k

describe('PetalServer over /petal/1/inference and /petal/1/info', () => {
  let server: PetalServer
  let client: Libp2p
  let local: SpanRunner
  let ckpt: Checkpoint
  const open: FramedStream[] = []

  /** A new inference stream (closed after the test file). */
  async function dial (): Promise<FramedStream> {
    const framed = await inferenceStream(client, server.address)
    open.push(framed)
    return framed
  }

  /** Sends a run and returns its (float32) output (1, T, C). */
  async function run (framed: FramedStream, runId: number, start: number, hidden: Float32Array): Promise<Float32Array> {
    await framed.write(runFrame(runId, start, hidden, C))
    const reply = await next(framed)
    expect(reply).toMatchObject({ type: 'result', runId, start })
    return decodeTensor(reply['hidden']).data
  }

  beforeAll(async () => {
    ckpt = Checkpoint.open(BUNDLED_MODEL)
    server = new PetalServer({
      modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 5 }, maxSessions: 4, cacheTokens: 256, limits: { maxTokensPerRun: 64, maxFrameBytes: 1 << 20 }
    })
    ;[local, client] = await Promise.all([SpanRunner.load(ckpt, 0, 5), bareNode(), server.start()])
  })

  afterEach(async () => {
    // every test starts with no session open
    await Promise.all(open.splice(0).map(async f => { await f.close().catch(() => {}) }))
    if (server.state === 'online') await expect.poll(async () => (await fetchServerInfo(client, server.address)).openSessions).toBe(0)
  })

  afterAll(async () => {
    await client?.stop()
    await server?.stop()
    await local?.release()
  })

  it('computes exactly what SpanRunner.forward computes, chunk by chunk through its cache', async () => {
    const framed = await dial()
    const sessionId = await openSession(framed, MODEL, 0, 5, 32)
    expect(sessionId).toMatch(/^[0-9a-f]{24}$/)
    const x = randomHidden(10, C) // (1, 10, C)
    const cache = local.newCache()
    for (const [runId, a, b] of [[1, 0, 4], [2, 4, 7], [3, 7, 10]] as const) {
      const chunk = x.subarray(a * C, b * C)
      expect(await run(framed, runId, a, chunk)).toEqual(await local.forward(chunk, cache, a))
    }
    // the same tokens in one run: equal up to float rounding of a different shape
    const whole = await local.forward(x, local.newCache(), 0)
    const lastChunk = await run(framed, 4, 7, x.subarray(7 * C))
    expect(maxAbsDiff(lastChunk, whole.subarray(7 * C))).toBeLessThan(1e-4)
    // rollback is position-addressed: rerunning from 4 replaces positions 4.. in the cache
    expect(await run(framed, 5, 4, x.subarray(4 * C, 7 * C))).toEqual(await local.forward(x.subarray(4 * C, 7 * C), cache, 4))
  })

  it('computes a token tree like SpanRunner.forward and caches only its trunk', async () => {
    const framed = await dial()
    await openSession(framed, MODEL, 0, 5, 32)
    const cache = local.newCache()
    const prefix = randomHidden(3, C, 1)
    expect(await run(framed, 1, 0, prefix)).toEqual(await local.forward(prefix, cache, 0))
    // rows 0-1 trunk at 3..4; row 2 replaces row 1 at 4; row 3 follows row 2 at 5
    const parents = [-1, 0, 0, 2]
    const tree = randomHidden(4, C, 2)
    await framed.write({ ...runFrame(2, 3, tree, C), parents })
    const reply = await next(framed)
    expect(reply).toMatchObject({ type: 'result', runId: 2, start: 3 })
    expect(decodeTensor(reply['hidden']).data).toEqual(await local.forward(tree, cache, 3, { parents }))
    expect(cache.length).toBe(5)
    // the server's cache ends where the local one does: the branch rows left nothing behind
    const after = randomHidden(1, C, 3)
    expect(await run(framed, 3, 5, after)).toEqual(await local.forward(after, cache, 5))
  })

  it('answers a float16 run in float16, close to the float32 result', async () => {
    const framed = await dial()
    await openSession(framed, MODEL, 0, 5)
    const x = randomHidden(5, C, 7)
    await framed.write(runFrame(1, 0, x, C, 'float16'))
    const reply = await next(framed)
    expect(reply).toMatchObject({ type: 'result', runId: 1, hidden: { dtype: 'float16', dims: [1, 5, C] } })
    const ref = await local.forward(x, local.newCache(), 0)
    const scale = Math.max(...ref.map(Math.abs))
    expect(maxAbsDiff(decodeTensor(reply['hidden']).data, ref) / scale).toBeLessThan(2e-2)
  })

  it('refuses a run that starts beyond the cache end with GAP and cacheEnd', async () => {
    const framed = await dial()
    await openSession(framed, MODEL, 0, 5)
    await run(framed, 1, 0, randomHidden(3, C))
    await framed.write(runFrame(2, 5, randomHidden(1, C), C))
    expect(await next(framed)).toMatchObject({ type: 'error', runId: 2, code: 'GAP', cacheEnd: 3 })
    await run(framed, 3, 3, randomHidden(2, C)) // resent from the cache end: fine
  })

  it('answers every bad frame with its error code and keeps serving', async () => {
    const framed = await dial()
    await framed.write(runFrame(1, 0, randomHidden(1, C), C))
    expect(await next(framed)).toMatchObject({ type: 'error', runId: 1, code: 'UNKNOWN_SESSION' }) // run before open
    await openSession(framed, MODEL, 0, 5)
    const good = runFrame(9, 0, randomHidden(1, C), C)
    const cases: Array<[unknown, string, number?]> = [
      [{ type: 'hello' }, 'BAD_MESSAGE'],
      [{ type: 'open', modelId: MODEL, start: 0, end: 5, maxTokens: 8 }, 'BAD_MESSAGE'], // a second open
      [{ ...good, runId: 'x' }, 'BAD_MESSAGE'],
      [{ ...good, runId: 2, hidden: { dtype: 'int8', dims: [1, 1, C], data: new Uint8Array(C) } }, 'BAD_MESSAGE', 2],
      [runFrame(3, 0, randomHidden(1, 32), 32), 'BAD_SHAPE', 3], // wrong hidden size
      [{ ...good, runId: 4, hidden: { ...encodeTensor(randomHidden(2, C), [1, 2, C]), dims: [1, 3, C] } }, 'BAD_SHAPE', 4],
      [runFrame(5, 0, randomHidden(65, C), C), 'TOO_LARGE', 5], // over maxTokensPerRun
      [{ ...good, runId: 6, parents: [0] }, 'BAD_MESSAGE', 6], // a row cannot continue itself
      [{ ...runFrame(7, 0, randomHidden(2, C), C), parents: [-1] }, 'BAD_MESSAGE', 7], // one parent for two rows
      [{ type: 'cancel', runIds: 'all' }, 'BAD_MESSAGE'],
      // NaN, infinities and absurd magnitudes: in a batched pass they would reach other sessions' outputs
      [runFrame(11, 0, Float32Array.from(randomHidden(2, C), (v, i) => (i === 7 ? NaN : v)), C), 'BAD_MESSAGE', 11],
      [runFrame(12, 0, Float32Array.from(randomHidden(1, C), (v, i) => (i === 0 ? -Infinity : v)), C), 'BAD_MESSAGE', 12],
      [runFrame(13, 0, Float32Array.from(randomHidden(1, C), (v, i) => (i === 3 ? 1e31 : v)), C), 'BAD_MESSAGE', 13]
    ]
    for (const [frame, code, runId] of cases) {
      await framed.write(frame)
      const reply = await next(framed)
      expect(reply, JSON.stringify(frame).slice(0, 80)).toMatchObject({ type: 'error', code })
      if (runId !== undefined) expect(reply['runId']).toBe(runId)
    }
    // the session itself is unharmed
    expect((await run(framed, 10, 0, randomHidden(2, C, 3))).length).toBe(2 * C)

    // frames that break the framing end their stream, and only it
    const garbage = await dial()
    garbage.stream.send(new Uint8Array([3, 0xc1, 0xc1, 0xc1])) // msgpack 0xc1 is never valid
    expect(await next(garbage)).toMatchObject({ type: 'error', code: 'BAD_MESSAGE' })
    expect(await garbage.read().then(r => r.done, () => true)).toBe(true) // ended (closed or reset)
    const huge = await dial()
    huge.stream.send(encodeFrame({ pad: new Uint8Array(2 << 20) }, { maxFrameBytes: 4 << 20 }).subarray(0, 1024))
    expect(await next(huge)).toMatchObject({ type: 'error', code: 'TOO_LARGE' })

    const other = await dial()
    await openSession(other, MODEL, 0, 5)
    const x = randomHidden(4, C, 11)
    expect(await run(other, 1, 0, x)).toEqual(await local.forward(x, local.newCache(), 0))
    expect((await run(framed, 11, 2, randomHidden(1, C))).length).toBe(C)
  })

  it('enforces SESSION_LIMIT, CACHE_LIMIT and WRONG_SPAN, then serves again', async () => {
    const expectRefused = async (framed: FramedStream, open: Record<string, unknown>, code: string): Promise<void> => {
      await framed.write({ type: 'open', modelId: MODEL, start: 0, end: 5, maxTokens: 16, ...open })
      expect(await next(framed)).toMatchObject({ type: 'error', code })
    }
    const probe = await dial()
    await expectRefused(probe, { modelId: 'other-model' }, 'WRONG_SPAN')
    await expectRefused(probe, { start: 3, end: 7 }, 'WRONG_SPAN')
    await expectRefused(probe, { maxTokens: 257 }, 'CACHE_LIMIT') // over the server's 256
    const held: FramedStream[] = []
    for (let i = 0; i < 4; i++) { // maxSessions
      const f = await dial()
      await openSession(f, MODEL, 0, 5, 8)
      held.push(f)
    }
    await expectRefused(probe, {}, 'SESSION_LIMIT')
    await held[0]?.write({ type: 'close' })
    await expect.poll(async () => (await fetchServerInfo(client, server.address)).openSessions).toBe(3)
    await openSession(probe, MODEL, 0, 5, 4)
    await probe.write(runFrame(1, 3, randomHidden(2, C), C)) // positions 3..4: past the 4 reserved
    expect(await next(probe)).toMatchObject({ type: 'error', runId: 1, code: 'CACHE_LIMIT' })
    expect((await run(probe, 2, 0, randomHidden(4, C))).length).toBe(4 * C)
  })

  it('copies a session\'s prefix into another of the same client (adopt): nothing computed, the same outputs after it', async () => {
    const [a, b] = [await dial(), await dial()]
    const idA = await openSession(a, MODEL, 0, 5)
    await openSession(b, MODEL, 0, 5)
    const prefix = randomHidden(6, C, 21)
    await run(a, 1, 0, prefix)
    const before = (await fetchServerInfo(client, server.address)).metrics!
    await b.write({ type: 'adopt', runId: 1, fromSessionId: idA, length: 5 })
    expect(await next(b)).toEqual({ type: 'adopted', runId: 1, length: 5 })
    const after = (await fetchServerInfo(client, server.address)).metrics!
    expect(after.runsComputed).toBe(before.runsComputed)
    expect(after.prefixesAdopted).toBe((before.prefixesAdopted ?? 0) + 1)
    // b goes on from position 5 as a session that computed the prefix itself
    const cache = local.newCache()
    await local.forward(prefix.subarray(0, 5 * C), cache, 0)
    const x = randomHidden(2, C, 22)
    expect(maxAbsDiff(await run(b, 2, 5, x), await local.forward(x, cache, 5))).toBeLessThan(1e-5)
    // a's cache is its own: b's run did not touch it
    const own = local.newCache()
    await local.forward(prefix, own, 0)
    const y = randomHidden(1, C, 23)
    expect(maxAbsDiff(await run(a, 2, 6, y), await local.forward(y, own, 6))).toBeLessThan(1e-5)

    const refusals: Array<[Record<string, unknown>, string]> = [
      [{ fromSessionId: 'no-such-session', length: 2 }, 'UNKNOWN_SESSION'],
      [{ fromSessionId: idA, length: 8 }, 'GAP'], // a holds 7
      [{ fromSessionId: idA, length: 65 }, 'CACHE_LIMIT'], // b reserved 64
      [{ fromSessionId: idA }, 'BAD_MESSAGE']
    ]
    for (const [i, [fields, code]] of refusals.entries()) {
      await b.write({ type: 'adopt', runId: 10 + i, ...fields })
      expect(await next(b), code).toMatchObject({ type: 'error', runId: 10 + i, code })
    }
    const narrow = await dial()
    await openSession(narrow, MODEL, 0, 2)
    await narrow.write({ type: 'adopt', runId: 1, fromSessionId: idA, length: 2 })
    expect(await next(narrow)).toMatchObject({ type: 'error', runId: 1, code: 'WRONG_SPAN' })
    // another client naming a's session id gets what an unknown id gets
    const stranger = await bareNode()
    try {
      const theirs = await inferenceStream(stranger, server.address)
      open.push(theirs)
      await openSession(theirs, MODEL, 0, 5)
      await theirs.write({ type: 'adopt', runId: 1, fromSessionId: idA, length: 2 })
      expect(await next(theirs)).toMatchObject({ type: 'error', runId: 1, code: 'UNKNOWN_SESSION' })
    } finally {
      await stranger.stop()
    }
    expect((await run(b, 3, 7, randomHidden(1, C))).length).toBe(C) // b still serves
    // a session adopting from itself keeps its prefix: a rollback, not an empty cache
    await a.write({ type: 'adopt', runId: 3, fromSessionId: idA, length: 4 })
    expect(await next(a)).toEqual({ type: 'adopted', runId: 3, length: 4 })
    await a.write(runFrame(4, 5, randomHidden(1, C), C))
    expect(await next(a)).toMatchObject({ type: 'error', runId: 4, code: 'GAP', cacheEnd: 4 })
    const z = randomHidden(1, C, 24)
    const mine = local.newCache()
    await local.forward(prefix.subarray(0, 4 * C), mine, 0)
    expect(maxAbsDiff(await run(a, 5, 4, z), await local.forward(z, mine, 4))).toBeLessThan(1e-5)
  })

  it('drops cancelled runs before they start: they are never computed', async () => {
    const framed = await dial()
    await openSession(framed, MODEL, 0, 5, 64)
    const before = (await fetchServerInfo(client, server.address)).metrics!
    // runs 1..6 form one chain; cancel 3.. in the same write, so it lands while run 1 computes
    const frames = [1, 2, 3, 4, 5, 6].map(id => encodeFrame(runFrame(id, (id - 1) * 8, randomHidden(8, C, id), C)))
    frames.push(encodeFrame({ type: 'cancel', runIds: [], fromRunId: 3 }))
    framed.stream.send(Buffer.concat(frames))
    expect(await next(framed)).toMatchObject({ type: 'result', runId: 1 })
    expect(await next(framed)).toMatchObject({ type: 'result', runId: 2 })
    // the chain goes on from the first cancelled position; no result of 3..6 ever comes
    expect(await run(framed, 7, 16, randomHidden(1, C))).toHaveLength(C)
    const after = (await fetchServerInfo(client, server.address)).metrics!
    expect(after.runsComputed - before.runsComputed).toBe(3) // 1, 2, 7
    expect(after.runsDroppedBeforeStart - before.runsDroppedBeforeStart).toBe(4) // 3..6
    // a late duplicate of a cancelled run is dropped on arrival
    await framed.write({ type: 'cancel', runIds: [8] })
    await framed.write(runFrame(8, 17, randomHidden(1, C), C))
    expect(await run(framed, 9, 17, randomHidden(1, C))).toHaveLength(C)
    expect((await fetchServerInfo(client, server.address)).metrics!.runsDroppedLate - before.runsDroppedLate).toBe(1)
  })

  it('describes itself on /petal/1/info', async () => {
    const framed = await dial()
    await openSession(framed, MODEL, 0, 5, 40)
    const info = await fetchServerInfo(client, server.address)
    expect(info).toMatchObject({
      peerId: server.host.peerId.toString(),
      modelId: MODEL,
      numBlocks: 5,
      start: 0,
      end: 5,
      state: 'online',
      maxSessions: 4,
      device: 'cpu',
      version: PETAL_VERSION,
      blockHashes: [0, 1, 2, 3, 4].map(b => ckpt.blockWeightsHash(b))
    })
    expect(info.addrs).toContain(server.address)
    expect(info.openSessions).toBe(1)
    expect(info.freeCacheTokens).toBe(256 - 40)
    expect(info.throughput.decodeTokensPerSec).toBeGreaterThan(0)
    expect(info.throughput.prefillTokensPerSec).toBeGreaterThan(info.throughput.decodeTokensPerSec)
    expect(info.metrics?.runsComputed).toBeGreaterThan(0)
    expect(Math.abs(info.updatedAt - Date.now())).toBeLessThan(5000)
  })

  it('tells open sessions it is draining when it stops, then closes their streams', async () => {
    const framed = await dial()
    await openSession(framed, MODEL, 0, 5)
    await server.stop()
    expect(server.state).toBe('draining')
    expect(await next(framed)).toEqual({ type: 'notice', state: 'draining' })
    expect((await framed.read({ signal: AbortSignal.timeout(3000) })).done).toBe(true)
  })
})
