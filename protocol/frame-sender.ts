/**
 * Ordered frame output of one stream, with an optional simulated one-way link
 * latency (benchmarks and tests of latency hiding on one machine).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { FramedStream } from './framed-stream.js'

/**
 * Sends messages on one FramedStream in the order given. With `delayMs` > 0 each
 * message leaves `delayMs` after send() was called, as if it crossed a slow link:
 * frames still overlap in flight (frame 2 does not wait for frame 1's delay on top of
 * its own), the event loop never blocks, and the order is kept.
 */
export class FrameSender {
  readonly #framed: FramedStream
  readonly #delayMs: number
  #tail: Promise<void> = Promise.resolve()
  #pendingFrames = 0
  #pendingBytes = 0

  constructor (framed: FramedStream, delayMs = 0) {
    this.#framed = framed
    this.#delayMs = delayMs
  }

  /** The stream written to. */
  get framed (): FramedStream { return this.#framed }

  /** Messages queued and not yet handed to the transport (a peer that does not read lets them pile up). */
  get pendingFrames (): number { return this.#pendingFrames }

  /** The `bytes` given with those messages, added up. */
  get pendingBytes (): number { return this.#pendingBytes }

  /**
   * Queues a message; resolves once it is handed to the transport, rejects when it
   * cannot be sent (stream closed or reset, frame too large). Later messages are sent
   * even if this one fails. `bytes`: its size as the caller reckons it, for pendingBytes.
   */
  async send (message: unknown, bytes = 0): Promise<void> {
    const due = performance.now() + this.#delayMs
    this.#pendingFrames++
    this.#pendingBytes += bytes
    const sent = this.#tail.then(async () => {
      const wait = due - performance.now()
      if (wait >= 1) await sleep(wait)
      await this.#framed.write(message)
    }).finally(() => {
      this.#pendingFrames--
      this.#pendingBytes -= bytes
    })
    this.#tail = sent.catch(() => {})
    await sent
  }

  /** Resolves once every message queued so far has been sent or has failed. */
  async flushed (): Promise<void> {
    await this.#tail
  }
}
