import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** Runs a benchmark's tiny smoke configuration and parses its JSON lines. */
async function bench (script: string): Promise<Array<Record<string, any>>> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', `scripts/${script}`, '--quick'], { cwd: ROOT, maxBuffer: 16 * 2 ** 20 })
  return stdout.trim().split('\n').map(l => JSON.parse(l))
}

describe('benchmarks do not rot', () => {
  it('bench-local --quick prints every engine figure', async () => {
    const lines = await bench('bench-local.ts')
    const metrics = lines.map(l => l.metric)
    for (const m of ['copy_bandwidth', 'prefill_tokens_per_second', 'decode_ms_per_token_ctx16', 'decode_ms_per_token_ctx256', 'peak_rss_mb', 'bandwidth_floor_ms_per_token', 'decode_ctx16_vs_floor']) {
      expect(metrics).toContain(m)
    }
    for (const l of lines) {
      expect(Number.isFinite(l.value) && l.value > 0, `${l.metric}`).toBe(true)
      expect(typeof l.unit).toBe('string')
    }
  }, 120_000)

  it('bench-swarm --quick compares local and a 3-server swarm', async () => {
    const lines = await bench('bench-swarm.ts')
    const byMetric = Object.fromEntries(lines.map(l => [l.metric, l.value]))
    expect(byMetric.local_tokens_per_second).toBeGreaterThan(0)
    expect(byMetric['swarm_tokens_per_second_client-mediated']).toBeGreaterThan(0)
    expect(byMetric.swarm_tokens_per_second_push).toBeGreaterThan(0)
    expect(byMetric['swarm_tokens_per_second_push-carried']).toBeGreaterThan(0)
    expect(Number.isFinite(byMetric['overhead_per_hop_ms_client-mediated'])).toBe(true)
    expect(byMetric.pipeline_client_head_ms).toBeGreaterThan(0)
    expect(byMetric.client_head_back_to_back_ms).toBeGreaterThan(0)
    // CPU per token: the swarm's processes together use more than the local model alone
    expect(byMetric['swarm_cpu_ms_per_token_client-mediated']).toBeGreaterThan(byMetric.local_cpu_ms_per_token)
  }, 120_000)

  it('bench-api --quick: a pooled session sends each later turn less than the whole conversation', async () => {
    const lines = await bench('bench-api.ts')
    const byMetric = Object.fromEntries(lines.map(l => [l.metric, l]))
    for (const mode of ['pooled', 'no-reuse']) {
      expect(byMetric[`api_ttft_ms_${mode}`].value).toBeGreaterThan(0)
      expect(byMetric[`api_turn_ms_${mode}`].value).toBeGreaterThan(0)
    }
    const whole = byMetric['api_prompt_tokens_sent_per_turn_no-reuse']
    expect(whole.value).toBe(whole.config.promptTokensPerTurn)
    expect(byMetric.api_prompt_tokens_sent_per_turn_pooled.value).toBeLessThan(whole.value / 2)
    for (const way of ['shared', 'unshared']) {
      expect(byMetric[`api_choices_long_prompt_ttft_ms_${way}`].value).toBeGreaterThan(0)
      expect(byMetric[`api_choices_long_prompt_ms_${way}`].value).toBeGreaterThanOrEqual(byMetric[`api_choices_long_prompt_ttft_ms_${way}`].value)
    }
    // the second conversation's session copied the system prompt, or (unshared) computed it
    const system = byMetric.api_system_prompt_second_conversation_ttft_ms_shared
    expect(system.config.cachedTokens).toBe(system.config.promptTokens)
    expect(byMetric.api_system_prompt_second_conversation_ttft_ms_unshared.config.cachedTokens).toBe(0)
  }, 120_000)

  it('bench-prefill --quick: both ways give a first token', async () => {
    const lines = await bench('bench-prefill.ts')
    const byMetric = Object.fromEntries(lines.map(l => [l.metric, l.value]))
    expect(byMetric.prefill_ttft_ms_pipelined).toBeGreaterThan(0)
    expect(byMetric.prefill_ttft_ms_whole).toBeGreaterThan(0)
    expect(Number.isFinite(byMetric.prefill_ttft_whole_over_pipelined)).toBe(true)
  }, 120_000)

  it('bench-long-runs --quick: in pieces, a 1 s prompt holds another session\'s step and a ping for a piece, not for the prompt', async () => {
    const lines = await bench('bench-long-runs.ts')
    const byMetric = Object.fromEntries(lines.map(l => [l.metric, l.value]))
    for (const mode of ['pieces', 'whole']) expect(byMetric[`long_run_prefill_ms_${mode}`]).toBeGreaterThan(1000) // 200 rows busy 5 ms each
    expect(byMetric.long_run_other_session_longest_step_ms_whole).toBeGreaterThan(1000)
    expect(byMetric.long_run_other_session_longest_step_ms_pieces).toBeLessThan(0.6 * byMetric.long_run_other_session_longest_step_ms_whole)
    expect(byMetric.long_run_longest_ping_ms_pieces).toBeLessThan(0.6 * byMetric.long_run_longest_ping_ms_whole)
    expect(byMetric.long_run_other_session_steps_during_pieces).toBeGreaterThan(byMetric.long_run_other_session_steps_during_whole)
  }, 120_000)

  it('bench-batching --quick: both settings decode; with --max-batch 1 nothing is batched', async () => {
    const lines = await bench('bench-batching.ts')
    const byMetric = Object.fromEntries(lines.map(l => [l.metric, l.value]))
    for (const n of [1, 4]) {
      for (const b of [1, 8]) expect(byMetric[`decode_runs_per_second_sessions${n}_max_batch${b}`]).toBeGreaterThan(0)
      expect(byMetric[`batched_gain_sessions${n}`]).toBeGreaterThan(0)
    }
    expect(byMetric.runs_batched_max_batch1).toBe(0)
  }, 120_000)

  it('bench-tree-shapes --quick: every shape decides at least what its trunk alone would', async () => {
    const lines = await bench('bench-tree-shapes.ts')
    const perRoot = lines.filter(l => l.metric === 'decided_per_root')
    expect(perRoot.length).toBeGreaterThanOrEqual(5)
    expect(lines.filter(l => l.metric === 'tokens_per_round')).toHaveLength(perRoot.length)
    for (const l of lines) expect(l.value, `${l.metric} ${JSON.stringify(l.config)}`).toBeGreaterThanOrEqual(1)
    // every tree's trunk is the same greedy chain of 16 or more drafts, so over the same roots it cannot decide less
    const chain16 = perRoot.find(l => l.config.kind === 'chain' && l.config.k === 16)?.value as number
    for (const l of perRoot.filter(l => l.config.k * l.config.runs >= 16)) expect(l.value).toBeGreaterThanOrEqual(chain16)
    expect(perRoot.some(l => l.config.kind !== 'chain' && l.value > chain16)).toBe(true)
  }, 120_000)

  it('bench-heal --quick: a --num-blocks server fills the gap a killed server left, and the generation caught in it keeps its tokens', async () => {
    const lines = await bench('bench-heal.ts')
    expect(lines.map(l => l.metric)).toEqual(['heal_ms', 'generation_stall_ms'])
    for (const l of lines) expect(Number.isFinite(l.value) && l.value > 0, l.metric).toBe(true)
    expect(lines[1]?.tokensMatchLocal).toBe(true)
  }, 120_000)

  it('bench-rtt --quick measures RTT with the probe and with libp2p ping()', async () => {
    const lines = await bench('bench-rtt.ts')
    expect(lines.map(l => [l.metric, l.method])).toEqual([['rtt_ms', 'probe'], ['rtt_ms', 'ping-new-stream']])
    for (const l of lines) expect(Number.isFinite(l.value) && l.value > 0, l.method).toBe(true)
  }, 60_000)

  it('bench-wakeup --quick: echo round trips and CPU per echo, raw TCP and Petal frames, back to back and after idling', async () => {
    const lines = await bench('bench-wakeup.ts')
    const rows = ['rtt_ms', 'cpu_ms_sender', 'cpu_ms_echoer'].flatMap(m => [`echo_${m}_back_to_back`, `echo_${m}_after_idle`])
    for (const transport of ['tcp', 'libp2p']) {
      const mine = lines.filter(l => l.transport === transport)
      expect(mine.map(l => l.metric).sort()).toEqual([...rows].sort())
      for (const l of mine) expect(Number.isFinite(l.value) && l.value > 0, `${transport} ${l.metric}`).toBe(true)
    }
  }, 60_000)

  it('bench-fairness --quick: the flood past the per-session limit is refused, and the honest client is served', async () => {
    const lines = await bench('bench-fairness.ts')
    const value = (metric: string): number => lines.find(l => l.metric === metric)?.value as number
    // heap growth may come out negative (without --expose-gc a collection can fall inside the window)
    for (const l of lines) expect(Number.isFinite(l.value) && (l.value >= 0 || l.metric === 'deaf_client_heap_growth_mib'), l.metric).toBe(true)
    expect(value('flood_runs_computed') + value('flood_runs_refused')).toBe(300)
    expect(value('flood_runs_refused')).toBeGreaterThan(200)
    expect(value('honest_median_run_ms_under_flood')).toBeGreaterThan(0)
    // the deaf client lost its stream before it got all its frames out
    expect(value('deaf_client_frames_before_reset')).toBeLessThan(50_000)
    expect(lines.find(l => l.metric === 'deaf_client_frames_before_reset')?.config.reset).toBe(true)
  }, 60_000)

  it('soak --quick: servers killed and restarted under mixed load; every generation keeps the reference tokens, nothing is left open', async () => {
    // a failed check exits 1: its lines still say which
    const { stdout } = await run(process.execPath, ['--expose-gc', '--import', 'tsx', 'scripts/soak.ts', '--quick'], { cwd: ROOT, maxBuffer: 16 * 2 ** 20 })
      .catch((err: { stdout?: string, stderr?: string }) => ({ stdout: `${err.stdout ?? ''}`, stderr: err.stderr }))
    const lines = stdout.trim().split('\n').map(l => JSON.parse(l))
    const byMetric = Object.fromEntries(lines.map(l => [l.metric, l]))
    expect(byMetric.soak_servers_taken_down?.value).toBeGreaterThanOrEqual(2)
    for (const op of ['generate', 'sampled', 'chat', 'abort', 'choices', 'api', 'rogue']) expect(byMetric[`soak_ops_${op}`]?.value, op).toBeGreaterThan(0)
    expect(byMetric.soak_wrong_tokens?.examples).toEqual([])
    expect(byMetric.soak_unexpected_errors?.messages).toEqual({})
    expect(byMetric.soak_servers_died_unasked?.which).toEqual([])
    expect(byMetric.soak_sessions_left_open?.value).toBe(0)
    expect(byMetric.soak_ok?.value).toBe(1)
  }, 180_000)
})
