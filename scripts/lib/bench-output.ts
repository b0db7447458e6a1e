import { execSync } from 'node:child_process'

let commit: string | undefined

/** The short commit of the working tree, "unknown" outside git. */
export function currentCommit (): string {
  if (commit === undefined) {
    try {
      commit = execSync('git rev-parse --short HEAD', { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()
    } catch {
      commit = 'unknown'
    }
  }
  return commit
}

/** One benchmark result as one JSON line on stdout. */
export function emit (fields: { model?: string, metric: string, value: number, unit: string, [k: string]: unknown }): void {
  process.stdout.write(JSON.stringify({ ...fields, value: Number(fields.value.toPrecision(5)), commit: currentCommit() }) + '\n')
}

export function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

export function percentile (xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number
}

/** What decodeMsPerToken needs of a model: LanguageModel's generate(). */
interface Generator {
  generate: (prompt: number[], opts: { maxNewTokens: number, temperature: number, stopAtEos: boolean }) => AsyncGenerator<unknown, { tokens: number[], stats: { elapsedMs: number, ttftMs: number } }>
}

/** ms per generated token after the first (decode only) of greedy generation, median over the prompts. */
export async function decodeMsPerToken (model: Generator, prompts: number[][], tokens: number): Promise<number> {
  const times: number[] = []
  for (const prompt of prompts) {
    const gen = model.generate(prompt, { maxNewTokens: tokens, temperature: 0, stopAtEos: false })
    let step = await gen.next()
    while (step.done !== true) step = await gen.next()
    const s = step.value.stats
    times.push((s.elapsedMs - s.ttftMs) / Math.max(1, step.value.tokens.length - 1))
  }
  return median(times)
}
