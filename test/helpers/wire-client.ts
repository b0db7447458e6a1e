/**
 * A bare libp2p client that speaks Petal frames by hand, for server tests: no
 * client library in between, so the tests pin the wire behaviour itself.
 */
import { yamux } from '@chainsafe/libp2p-yamux'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { FramedStream } from '../../protocol/framed-stream.js'
import { wholeMessageNoise } from '../../net/whole-message-noise.js'
import { tcp } from '@libp2p/tcp'
import { PROTOCOL_INFERENCE } from '../../protocol/ids.js'
import { encodeTensor, type WireDtype } from '../../protocol/tensor-codec.js'

/** A libp2p node with only tcp + noise + yamux, listening on 127.0.0.1. */
export async function bareNode (): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [wholeMessageNoise()],
    streamMuxers: [yamux()]
  })
}

/** A frame as a fake server reads it: the fields the tests look at. */
export interface FakeServerFrame { type: string, runId: number, start: number, end: number, hidden: { dims: number[] } }

/**
 * A bare node that serves inference streams by hand, for servers that misbehave on purpose:
 * `accept` is called once per stream with its FramedStream (to answer on) and the raw stream,
 * and returns what handles each frame of it (state it keeps is that stream's).
 */
export async function fakeInferenceServer (accept: (framed: FramedStream, stream: Stream) => (frame: FakeServerFrame) => void): Promise<Libp2p> {
  const node = await bareNode()
  await node.handle(PROTOCOL_INFERENCE, (stream) => {
    let onFrame: (frame: FakeServerFrame) => void = () => {}
    const framed = new FramedStream(stream, { onFrame: (frame) => { onFrame(frame as FakeServerFrame) } })
    onFrame = accept(framed, stream)
  })
  return node
}

/** Opens an inference stream to the server at `address` (multiaddr with /p2p/). */
export async function inferenceStream (node: Libp2p, address: string): Promise<FramedStream> {
  return new FramedStream(await node.dialProtocol(multiaddr(address), PROTOCOL_INFERENCE))
}

/** The next frame, as a plain object; fails after `timeoutMs` or when the stream ends. */
export async function next (framed: FramedStream, timeoutMs = 5000): Promise<Record<string, any>> {
  const r = await framed.read({ signal: AbortSignal.timeout(timeoutMs) })
  if (r.done === true) throw new Error('stream ended')
  return r.value as Record<string, any>
}

/** Opens a session and returns its id; throws with the error frame when refused. */
export async function openSession (framed: FramedStream, modelId: string, start: number, end: number, maxTokens = 64): Promise<string> {
  await framed.write({ type: 'open', modelId, start, end, maxTokens })
  const reply = await next(framed)
  if (reply['type'] !== 'opened') throw new Error(`open refused: ${JSON.stringify(reply)}`)
  return reply['sessionId'] as string
}

/** A run frame for hidden (1, T, C). */
export function runFrame (runId: number, start: number, hidden: Float32Array, C: number, dtype: WireDtype = 'float32', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'run', runId, start, hidden: encodeTensor(hidden, [1, hidden.length / C, C], dtype), ...extra }
}

/** Deterministic activations in [-2, 2): (1, T, C) flattened. */
export function randomHidden (T: number, C: number, seed = 1): Float32Array {
  const out = new Float32Array(T * C)
  let s = seed >>> 0
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = (s / 2 ** 32) * 4 - 2
  }
  return out
}
