/**
 * Outgoing side of /petal/1/push: one stream per next server, opened on first use
 * and reused for every later push to that peer.
 */
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { PushFailedError } from '../protocol/errors.js'
import { FramedStream } from '../protocol/framed-stream.js'
import { PROTOCOL_PUSH } from '../protocol/ids.js'
import type { Limits } from '../protocol/limits.js'
import type { PushMessage } from '../protocol/push-message.js'
import { FrameSender } from '../protocol/frame-sender.js'

/** Options of a PushForwarder. */
export interface PushForwarderInit {
  host: Pick<Libp2p, 'dialProtocol'>
  limits: Limits
  /** Simulated one-way latency added to every push, ms. */
  linkLatencyMs: number
  /** Give up opening a push stream after this long, ms. */
  dialTimeoutMs: number
  /** Idle time before libp2p may close a push stream, ms. */
  inactivityTimeoutMs: number
  log: Logger
}

/**
 * Forwards runs' outputs to the next server of their route. A dead stream is
 * replaced once per push; when that fails too, forward() rejects with a
 * PushFailedError naming the peer, so that the client can fail over.
 */
export class PushForwarder {
  readonly #init: PushForwarderInit
  /** peer id -> its push stream (a promise while dialing, so concurrent pushes share one dial) */
  readonly #streams = new Map<string, Entry>()
  #stopped = false

  constructor (init: PushForwarderInit) {
    this.#init = init
  }

  /** Sends `message` to `peerId` over the shared push stream; rejects with PushFailedError naming the peer. */
  async forward (peerId: string, message: PushMessage): Promise<void> {
    let lastError: unknown
    for (let attempt = 0; attempt < 2 && !this.#stopped; attempt++) {
      const entry = this.#entry(peerId)
      try {
        const sender = await entry.sender
        if (sender.framed.stream.writeStatus !== 'writable') throw new Error('push stream is closed')
        await sender.send(message)
        return
      } catch (err) {
        lastError = err
        this.#drop(peerId, entry)
      }
    }
    const reason = lastError instanceof Error ? lastError.message : 'this server is stopping'
    throw new PushFailedError(`Cannot push run ${message.runId} to the next server ${peerId}: it is unreachable (${reason})`, { cause: lastError })
  }

  /**
   * Closes every push stream once its queued pushes are sent, waiting at most a second for
   * each: a next server that reads nothing (frozen) would otherwise hold this one's exit.
   */
  async stop (): Promise<void> {
    this.#stopped = true
    const entries = [...this.#streams.values()]
    this.#streams.clear()
    await Promise.all(entries.map(async entry => {
      const sender = await entry.sender.catch(() => undefined)
      if (sender === undefined) return
      const signal = AbortSignal.timeout(1000)
      await Promise.race([sender.flushed(), new Promise(resolve => { signal.addEventListener('abort', resolve, { once: true }) })])
      await sender.framed.close({ signal }).catch(err => { sender.framed.abort(err as Error) })
    }))
  }

  #entry (peerId: string): Entry {
    let entry = this.#streams.get(peerId)
    if (entry === undefined) {
      const created: Entry = { sender: this.#open(peerId, () => { this.#drop(peerId, created) }) }
      created.sender.catch(() => { this.#drop(peerId, created) })
      this.#streams.set(peerId, created)
      entry = created
    }
    return entry
  }

  async #open (peerId: string, onEnd: () => void): Promise<FrameSender> {
    const { host, limits, linkLatencyMs, dialTimeoutMs, inactivityTimeoutMs, log } = this.#init
    const stream = await host.dialProtocol(peerIdFromString(peerId), PROTOCOL_PUSH, { signal: AbortSignal.timeout(dialTimeoutMs) })
    stream.inactivityTimeout = inactivityTimeoutMs
    const plog = log.child({ peer: peerId })
    const framed = new FramedStream(stream, {
      limits,
      // the next server only answers a push with an error frame when it could not parse it
      onFrame: (frame) => { plog.warn({ frame: summarize(frame) }, 'next server rejected a push') },
      onEnd: (err) => {
        plog.debug({ err }, 'push stream ended')
        onEnd()
      }
    })
    plog.debug('push stream opened')
    return new FrameSender(framed, linkLatencyMs)
  }

  /** Forgets the stream of `peerId` if it is still `entry`: the next push opens a new one. */
  #drop (peerId: string, entry: Entry): void {
    if (this.#streams.get(peerId) === entry) this.#streams.delete(peerId)
  }
}

/** A push stream, or the dial that opens it. */
interface Entry {
  sender: Promise<FrameSender>
}

function summarize (frame: unknown): unknown {
  if (typeof frame !== 'object' || frame === null) return frame
  const { type, code, message, runId } = frame as Record<string, unknown>
  return { type, code, message, runId }
}
