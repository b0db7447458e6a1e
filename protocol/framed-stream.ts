/**
 * Frames over a js-libp2p v3 stream (an event target: 'message' events in,
 * send() out with 'drain' backpressure). Transport failures (reset, abort,
 * closed stream) surface as libp2p's own errors; protocol failures as
 * PetalErrors. Construct it synchronously in the stream handler so that no
 * data piles up in the stream before the 'message' listener exists.
 */
import { toErrorFrame, TooLargeError } from './errors.js'
import { encodeFrame, FrameDecoder, type Chunk } from './frames.js'
import { resolveLimits, type Limits } from './limits.js'

/** Options with an optional abort signal. */
export interface AbortOptions {
  signal?: AbortSignal
}

/** What FramedStream needs of a stream; a libp2p v3 Stream has all of it. */
export interface ByteStream {
  readonly writableNeedsDrain: boolean
  readonly writeStatus: string
  send: (data: Uint8Array) => boolean
  onDrain: (options?: AbortOptions) => Promise<void>
  close: (options?: AbortOptions) => Promise<void>
  abort: (err: Error) => void
  addEventListener(type: 'message', listener: (evt: { data: Chunk }) => void): void
  addEventListener(type: 'close', listener: (evt: { error?: Error }) => void): void
  addEventListener(type: 'remoteCloseWrite', listener: () => void): void
}

/** Options of a FramedStream. */
export interface FramedStreamInit {
  /** maxFrameBytes bounds frames both ways (default 64 MiB). */
  limits?: Partial<Limits>
  /**
   * Callback mode: called synchronously with every frame as it arrives (no
   * queue, read() unavailable). A throw fails the stream like a protocol error.
   */
  onFrame?: (frame: unknown) => void
  /** Called once when reading ends: undefined on a clean end, else the error. */
  onEnd?: (err?: Error) => void
  /** Iterator mode: unread frames allowed before the stream fails with TOO_LARGE (default 1024). */
  maxQueuedFrames?: number
  /** After a protocol error: ms to wait for the remote to close before aborting (default 5000). */
  closeGraceMs?: number
}

interface Waiter {
  resolve: (result: IteratorResult<unknown, undefined>) => void
  reject: (err: unknown) => void
}

/** A stream of decoded frames (messages are still unvalidated: parse them). */
export class FramedStream implements AsyncIterable<unknown> {
  /** The wrapped stream. */
  readonly stream: ByteStream
  readonly #limits: Limits
  readonly #decoder: FrameDecoder
  readonly #init: FramedStreamInit
  readonly #queue: unknown[] = []
  readonly #waiters = new Set<Waiter>()
  #ended = false
  #error: Error | undefined
  #graceTimer: ReturnType<typeof setTimeout> | undefined
  readonly #closed: Promise<Error | undefined>

  constructor (stream: ByteStream, init: FramedStreamInit = {}) {
    this.stream = stream
    this.#init = init
    this.#limits = resolveLimits(init.limits)
    this.#decoder = new FrameDecoder(this.#limits)
    stream.addEventListener('message', (evt) => { this.#onMessage(evt.data) })
    // a muxer may flag the end on the frame that carries the last data and deliver that data
    // right after the event: look at the end once the current delivery is done
    stream.addEventListener('remoteCloseWrite', () => { queueMicrotask(() => { this.#onRemoteEnd() }) })
    this.#closed = new Promise((resolve) => {
      stream.addEventListener('close', (evt) => {
        const error = evt.error
        clearTimeout(this.#graceTimer)
        if (error !== undefined) this.#finish(error)
        else this.#onRemoteEnd()
        resolve(error)
      })
    })
  }

  /** Resolves when the stream has closed: with the error if it was reset or aborted. */
  get closed (): Promise<Error | undefined> {
    return this.#closed
  }

  /**
   * Encodes and sends one message. Waits for 'drain' before sending when the
   * stream is backed up, and after sending until the frame is handed to the
   * transport. Throws TooLargeError (nothing sent) over maxFrameBytes, and
   * libp2p's error when the stream cannot be written.
   */
  async write (message: unknown, options: AbortOptions = {}): Promise<void> {
    options.signal?.throwIfAborted()
    const frame = encodeFrame(message, this.#limits)
    if (this.stream.writableNeedsDrain) await this.stream.onDrain(options)
    if (!this.stream.send(frame)) await this.stream.onDrain(options)
  }

  /**
   * Next frame, or done when the remote closed its side. Rejects with the
   * error that ended the stream (sticky), or with signal.reason when aborted.
   */
  async read (options: AbortOptions = {}): Promise<IteratorResult<unknown, undefined>> {
    if (this.#init.onFrame !== undefined) throw new Error('Cannot read(): this FramedStream delivers frames to onFrame')
    const signal = options.signal
    signal?.throwIfAborted()
    if (this.#queue.length > 0) return { done: false, value: this.#queue.shift() }
    if (this.#ended) {
      if (this.#error !== undefined) throw this.#error
      return { done: true, value: undefined }
    }
    return await new Promise((resolve, reject) => {
      const onAbort = (): void => { this.#waiters.delete(waiter); reject(signal?.reason) }
      const waiter: Waiter = {
        resolve: (r) => { signal?.removeEventListener('abort', onAbort); resolve(r) },
        reject: (e) => { signal?.removeEventListener('abort', onAbort); reject(e) }
      }
      this.#waiters.add(waiter)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Iterates frames until the remote ends; throws the error that ended the stream. */
  async * [Symbol.asyncIterator] (): AsyncGenerator<unknown, void, undefined> {
    for (;;) {
      const next = await this.read()
      if (next.done === true) return
      yield next.value
    }
  }

  /** Closes the writable side once queued data is sent; reading goes on until the remote closes. */
  async close (options?: AbortOptions): Promise<void> {
    await this.stream.close(options)
  }

  /** Resets the stream at once, discarding unsent data. */
  abort (err: Error): void {
    this.stream.abort(err)
  }

  #onMessage (data: Chunk): void {
    if (this.#ended) return // after a failure, input is ignored until the stream closes
    let frames: unknown[]
    try {
      frames = this.#decoder.push(data)
    } catch (err) {
      this.#protocolError(err as Error)
      return
    }
    for (const frame of frames) {
      if (this.#ended) return
      this.#deliver(frame)
    }
  }

  #deliver (frame: unknown): void {
    const onFrame = this.#init.onFrame
    if (onFrame !== undefined) {
      try {
        onFrame(frame)
      } catch (err) {
        this.#protocolError(err as Error)
      }
      return
    }
    const [waiter] = this.#waiters
    if (waiter !== undefined) {
      this.#waiters.delete(waiter)
      waiter.resolve({ done: false, value: frame })
      return
    }
    const max = this.#init.maxQueuedFrames ?? 1024
    if (this.#queue.length >= max) {
      this.#protocolError(new TooLargeError(`Cannot queue more than ${max} unread frames`))
      return
    }
    this.#queue.push(frame)
  }

  #onRemoteEnd (): void {
    if (this.#ended) return
    try {
      this.#decoder.end()
      this.#finish(undefined)
    } catch (err) {
      this.#protocolError(err as Error)
    }
  }

  /** The remote broke the protocol: tell it with an error frame, close, abort after a grace period. */
  #protocolError (err: Error): void {
    this.#finish(err)
    if (this.stream.writeStatus !== 'writable') return
    try {
      this.stream.send(encodeFrame(toErrorFrame(err), this.#limits))
    } catch {
      // the stream died meanwhile: 'close' will follow
    }
    this.stream.close().catch(() => {})
    this.#graceTimer = setTimeout(() => { this.stream.abort(err) }, this.#init.closeGraceMs ?? 5000)
    this.#graceTimer.unref?.()
  }

  /** Ends reading once: waiters get done (or the error); onEnd is told. */
  #finish (err: Error | undefined): void {
    if (this.#ended) return
    this.#ended = true
    this.#error = err
    for (const waiter of this.#waiters) {
      if (err !== undefined) waiter.reject(err)
      else waiter.resolve({ done: true, value: undefined })
    }
    this.#waiters.clear()
    try {
      this.#init.onEnd?.(err)
    } catch {
      // a throwing onEnd must not escape an event handler
    }
  }
}
