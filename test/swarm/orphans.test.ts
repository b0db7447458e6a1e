/**
 * A server started by LocalSwarm (petal-node demo, benchmarks) must not outlive its parent:
 * when the parent is SIGKILLed, the server notices it was re-parented, drains and exits.
 */
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const PARENT = fileURLToPath(new URL('../helpers/orphaning-parent.ts', import.meta.url))

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('servers of a local swarm', () => {
  let serverPid: number | undefined
  afterAll(() => { if (serverPid !== undefined && alive(serverPid)) process.kill(serverPid, 'SIGKILL') })

  it('drain and exit when the process that started them is killed with SIGKILL', async () => {
    const parent = spawn(process.execPath, ['--import', 'tsx', PARENT], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    parent.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
    await expect.poll(() => /server (\d+)/.exec(out)?.[1], { timeout: 30_000, interval: 100 }).toBeDefined()
    serverPid = Number(/server (\d+)/.exec(out)?.[1])
    expect(alive(serverPid)).toBe(true)
    parent.kill('SIGKILL')
    const killedAt = performance.now()
    while (alive(serverPid) && performance.now() - killedAt < 10_000) await sleep(100)
    expect(alive(serverPid)).toBe(false) // gone, not left serving as an orphan
    expect(performance.now() - killedAt).toBeLessThan(5000) // noticed within the watch interval, then drained
  }, 45_000)
})
