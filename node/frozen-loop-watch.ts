/**
 * Ends the process when its main thread has been held for too long: a device that hangs
 * inside a run (onnxruntime-node runs every provider's graph synchronously on the main thread),
 * or a loop that never ends. Such a server answers nothing, yet it stays in the swarm: its
 * connections stay open and its provider records live on, so every client that tries it waits
 * for its liveness probe first. A process that is gone is refused at once, and a supervisor
 * can start it again.
 *
 * The main thread stamps a shared clock every BEAT_MS; a worker thread, whose event loop the
 * main thread cannot hold, reads it. A process stopped whole (SIGSTOP, a laptop asleep) stops
 * the worker too: when the worker itself wakes up late, it counts from its own wake-up, so
 * being stopped is never taken for being frozen.
 */
import { Worker } from 'node:worker_threads'

/** How often the main thread stamps the clock, and the watcher looks, ms. */
const BEAT_MS = 250

/** The watcher (CommonJS, run by `new Worker(..., { eval: true })`). */
const WATCHER = `
const { workerData } = require('node:worker_threads')
const { writeSync } = require('node:fs')
const stamp = new BigInt64Array(workerData.buffer)
const { limitMs, periodMs } = workerData
let ownLast = Date.now()
let awakeSince = ownLast
setInterval(() => {
  const now = Date.now()
  // this thread was held as well: the whole process was stopped, so count from now
  if (now - ownLast > 4 * periodMs + 1000) awakeSince = now
  ownLast = now
  const last = Number(Atomics.load(stamp, 0))
  if (last < 0) return // paused by the main thread
  const held = now - Math.max(last, awakeSince)
  if (held < limitMs) return
  writeSync(2, JSON.stringify({ level: 60, time: now, pid: process.pid, component: 'frozen-loop-watch', heldMs: held, msg: 'the main thread has not run for ' + held + ' ms (a device hung inside a run?): exiting' }) + '\\n')
  process.kill(process.pid, 'SIGKILL')
}, periodMs)
`

/**
 * Starts watching this process's main thread: held for `limitMs` (> 0), the process is killed
 * (SIGKILL, after a log line on stderr). While `paused()` says so (loading weights, which may
 * hold the thread for minutes), the watcher waits. Returns what stops the watch.
 */
export function exitWhenFrozen (limitMs: number, paused: () => boolean = () => false): () => Promise<void> {
  if (!(limitMs > 0)) throw new RangeError(`Cannot exit when frozen for ${limitMs} ms: it must be > 0`)
  const buffer = new SharedArrayBuffer(8)
  const stamp = new BigInt64Array(buffer)
  const beat = (): void => { Atomics.store(stamp, 0, paused() ? -1n : BigInt(Date.now())) }
  beat()
  const timer = setInterval(beat, BEAT_MS)
  timer.unref()
  const worker = new Worker(WATCHER, { eval: true, workerData: { buffer, limitMs, periodMs: BEAT_MS } })
  worker.unref()
  return async () => {
    clearInterval(timer)
    await worker.terminate()
  }
}
