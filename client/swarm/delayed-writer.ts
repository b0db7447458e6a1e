/**
 * Sends messages after a fixed one-way delay without reordering them: the in-process
 * stand-in for a WAN link, used to measure latency hiding. With no delay it sends at once.
 */
export class DelayedWriter<M> {
  readonly #delayMs: number
  readonly #send: (msg: M) => Promise<void>
  #tail: Promise<void> = Promise.resolve()

  constructor (delayMs: number, send: (msg: M) => Promise<void>) {
    this.#delayMs = delayMs
    this.#send = send
  }

  /** Resolves once the message has been handed to the transport. */
  async write (msg: M): Promise<void> {
    if (this.#delayMs <= 0) {
      await this.#send(msg)
      return
    }
    const due = performance.now() + this.#delayMs
    const done = this.#tail.then(async () => {
      const wait = due - performance.now()
      if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
      await this.#send(msg)
    })
    this.#tail = done.catch(() => {})
    await done
  }
}
