import { Worker } from 'node:worker_threads'

/**
 * Memory copy bandwidth in bytes/s, counting bytes read plus bytes written (as STREAM's
 * Copy does), with `threads` workers each copying its own slice of a buffer much larger
 * than the caches. The best of `repeats` passes.
 */
export async function measureCopyBandwidth (threads: number, bytesPerThread = 256 * 2 ** 20, repeats = 5): Promise<number> {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const n = workerData.bytes / 4
    const src = new Float32Array(n).fill(1), dst = new Float32Array(n)
    dst.set(src) // fault the pages in
    parentPort.on('message', () => { const t = performance.now(); dst.set(src); parentPort.postMessage(performance.now() - t) })
    parentPort.postMessage('ready')`
  const workers = Array.from({ length: threads }, () => new Worker(code, { eval: true, workerData: { bytes: bytesPerThread } }))
  const next = (w: Worker): Promise<unknown> => new Promise(resolve => w.once('message', resolve))
  await Promise.all(workers.map(next))
  let best = 0
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now()
    await Promise.all(workers.map(w => { const p = next(w); w.postMessage('go'); return p }))
    const seconds = (performance.now() - t0) / 1000
    best = Math.max(best, (2 * bytesPerThread * threads) / seconds)
  }
  await Promise.all(workers.map(async w => await w.terminate()))
  return best
}
