/**
 * A client that sends far more runs than any pipeline keeps in flight: the server refuses
 * the excess (its memory stays bounded) and another client's run goes ahead of the backlog.
 * One that stops reading its replies loses its stream before they cost the server much.
 */
import type { Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PetalServer } from '../../node/server.js'
import { DEFAULT_MAX_QUEUED_RUNS_PER_SESSION } from '../../node/session-manager.js'
import { multiaddr } from '@multiformats/multiaddr'
import { fetchServerInfo } from '../../net/info-client.js'
import type { FramedStream } from '../../protocol/framed-stream.js'
import { encodeFrame } from '../../protocol/frames.js'
import { PROTOCOL_PUSH } from '../../protocol/ids.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { bareNode, inferenceStream, next, openSession, randomHidden, runFrame } from '../helpers/wire-client.js'

const C = 64
const FLOOD = 200
/** Flood runs the server may compute while the flood still arrives (the running one included; 8 runs are one window update's worth). */
const COMPUTED_WHILE_ARRIVING = 8

describe('clients that flood a server, or stop reading', () => {
  let server: PetalServer
  let client: Libp2p
  const streams: FramedStream[] = []

  beforeAll(async () => {
    server = new PetalServer({ modelDir: BUNDLED_MODEL, blocks: { start: 0, end: 5 }, throughput: { decodeTokensPerSec: 1000, prefillTokensPerSec: 1000 } })
    ;[client] = await Promise.all([bareNode(), server.start()])
  })
  afterAll(async () => {
    await Promise.all(streams.map(async s => { await s.close().catch(() => {}) }))
    await client?.stop()
    await server?.stop()
  })

  it(`gets TOO_LARGE past ${DEFAULT_MAX_QUEUED_RUNS_PER_SESSION} waiting runs, and another session's run overtakes its backlog`, async () => {
    const flooder = await inferenceStream(client, server.address)
    const honest = await inferenceStream(client, server.address)
    streams.push(flooder, honest)
    await openSession(flooder, 'stories260k', 0, 5, 64)
    await openSession(honest, 'stories260k', 0, 5, 64)

    // every reply in arrival order, both streams
    const arrivals: string[] = []
    const refusals: string[] = []
    const reading = (async () => {
      for (let i = 0; i < FLOOD; i++) {
        const reply = await next(flooder, 30_000)
        arrivals.push(`flood ${String(reply['type'])}`)
        if (reply['type'] === 'error') refusals.push(`${String(reply['code'])}: ${String(reply['message'])}`)
      }
    })()
    const x = runFrame(0, 0, randomHidden(64, C, 1), C)
    for (let i = 0; i < FLOOD; i++) void flooder.write({ ...x, runId: i })
    // once the excess is refused, the backlog is as long as it gets. The flood's 3 MiB come in
    // through the stream's window, 128 KiB (8 runs) per window update, and the server computes
    // between reads: besides the runs queued and the one running, a few finish meanwhile.
    await expect.poll(() => refusals.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(FLOOD - DEFAULT_MAX_QUEUED_RUNS_PER_SESSION - COMPUTED_WHILE_ARRIVING)
    const floodResultsBefore = arrivals.filter(a => a === 'flood result').length

    await honest.write(runFrame(1, 0, randomHidden(1, C, 2), C))
    expect(await next(honest, 30_000)).toMatchObject({ type: 'result', runId: 1 })
    const overtaken = arrivals.filter(a => a === 'flood result').length - floodResultsBefore
    await reading

    const computed = arrivals.filter(a => a === 'flood result').length
    expect(computed + refusals.length).toBe(FLOOD)
    expect(computed).toBeLessThanOrEqual(DEFAULT_MAX_QUEUED_RUNS_PER_SESSION + COMPUTED_WHILE_ARRIVING) // bounded: the rest was refused
    expect(refusals.every(r => r.startsWith(`TOO_LARGE: Cannot queue run`) && r.includes(`already has ${DEFAULT_MAX_QUEUED_RUNS_PER_SESSION} runs waiting`))).toBe(true)
    // sessions take turns: the honest run waited for at most the flood run computing when it came (and one more)
    // instead of the dozens still queued (a first-come-first-served queue made it wait for them all)
    expect(computed - floodResultsBefore).toBeGreaterThan(10)
    expect(overtaken).toBeLessThanOrEqual(3)
    // the server counts what it refused, for `petal-node status`; nothing waits any more
    const metrics = (await fetchServerInfo(client, server.address)).metrics
    expect(metrics?.runsRefused).toBe(refusals.length)
    expect(metrics?.queuedRuns).toBe(0)
  }, 60_000)

  it('one that stops reading its replies has its session closed and its stream reset; the others are served', async () => {
    const before = (await fetchServerInfo(client, server.address)).openSessions
    const deaf = await inferenceStream(client, server.address)
    const other = await inferenceStream(client, server.address)
    streams.push(deaf, other)
    await openSession(deaf, 'stories260k', 0, 5, 64)
    await openSession(other, 'stories260k', 0, 5, 64)
    const raw = deaf.stream as unknown as Stream
    raw.pause() // reads nothing more: the server's replies to it pile up
    const bad = encodeFrame({ type: 'cancel', runIds: 'x' }) // 14 bytes; each earns an error frame
    let sent = 0
    try {
      for (; sent < 500_000; sent++) if (!raw.send(bad)) await raw.onDrain({ signal: AbortSignal.timeout(10_000) })
    } catch {
      // the server reset the stream
    }
    expect(sent).toBeLessThan(500_000)
    await expect.poll(async () => (await fetchServerInfo(client, server.address)).openSessions, { timeout: 10_000 }).toBe(before + 1)
    await other.write(runFrame(7, 0, randomHidden(1, C, 3), C))
    expect(await next(other)).toMatchObject({ type: 'result', runId: 7 })
    expect(server.state).toBe('online')
  }, 60_000)

  it('a push stream whose sender stops reading its error frames is reset', async () => {
    const raw = await client.dialProtocol(multiaddr(server.address), PROTOCOL_PUSH)
    raw.pause()
    const bad = encodeFrame({ type: 'nope' })
    let sent = 0
    try {
      for (; sent < 500_000; sent++) if (!raw.send(bad)) await raw.onDrain({ signal: AbortSignal.timeout(10_000) })
    } catch {
      // the server reset the stream
    }
    expect(sent).toBeLessThan(500_000)
    expect(server.state).toBe('online')
  }, 60_000)
})
