import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { processTreeCpuMs } from '../../scripts/lib/process-cpu.js'

describe('processTreeCpuMs', () => {
  it('counts the CPU a child process spends in its parent\'s tree, and is NaN for a process that is gone', async () => {
    const before = processTreeCpuMs(process.pid)
    // a child that spins for 400 ms, then waits to be killed (so that it is still in the tree)
    const child = spawn(process.execPath, ['-e', 'const t = Date.now(); while (Date.now() - t < 400); setInterval(() => {}, 1000)'], { stdio: 'ignore' })
    try {
      await expect.poll(() => processTreeCpuMs(child.pid as number), { timeout: 10_000 }).toBeGreaterThanOrEqual(300)
      expect(processTreeCpuMs(process.pid) - before).toBeGreaterThanOrEqual(300)
    } finally {
      child.kill('SIGKILL')
    }
    await new Promise(resolve => child.once('exit', resolve))
    expect(processTreeCpuMs(child.pid as number)).toBeNaN()
  })
})
