import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const ROOT = join(import.meta.dirname, '..', '..')

/** The CI smoke run of the speculation benchmark: a real 3-server swarm, a few tokens. */
describe('bench-speculation --quick', () => {
  it('prints one JSON line per mode with finite figures and plain greedy tokens', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'bench-speculation.ts'), '--quick'],
      { cwd: ROOT, timeout: 60_000, maxBuffer: 1 << 20 })
    const all = stdout.trim().split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
    const lines = all.filter(l => l.metric === 'speculation_tokens_per_second')
    expect(lines.map(l => l.mode)).toEqual(['plain-client', 'pipelined'])
    for (const line of lines) {
      expect(line).toMatchObject({ metric: 'speculation_tokens_per_second', unit: 'tokens/s', latencyMs: 5, delay: 'in-process', sweep: false, tokensMatchPlain: true, tokensMatchReference: true })
      for (const key of ['value', 'tokensPerSecond', 'ttftMs', 'itlP50Ms', 'itlP95Ms', 'acceptance', 'cancelledRuns', 'runsSubmitted', 'k', 'depth', 'serverRunsComputed']) {
        expect(Number.isFinite(line[key]), `${String(line.mode)}.${key} = ${String(line[key])}`).toBe(true)
      }
      expect(line.tokensPerSecond).toBeGreaterThan(0)
      expect(line.serverRunsComputed).toBeGreaterThan(0)
      expect(typeof line.commit).toBe('string')
      expect(line.config).toMatchObject({ tokens: 8, prompts: 1 })
    }
    expect(lines[1]).toMatchObject({ k: 4, depth: 4, push: true })
    // the goal line: ratios of the lines above (no sync measured, so no ratio over sync)
    const goals = all.filter(l => l.metric === 'speculation_goal_ratios')
    expect(goals).toHaveLength(1)
    const rate = (mode: string): number => lines.find(l => l.mode === mode)?.tokensPerSecond as number
    expect(goals[0]?.bestPipelinedOverPlainClient).toBeCloseTo(rate('pipelined') / rate('plain-client'), 2)
    expect(goals[0]?.bestPipelinedOverBestOther).toBeCloseTo(rate('pipelined') / rate('plain-client'), 2)
    expect(goals[0]?.bestPipelinedOverSync).toBeUndefined()
  }, 90_000)

  it('--rounds and --temperature: each line is its median round; sampled lines decode the seed\'s chain text', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'bench-speculation.ts'), '--quick', '--rounds', '3', '--modes', 'plain-client,sync,pipelined', '--temperature', '0.8'],
      { cwd: ROOT, timeout: 60_000, maxBuffer: 1 << 20 })
    const all = stdout.trim().split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
    const lines = all.filter(l => l.metric === 'speculation_tokens_per_second')
    expect(lines.map(l => l.mode)).toEqual(['plain-client', 'sync', 'pipelined'])
    for (const line of lines.slice(1)) {
      const rounds = line.rounds as number[]
      expect(rounds).toHaveLength(3)
      expect(line.tokensPerSecond).toBe([...rounds].sort((a, b) => a - b)[1])
      expect(line).toMatchObject({ tokensMatchSampledChain: true, config: { sampling: { temperature: 0.8, seed: 1 } } })
    }
    const [goal] = all.filter(l => l.metric === 'speculation_goal_ratios')
    const byRound = goal?.bestPipelinedOverSyncByRound as number[]
    expect(byRound).toHaveLength(3)
    expect(goal?.bestPipelinedOverSync).toBe([...byRound].sort((a, b) => a - b)[1])
  }, 90_000)

  it('--device names what the servers compute on: an unknown one is refused before any server starts', async () => {
    const failed = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'bench-speculation.ts'), '--quick', '--device', 'tpu'], { cwd: ROOT, timeout: 30_000 })
      .then(() => undefined, (err: { code?: number, stderr?: string }) => err)
    expect(failed?.code).toBe(1)
    expect(failed?.stderr).toContain('Cannot serve on --device tpu: it must be cpu, webgpu or cuda')
  }, 40_000)
})
