import { Command, Option } from 'commander'
import { LanguageModel } from '../client/language-model.js'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import type { GenerateOptions, GenerationResult } from '../client/text-generation.js'
import { UsageError } from './cli-error.js'
import { createDrafter } from './drafter-option.js'
import { createCliLogger } from './logger.js'
import { parseNumber } from './options.js'

interface GenerateFlags {
  model: string
  prompt: string
  maxNewTokens?: number
  temperature?: number
  topK?: number
  topP?: number
  repetitionPenalty?: number
  seed?: number
  stop?: string[]
  json?: boolean
  bootstrap?: string[]
  modelId?: string
  push?: boolean
  wireDtype?: 'float32' | 'float16'
  coverageWait?: number
  draft?: string
  speculation?: 'none' | 'sync' | 'pipelined'
  k?: number
  depth?: number
  branches?: number
  branchLength?: number
  linkLatencyMs?: number
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** `petal-node generate`: text from a prompt, locally or through a swarm, streamed to stdout. */
export function generateCommand (program: Command): void {
  program.command('generate')
    .description('generate text: locally, or through a swarm with --bootstrap')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint folder (the client needs its tokenizer, embedding and head)')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--max-new-tokens <n>', 'most tokens to generate', parseNumber('--max-new-tokens', { integer: true, min: 1 }))
    .option('--temperature <t>', 'sampling temperature; 0 is greedy (default: generation_config.json)', parseNumber('--temperature', { min: 0 }))
    .option('--top-k <k>', 'sample among the k most likely tokens (0: off)', parseNumber('--top-k', { integer: true, min: 0 }))
    .option('--top-p <p>', 'nucleus sampling mass', parseNumber('--top-p', { min: 0, max: 1 }))
    .option('--repetition-penalty <r>', 'penalty for tokens already present (1: off)', parseNumber('--repetition-penalty', { min: 0 }))
    .option('--seed <s>', 'random seed: the same seed gives the same text', parseNumber('--seed', { integer: true, min: 0 }))
    .option('--stop <text>', 'stop before this string (repeatable)', collect)
    .option('--json', 'print one JSON object {text, tokens, promptTokens, stats} instead of streaming')
    .option('--bootstrap <multiaddr>', 'address of a swarm node (repeatable); without it the model runs locally', collect)
    .option('--model-id <id>', 'model id announced by the servers (default: the folder name)')
    .option('--push', 'servers forward activations to each other (N+1 one-way trips instead of 2N)')
    .addOption(new Option('--wire-dtype <dtype>', 'activations on the wire').choices(['float32', 'float16']))
    .option('--coverage-wait <seconds>', 'when some blocks have no server (at the start, or after the one holding them failed), wait this long for the swarm to cover them (default 0: fail at once)', parseNumber('--coverage-wait', { min: 0 }))
    .option('--draft <dir|ngram>', 'speculative decoding drafter: a draft checkpoint folder, or "ngram" (prompt lookup)')
    .addOption(new Option('--speculation <mode>', 'speculative decoding mode').choices(['none', 'sync', 'pipelined']))
    .option('--k <n>', 'most draft tokens per speculative run (default 16 sync, 4 pipelined)', parseNumber('--k', { integer: true, min: 1, max: 64 }))
    .option('--depth <n>', 'speculative runs in flight (pipelined)', parseNumber('--depth', { integer: true, min: 1, max: 64 }))
    .option('--branches <n>', 'tree speculation: most branches per run beside unsure drafts (draft model; 0: off)', parseNumber('--branches', { integer: true, min: 0, max: 64 }))
    .option('--branch-length <n>', 'draft tokens after each branch\'s first', parseNumber('--branch-length', { integer: true, min: 0, max: 64 }))
    .option('--link-latency-ms <ms>', 'simulate this one-way latency on every frame the client sends (benchmarks)', parseNumber('--link-latency-ms', { min: 0 }))
    .addHelpText('after', `
Examples:
  petal-node generate --model models/stories260k --prompt "Once upon a time" --max-new-tokens 60
  petal-node generate --model models/stories260k --prompt "Lily" --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo... --json
  petal-node generate --model models/stories260k --prompt "Lily" --draft ngram --speculation pipelined`)
    .action(async (flags: GenerateFlags, cmd: Command) => {
      const verbose = cmd.optsWithGlobals<{ verbose?: boolean }>().verbose === true
      const logger = createCliLogger(verbose ? 'info' : 'silent')
      if (flags.speculation !== undefined && flags.speculation !== 'none' && flags.draft === undefined) {
        throw new UsageError(`--speculation ${flags.speculation} needs --draft DIR or --draft ngram`)
      }
      const swarm = flags.bootstrap !== undefined ? await SwarmClient.connect({ bootstrap: flags.bootstrap, logger }) : undefined
      try {
        const model = swarm !== undefined
          ? await LanguageModel.swarm(swarm, flags.model, {
            ...(flags.modelId !== undefined ? { modelId: flags.modelId } : {}),
            ...(flags.push === true ? { push: true } : {}),
            ...(flags.wireDtype !== undefined ? { wireDtype: flags.wireDtype } : {}),
            ...(flags.coverageWait !== undefined ? { coverageWaitMs: flags.coverageWait * 1000 } : {}),
            ...(flags.linkLatencyMs !== undefined ? { sendDelayMs: flags.linkLatencyMs } : {})
          })
          : await LanguageModel.local(flags.model, flags.linkLatencyMs !== undefined ? { oneWayLatencyMs: flags.linkLatencyMs } : {})
        const draft = flags.draft !== undefined ? await createDrafter(flags.draft) : undefined
        const opts: GenerateOptions = {
          ...(flags.maxNewTokens !== undefined ? { maxNewTokens: flags.maxNewTokens } : {}),
          ...(flags.temperature !== undefined ? { temperature: flags.temperature } : {}),
          ...(flags.topK !== undefined ? { topK: flags.topK } : {}),
          ...(flags.topP !== undefined ? { topP: flags.topP } : {}),
          ...(flags.repetitionPenalty !== undefined ? { repetitionPenalty: flags.repetitionPenalty } : {}),
          ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
          ...(flags.stop !== undefined ? { stopStrings: flags.stop } : {}),
          ...(draft !== undefined ? { drafter: draft.drafter, speculation: flags.speculation ?? 'pipelined' } : {}),
          ...(flags.k !== undefined ? { k: flags.k } : {}),
          ...(flags.depth !== undefined ? { maxInFlight: flags.depth } : {}),
          ...(flags.branches !== undefined ? { branches: flags.branches } : {}),
          ...(flags.branchLength !== undefined ? { branchLength: flags.branchLength } : {})
        }
        const result = await run(model, flags, opts)
        if (flags.json === true) {
          process.stdout.write(JSON.stringify({ text: result.text, tokens: result.tokens, promptTokens: result.promptTokens, stopReason: result.stopReason, stats: result.stats }) + '\n')
        } else {
          process.stdout.write('\n')
          const s = result.stats
          process.stderr.write(`[${result.tokens.length} tokens in ${(s.elapsedMs / 1000).toFixed(2)} s, ${s.tokensPerSecond.toFixed(1)} tokens/s, route ${s.target.route}${s.target.failovers > 0 ? `, ${s.target.failovers} failover(s)` : ''}]\n`)
        }
        await draft?.release()
        await model.release()
      } finally {
        await swarm?.close()
      }
    })
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
