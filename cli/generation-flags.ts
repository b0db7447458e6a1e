/**
 * What `generate` and `chat` share: where the model runs (locally, or through a swarm with
 * --bootstrap), and how it decodes (sampling, speculation).
 */
import { type Command, Option } from 'commander'
import { LanguageModel } from '../client/language-model.js'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import type { GenerateOptions, GenerationResult } from '../client/text-generation.js'
import { UsageError } from './cli-error.js'
import { createDrafter } from './drafter-option.js'
import { createCliLogger } from './logger.js'
import { parseNumber } from './options.js'

/** Flags that are GenerateOptions of the same name and meaning. */
const PASSED_THROUGH = ['maxNewTokens', 'temperature', 'topK', 'topP', 'repetitionPenalty', 'presencePenalty', 'frequencyPenalty', 'seed', 'k', 'branches', 'branchLength'] as const

export interface GenerationFlags extends Pick<GenerateOptions, typeof PASSED_THROUGH[number] | 'speculation'> {
  model: string
  stop?: string[]
  bootstrap?: string[]
  modelId?: string
  push?: boolean
  wireDtype?: 'float32' | 'float16'
  coverageWait?: number
  liveness?: { afterMs: number, timeoutMs: number } | false
  exactWeights?: boolean
  quantizeClient?: 'none' | 'int8'
  pipelinePrefill?: 'auto' | 'on' | 'off'
  draft?: string
  depth?: number
  linkLatencyMs?: number
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** --liveness "2,3" (seconds) or "off". */
function parseLiveness (value: string): { afterMs: number, timeoutMs: number } | false {
  if (value === 'off') return false
  const parts = value.split(',').map(Number)
  const [after, timeout] = parts
  if (parts.length !== 2 || !(after !== undefined && after > 0 && timeout !== undefined && timeout > 0)) {
    throw new UsageError(`--liveness ${value}: expected AFTER,TIMEOUT in seconds (both > 0, e.g. 2,3) or off`)
  }
  return { afterMs: after * 1000, timeoutMs: timeout * 1000 }
}

/** Adds the model, swarm, sampling and speculation options (everything but the text in). */
export function addGenerationOptions (command: Command): Command {
  return command
    .option('--max-new-tokens <n>', 'most tokens to generate', parseNumber('--max-new-tokens', { integer: true, min: 1 }))
    .option('--temperature <t>', 'sampling temperature; 0 is greedy (default: generation_config.json)', parseNumber('--temperature', { min: 0 }))
    .option('--top-k <k>', 'sample among the k most likely tokens (0: off)', parseNumber('--top-k', { integer: true, min: 0 }))
    .option('--top-p <p>', 'nucleus sampling mass', parseNumber('--top-p', { min: 0, max: 1 }))
    .option('--repetition-penalty <r>', 'penalty for tokens already present (1: off)', parseNumber('--repetition-penalty', { min: 0 }))
    .option('--presence-penalty <p>', 'subtracted from the logit of each token already generated (OpenAI\'s; 0: off)', parseNumber('--presence-penalty', { min: -2, max: 2 }))
    .option('--frequency-penalty <f>', 'subtracted per time a token was generated (OpenAI\'s; 0: off)', parseNumber('--frequency-penalty', { min: -2, max: 2 }))
    .option('--seed <s>', 'random seed: the same seed gives the same text', parseNumber('--seed', { integer: true, min: 0 }))
    .option('--stop <text>', 'stop before this string (repeatable)', collect)
    .option('--bootstrap <multiaddr>', 'address of a swarm node (repeatable); without it the model runs locally', collect)
    .option('--model-id <id>', 'model id announced by the servers (default: the folder name)')
    .option('--push', 'servers forward activations to each other (N+1 one-way trips instead of 2N)')
    .addOption(new Option('--wire-dtype <dtype>', 'activations on the wire').choices(['float32', 'float16']))
    .addOption(new Option('--quantize-client <format>', 'hold the embedding and LM head as 8-bit weights (a swarm client: about 29% of their memory, a faster head, logits close to float32\'s)').choices(['none', 'int8']))
    .option('--exact-weights', 'use only servers holding float32 weights, not those started with --quantize')
    .addOption(new Option('--pipeline-prefill <mode>', 'send a long prompt as chunks that follow one another along the route, so its servers compute them at once (auto: where their speeds say it pays and no two share a host)').choices(['auto', 'on', 'off']).default('auto'))
    .option('--coverage-wait <seconds>', 'when some blocks have no server (at the start, or after the one holding them failed), wait this long for the swarm to cover them (default 0: fail at once)', parseNumber('--coverage-wait', { min: 0 }))
    .option('--liveness <after,timeout|off>', 'ping a server whose answer is overdue by AFTER seconds; no echo in TIMEOUT seconds and it counts as failed (frozen), its blocks move elsewhere (default 2,3; off: only the 30 s result timeout)', parseLiveness)
    .option('--draft <dir|ngram>', 'speculative decoding drafter: a draft checkpoint folder, or "ngram" (prompt lookup)')
    .addOption(new Option('--speculation <mode>', 'speculative decoding mode').choices(['none', 'sync', 'pipelined']))
    .option('--k <n>', 'most draft tokens per speculative run (default 16 sync, 4 pipelined)', parseNumber('--k', { integer: true, min: 1, max: 64 }))
    .option('--depth <n>', 'speculative runs in flight (pipelined)', parseNumber('--depth', { integer: true, min: 1, max: 64 }))
    .option('--branches <n>', 'tree speculation: most branches per run beside unsure drafts (draft model; 0: off)', parseNumber('--branches', { integer: true, min: 0, max: 64 }))
    .option('--branch-length <n>', 'draft tokens after each branch\'s first', parseNumber('--branch-length', { integer: true, min: 0, max: 64 }))
    .option('--link-latency-ms <ms>', 'simulate this one-way latency on every frame the client sends (benchmarks)', parseNumber('--link-latency-ms', { min: 0 }))
}

/**
 * Loads the model the flags name (joining the swarm first with --bootstrap), hands it and the
 * decoding options to `use`, then releases everything.
 */
export async function withModel (flags: GenerationFlags, cmd: Command, use: (model: LanguageModel, opts: GenerateOptions) => Promise<void>): Promise<void> {
  const verbose = cmd.optsWithGlobals<{ verbose?: boolean }>().verbose === true
  const logger = createCliLogger(verbose ? 'info' : 'silent')
  if (flags.speculation !== undefined && flags.speculation !== 'none' && flags.draft === undefined) {
    throw new UsageError(`--speculation ${flags.speculation} needs --draft DIR or --draft ngram`)
  }
  if (flags.quantizeClient === 'int8' && flags.bootstrap === undefined) throw new UsageError('--quantize-client is for a swarm client: add --bootstrap (locally the whole model runs in float32)')
  const swarm = flags.bootstrap !== undefined ? await SwarmClient.connect({ bootstrap: flags.bootstrap, logger }) : undefined
  try {
    const model = swarm !== undefined
      ? await LanguageModel.swarm(swarm, flags.model, {
        ...(flags.modelId !== undefined ? { modelId: flags.modelId } : {}),
        ...(flags.push === true ? { push: true } : {}),
        ...(flags.wireDtype !== undefined ? { wireDtype: flags.wireDtype } : {}),
        ...(flags.coverageWait !== undefined ? { coverageWaitMs: flags.coverageWait * 1000 } : {}),
        ...(flags.liveness !== undefined ? { liveness: flags.liveness } : {}),
        ...(flags.exactWeights === true ? { exactWeightsOnly: true } : {}),
        ...(flags.quantizeClient !== undefined ? { clientQuantization: flags.quantizeClient } : {}),
        ...(flags.pipelinePrefill !== undefined && flags.pipelinePrefill !== 'auto' ? { pipelinePrefill: flags.pipelinePrefill === 'on' } : {}),
        ...(flags.linkLatencyMs !== undefined ? { sendDelayMs: flags.linkLatencyMs } : {})
      })
      : await LanguageModel.local(flags.model, flags.linkLatencyMs !== undefined ? { oneWayLatencyMs: flags.linkLatencyMs } : {})
    const draft = flags.draft !== undefined ? await createDrafter(flags.draft) : undefined
    try {
      const opts: GenerateOptions = {
        ...(flags.stop !== undefined ? { stopStrings: flags.stop } : {}),
        ...(draft !== undefined ? { drafter: draft.drafter, speculation: flags.speculation ?? 'pipelined' } : {}),
        ...(flags.depth !== undefined ? { maxInFlight: flags.depth } : {})
      }
      for (const key of PASSED_THROUGH) if (flags[key] !== undefined) opts[key] = flags[key]
      await use(model, opts)
    } finally {
      await draft?.release()
      await model.release()
    }
  } finally {
    await swarm?.close()
  }
}

/** "24 tokens in 0.31 s, 77.4 tokens/s, route …a1b2c3[0,5)" (and failovers, if any). */
export function describeStats (result: GenerationResult): string {
  const s = result.stats
  const quantized = s.target.quantizedHops !== undefined ? `, quantized: ${s.target.quantizedHops.join(', ')}` : ''
  return `${result.tokens.length} tokens in ${(s.elapsedMs / 1000).toFixed(2)} s, ${s.tokensPerSecond.toFixed(1)} tokens/s, route ${s.target.route}${quantized}${s.target.failovers > 0 ? `, ${s.target.failovers} failover(s)` : ''}`
}
