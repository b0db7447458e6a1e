/** The server's one compute queue: sessions take turns, each session's runs keep their order. */
import { describe, expect, it } from 'vitest'
import { ComputeQueue, type ComputeTask } from '../../node/compute-queue.js'

/** A queue whose tasks finish when the test says; `ran` lists "session:run" in start order. */
function harness (): { queue: ComputeQueue, ran: string[], add: (sessionId: string, runId: number) => void, finish: () => Promise<void> } {
  const queue = new ComputeQueue()
  const ran: string[] = []
  let release: (() => void) | undefined
  const add = (sessionId: string, runId: number): void => {
    const task: ComputeTask = {
      sessionId,
      runId,
      enqueuedAt: 0,
      run: async () => {
        ran.push(`${sessionId}:${runId}`)
        await new Promise<void>(resolve => { release = resolve })
      }
    }
    queue.push(task)
  }
  // lets the running task end, then waits for the queue to start the next
  const finish = async (): Promise<void> => {
    release?.()
    await new Promise(resolve => setImmediate(resolve))
  }
  return { queue, ran, add, finish }
}

describe('ComputeQueue', () => {
  it('a session that queued many runs delays one that comes later by one run, not by all of them', async () => {
    const { queue, ran, add, finish } = harness()
    for (let i = 0; i < 5; i++) add('flood', i)
    add('honest', 0)
    expect(queue.queuedFor('flood')).toBe(4) // flood:0 runs
    expect(queue.length).toBe(5)
    for (let i = 0; i < 6; i++) await finish()
    expect(ran).toEqual(['flood:0', 'honest:0', 'flood:1', 'flood:2', 'flood:3', 'flood:4'])
    expect(queue.busy).toBe(false)
  })

  it('numbers each batch it runs, for the stuck-compute watch', async () => {
    const { queue, add, finish } = harness()
    expect(queue.runningBatch).toBeUndefined()
    add('a', 0)
    add('a', 1)
    const first = queue.runningBatch
    expect(first).toBeDefined()
    await finish()
    expect(queue.runningBatch).toBe((first as number) + 1)
    await finish()
    expect(queue.runningBatch).toBeUndefined()
  })

  it('the rest of a run that gave up its turn goes after the sessions waiting, before its own later runs', async () => {
    const queue = new ComputeQueue()
    const ran: string[] = []
    const task = (sessionId: string, runId: number, run: () => Promise<void> = async () => {}): ComputeTask => ({ sessionId, runId, enqueuedAt: 0, run: async () => { ran.push(`${sessionId}:${runId}`); await run() } })
    let pieces = 0
    // a long run of a, in three pieces: each piece queues the rest at the head of a's lane
    const piece = (): ComputeTask => task('a', 0, async () => { if (++pieces < 3) queue.pushFront(piece()) })
    queue.push(piece())
    queue.push(task('a', 1)); queue.push(task('b', 0)); queue.push(task('b', 1)); queue.push(task('c', 0))
    expect(queue.length).toBe(5) // a's first piece ran and queued its rest
    await queue.whenIdle()
    expect(ran).toEqual(['a:0', 'b:0', 'c:0', 'a:0', 'b:1', 'a:0', 'a:1'])
    expect(queue.length).toBe(0)
  })

  it('three sessions take turns, the one whose last turn is oldest first, each in its own order', async () => {
    const { queue, ran, add, finish } = harness()
    add('a', 0) // runs at once
    add('a', 1); add('a', 2); add('b', 0); add('b', 1); add('c', 0)
    for (let i = 0; i < 6; i++) await finish()
    expect(ran).toEqual(['a:0', 'b:0', 'c:0', 'a:1', 'b:1', 'a:2'])
    queue.forget('a') // a closed session leaves no trace
    expect(queue.queuedFor('a')).toBe(0)
    expect(queue.length).toBe(0)
  })

  it('cancel drops matching queued runs, keeps the others\' turns, and counts what it dropped', async () => {
    const { queue, ran, add, finish } = harness()
    add('a', 0); add('a', 1); add('b', 0); add('a', 2); add('b', 1)
    expect(queue.cancel(t => t.sessionId === 'a' && t.runId >= 1)).toMatchObject({ dropped: 2, abortedRunning: false })
    expect(queue.length).toBe(2)
    expect(queue.queuedFor('a')).toBe(0)
    for (let i = 0; i < 3; i++) await finish()
    expect(ran).toEqual(['a:0', 'b:0', 'b:1'])
  })
})

describe('ComputeQueue batches', () => {
  /** A batching queue; `batches` lists each start as "session:run+session:run", alone or batched. */
  function batching (opts: { maxBatch: number, canJoin?: (batch: readonly ComputeTask[], task: ComputeTask) => boolean }): { queue: ComputeQueue, batches: string[], signals: AbortSignal[][], add: (sessionId: string, runId: number, key?: string) => void, finish: () => Promise<void> } {
    const batches: string[] = []
    const signals: AbortSignal[][] = []
    let release: (() => void) | undefined
    const hold = async (): Promise<void> => { await new Promise<void>(resolve => { release = resolve }) }
    const name = (t: ComputeTask): string => `${t.sessionId}:${t.runId}`
    const queue = new ComputeQueue({
      maxBatch: opts.maxBatch,
      ...(opts.canJoin !== undefined ? { canJoin: opts.canJoin } : {}),
      runBatch: async (tasks, s) => { batches.push(tasks.map(name).join('+')); signals.push(s); await hold() }
    })
    const add = (sessionId: string, runId: number, key?: string): void => {
      const task: ComputeTask = { sessionId, runId, enqueuedAt: 0, run: async (signal) => { batches.push(name(task)); signals.push([signal]); await hold() }, ...(key !== undefined ? { batchKey: key } : {}) }
      queue.push(task)
    }
    // lets the running batch end, then waits out a hold for sessions that may send more (at most 2 ms)
    const finish = async (): Promise<void> => {
      release?.()
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    return { queue, batches, signals, add, finish }
  }

  it('runs the heads of sessions waiting with the same key together, one run per session, oldest turn first', async () => {
    const { batches, add, finish } = batching({ maxBatch: 8 })
    add('a', 0, 'k') // starts alone: nothing else waits yet
    add('a', 1, 'k')
    add('b', 0, 'k')
    add('c', 0, 'other')
    add('d', 0, 'k')
    add('b', 1, 'k')
    for (let i = 0; i < 4; i++) await finish()
    // b and d have never had a turn, so they go first, then a; c's key differs; b's next run waits for its first
    expect(batches).toEqual(['a:0', 'b:0+d:0+a:1', 'c:0', 'b:1'])
  })

  it('keeps to maxBatch and canJoin, and runs keyless tasks alone', async () => {
    const { batches, add, finish } = batching({ maxBatch: 2, canJoin: (_batch, task) => task.sessionId !== 'big' })
    add('x', 0) // running
    for (const s of ['a', 'big', 'b', 'c']) add(s, 0, 'k')
    add('e', 0)
    for (let i = 0; i < 4; i++) await finish()
    // canJoin judges the joiners: "big" may lead a batch that c joins, not join one
    expect(batches).toEqual(['x:0', 'a:0+b:0', 'big:0+c:0', 'e:0'])
  })

  it('cancelling one run of a running batch aborts its signal only', async () => {
    const { queue, signals, add, finish } = batching({ maxBatch: 4 })
    add('x', 0)
    add('a', 0, 'k')
    add('b', 0, 'k')
    await finish() // the batch a+b starts
    const result = queue.cancel(t => t.sessionId === 'b')
    expect(result).toMatchObject({ dropped: 0, droppedTasks: [], abortedRunning: true })
    expect(signals[1]?.map(s => s.aborted)).toEqual([false, true])
    await finish()
    expect(queue.busy).toBe(false)
  })
})

describe('ComputeQueue lockstep sessions', () => {
  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

  /**
   * Sessions on a queue whose runs take 8 ms, alone or batched: each sends `runs` runs one at a
   * time, waiting `awayMs` after each result, starting `offsetMs[i]` late. Returns each start
   * as its sessions ("a", "a+b").
   */
  async function decodeTogether (ids: readonly string[], offsetMs: readonly number[], runs: number, awayMs: number): Promise<string[]> {
    const starts: string[] = []
    const done = new Map<ComputeTask, () => void>()
    const queue = new ComputeQueue({
      maxBatch: 8,
      runBatch: async (tasks) => {
        starts.push(tasks.map(t => t.sessionId).sort().join('+'))
        await sleep(8)
        for (const t of tasks) done.get(t)?.()
      }
    })
    const session = async (id: string, offset: number): Promise<void> => {
      await sleep(offset)
      for (let i = 0; i < runs; i++) {
        await new Promise<void>(resolve => {
          const task: ComputeTask = { sessionId: id, runId: i, enqueuedAt: 0, batchKey: 'k', run: async () => { starts.push(id); await sleep(8); resolve() } }
          done.set(task, resolve)
          queue.push(task)
        })
        await sleep(awayMs)
      }
    }
    await Promise.all(ids.map(async (id, i) => { await session(id, offsetMs[i] ?? 0) }))
    return starts
  }

  it('two sessions that each send their next run as their last returns end up in one batch, not taking turns', async () => {
    // each session thinks for 0.3 ms between a result and its next run
    const starts = await decodeTogether(['a', 'b'], [0, 3], 8, 0.3)
    // without waiting for the other session they take turns alone to the end (a, b, a, b, ...)
    expect(starts.filter(s => s === 'a+b').length).toBeGreaterThanOrEqual(5)
  })

  it('sessions whose runs go elsewhere between two here, out of phase at first, come to run together', async () => {
    // 30 ms between a result and the next run: the other servers of the route, and the client
    // 20 runs each: on a loaded machine (CI) timer jitter kept one session out of phase for 9
    // of 12 runs once; they met after that, so the last runs still show whether they stay together
    const starts = await decodeTogether(['a', 'b', 'c', 'd'], [0, 3, 6, 9], 20, 30)
    // once they meet they stay together: most of the last runs go as one batch of four
    const lastRuns = starts.slice(-6)
    expect(lastRuns.filter(s => s === 'a+b+c+d').length, starts.join(' ')).toBeGreaterThanOrEqual(4)
  })
})
