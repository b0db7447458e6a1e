import { yamux } from '@chainsafe/libp2p-yamux'
import { multiaddrConnectionPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { lazyWindowYamux } from '../../net/lazy-window-yamux.js'

/** yamux's frame type of a window update (FrameType.WindowUpdate). */
const WINDOW_UPDATE = 1

type Factory = ReturnType<ReturnType<typeof yamux>>

/**
 * Two muxers over an in-memory connection; counts the window updates the receiving side
 * sends, and collects what reaches its first inbound stream.
 */
async function connectedMuxers (makeFactory: () => Factory): Promise<{ outbound: Stream, windowUpdates: () => number, received: () => number, ended: Promise<void> }> {
  const [a, b] = multiaddrConnectionPair()
  const dialer = makeFactory().createStreamMuxer(a)
  const listener = makeFactory().createStreamMuxer(b)
  // streams bind the muxer's sendFrame when they are made: count on the instance before any is
  const internals = listener as unknown as { sendFrame: (header: { type: number }, body?: unknown) => boolean }
  const sendFrame = internals.sendFrame.bind(listener)
  let windowUpdates = 0
  internals.sendFrame = (header, body) => {
    if (header.type === WINDOW_UPDATE) windowUpdates++
    return sendFrame(header, body)
  }
  let received = 0
  const ended = new Promise<void>((resolve) => {
    listener.addEventListener('stream', (evt) => {
      evt.detail.addEventListener('message', (m) => { received += m.data.byteLength })
      evt.detail.addEventListener('remoteCloseWrite', () => { resolve() })
    })
  })
  const outbound = await dialer.createStream()
  return { outbound, windowUpdates: () => windowUpdates, received: () => received, ended }
}

/** Sends `messages` frames of `bytes`; given `received`, each once the last has arrived (as runs go). */
async function sendAll (stream: Stream, messages: number, bytes: number, received?: () => number): Promise<void> {
  for (let i = 0; i < messages; i++) {
    if (!stream.send(new Uint8Array(bytes).fill(i % 251))) await stream.onDrain()
    while (received !== undefined && received() < (i + 1) * bytes) await new Promise(resolve => setTimeout(resolve, 0))
  }
  await stream.close()
}

describe('lazyWindowYamux', () => {
  it('sends no window update per small frame, where plain yamux sends one for each', async () => {
    const counts: number[] = []
    for (const make of [() => lazyWindowYamux()(), () => yamux()()]) {
      const { outbound, windowUpdates, received, ended } = await connectedMuxers(make)
      await sendAll(outbound, 100, 300, received) // 100 one-token runs of a 64-wide model, one at a time
      await ended
      expect(received()).toBe(100 * 300)
      counts.push(windowUpdates())
    }
    const [lazy, plain] = counts as [number, number]
    expect(plain).toBeGreaterThanOrEqual(100)
    expect(lazy).toBeLessThanOrEqual(1) // the ACK that opens the stream, at most
  })

  it('still opens the window: 4 MiB crosses a 256 KiB window, with an update about every half window', async () => {
    const { outbound, windowUpdates, received, ended } = await connectedMuxers(() => lazyWindowYamux()())
    await sendAll(outbound, 256, 16 * 1024)
    await ended
    expect(received()).toBe(4 * 1024 * 1024)
    // a sender without updates stalls after 256 KiB; halves of a window that may grow to 16 MiB
    expect(windowUpdates()).toBeGreaterThanOrEqual(2)
    expect(windowUpdates()).toBeLessThanOrEqual(33)
  })
})
