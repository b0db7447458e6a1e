/**
 * A stopping server closes its push streams once what they queued is sent, but a next server
 * that reads nothing (frozen, or faulty) never lets them drain: the stop waits a second for
 * each and goes on, so it cannot hold the server's exit.
 */
import type { Libp2p } from 'libp2p'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PushForwarder } from '../../node/push-forwarder.js'
import { PROTOCOL_PUSH } from '../../protocol/ids.js'
import { DEFAULT_LIMITS } from '../../protocol/limits.js'
import { encodeTensor } from '../../protocol/tensor-codec.js'
import type { HiddenTensor } from '../../protocol/hidden.js'
import { bareNode } from '../helpers/wire-client.js'

const C = 64

describe('PushForwarder.stop', () => {
  let sender: Libp2p
  let deaf: Libp2p
  beforeAll(async () => {
    [sender, deaf] = await Promise.all([bareNode(), bareNode()])
    // takes the push stream and never reads it: no window updates, so the sender's writes back up
    await deaf.handle(PROTOCOL_PUSH, (stream) => { stream.pause() })
    await sender.dial(deaf.getMultiaddrs()[0]!)
  })
  afterAll(async () => {
    await sender?.stop()
    await deaf?.stop()
  })

  it('ends within about a second when the next server reads nothing', async () => {
    const forwarder = new PushForwarder({ host: sender, limits: DEFAULT_LIMITS, linkLatencyMs: 0, dialTimeoutMs: 5000, inactivityTimeoutMs: 60_000, log: pino({ level: 'silent' }) })
    // 768 KiB of pushes against yamux's 256 KiB window
    const hidden = encodeTensor(new Float32Array(512 * C), [1, 512, C]) as HiddenTensor
    for (let runId = 0; runId < 6; runId++) {
      forwarder.forward(deaf.peerId.toString(), { type: 'push', sessionId: 'next', runId, start: 0, hidden, push: [] }).catch(() => {})
    }
    await new Promise(resolve => setTimeout(resolve, 300))
    const began = performance.now()
    await forwarder.stop()
    expect(performance.now() - began).toBeLessThan(3000)
  })
})
