import type { Command } from 'commander'
import { MAX_TOP_LOGPROBS, type TokenLogprob } from '../client/decoding/index.js'
import type { LanguageModel } from '../client/language-model.js'
import type { GenerateOptions, GenerationResult } from '../client/text-generation.js'
import { TokenPieces } from '../client/tokenizer/index.js'
import { addGenerationOptions, describeStats, withModel, type GenerationFlags } from './generation-flags.js'
import { parseNumber } from './options.js'

interface GenerateFlags extends GenerationFlags {
  prompt: string
  json?: boolean
  logprobs?: number
  samples?: number
}

/** `petal-node generate`: text from a prompt, locally or through a swarm, streamed to stdout. */
export function generateCommand (program: Command): void {
  const command = program.command('generate')
    .description('generate text: locally, or through a swarm with --bootstrap')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint folder (the client needs its tokenizer, embedding and head)')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--json', 'print one JSON object {text, tokens, promptTokens, stats} instead of streaming')
    .option('--samples <n>', 'generate n continuations at once (the prompt computed once; with --seed, sample i uses seed + i)', parseNumber('--samples', { integer: true, min: 1, max: 64 }))
    .option('--logprobs <n>', `each token's log-probability and its n likeliest alternatives (0..${MAX_TOP_LOGPROBS}): in --json, else a summary on stderr`, parseNumber('--logprobs', { integer: true, min: 0, max: MAX_TOP_LOGPROBS }))
  addGenerationOptions(command)
    .addHelpText('after', `
Examples:
  petal-node generate --model models/stories260k --prompt "Once upon a time" --max-new-tokens 60
  petal-node generate --model models/stories260k --prompt "Lily" --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo... --json
  petal-node generate --model models/stories260k --prompt "Lily" --draft ngram --speculation pipelined
  petal-node generate --model models/stories260k --prompt "Once upon a time" --samples 3 --temperature 1 --seed 7`)
    .action(async (flags: GenerateFlags, cmd: Command) => {
      await withModel(flags, cmd, async (model, opts) => {
        if ((flags.samples ?? 1) > 1) return await printSamples(model, flags, opts)
        const result = await run(model, flags, { ...opts, ...(flags.logprobs !== undefined ? { logprobs: flags.logprobs } : {}) })
        const logprobs = result.logprobs !== undefined ? { logprobs: shownLogprobs(result.logprobs, new TokenPieces(model.tokenizer)) } : {}
        if (flags.json === true) {
          process.stdout.write(JSON.stringify({ text: result.text, tokens: result.tokens, promptTokens: result.promptTokens, stopReason: result.stopReason, ...logprobs, stats: result.stats }) + '\n')
        } else {
          process.stdout.write('\n')
          process.stderr.write(`[${describeStats(result)}${result.logprobs !== undefined ? `, ${describeLogprobs(result.logprobs)}` : ''}]\n`)
        }
      })
    })
}

/** --samples N: the continuations, each after the prompt (or one JSON object with them all). */
async function printSamples (model: LanguageModel, flags: GenerateFlags, opts: GenerateOptions): Promise<void> {
  const results = await model.generateMany(flags.prompt, flags.samples as number, { ...opts, ...(flags.logprobs !== undefined ? { logprobs: flags.logprobs } : {}) })
  if (flags.json === true) {
    const pieces = new TokenPieces(model.tokenizer)
    const samples = results.map(r => ({ text: r.text, tokens: r.tokens, stopReason: r.stopReason, ...(r.logprobs !== undefined ? { logprobs: shownLogprobs(r.logprobs, pieces) } : {}), stats: r.stats }))
    process.stdout.write(JSON.stringify({ promptTokens: results[0]?.promptTokens, samples }) + '\n')
    return
  }
  for (const [i, r] of results.entries()) {
    process.stdout.write(`--- sample ${i + 1} of ${results.length} ---\n${flags.prompt}${r.text}\n`)
    process.stderr.write(`[sample ${i + 1}: ${describeStats(r)}]\n`)
  }
}

/** Streams the text to stdout (unless --json) and returns the result. */
async function run (model: LanguageModel, flags: GenerateFlags, opts: GenerateOptions): Promise<GenerationResult> {
  const stream = model.generate(flags.prompt, opts)
  if (flags.json !== true) process.stdout.write(flags.prompt)
  for (;;) {
    const next = await stream.next()
    if (next.done === true) return next.value
    if (flags.json !== true) process.stdout.write(next.value.text)
  }
}

/** Each token's logprob with its text, and its alternatives': what --json prints. */
function shownLogprobs (entries: readonly TokenLogprob[], pieces: TokenPieces): unknown[] {
  return entries.map(e => ({
    token: e.token,
    text: pieces.of(e.token).text,
    logprob: e.logprob,
    top: e.top.map(t => ({ token: t.token, text: pieces.of(t.token).text, logprob: t.logprob }))
  }))
}

/** "mean logprob -0.412 (perplexity 1.51)" of the generated tokens. */
function describeLogprobs (entries: readonly TokenLogprob[]): string {
  const mean = entries.reduce((sum, e) => sum + e.logprob, 0) / Math.max(1, entries.length)
  return `mean logprob ${mean.toFixed(3)} (perplexity ${Math.exp(-mean).toFixed(2)})`
}
