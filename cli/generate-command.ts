import type { Command } from 'commander'
import type { LanguageModel } from '../client/language-model.js'
import type { GenerateOptions, GenerationResult } from '../client/text-generation.js'
import { addGenerationOptions, describeStats, withModel, type GenerationFlags } from './generation-flags.js'

interface GenerateFlags extends GenerationFlags {
  prompt: string
  json?: boolean
}

/** `petal-node generate`: text from a prompt, locally or through a swarm, streamed to stdout. */
export function generateCommand (program: Command): void {
  const command = program.command('generate')
    .description('generate text: locally, or through a swarm with --bootstrap')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint folder (the client needs its tokenizer, embedding and head)')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--json', 'print one JSON object {text, tokens, promptTokens, stats} instead of streaming')
  addGenerationOptions(command)
    .addHelpText('after', `
Examples:
  petal-node generate --model models/stories260k --prompt "Once upon a time" --max-new-tokens 60
  petal-node generate --model models/stories260k --prompt "Lily" --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo... --json
  petal-node generate --model models/stories260k --prompt "Lily" --draft ngram --speculation pipelined`)
    .action(async (flags: GenerateFlags, cmd: Command) => {
      await withModel(flags, cmd, async (model, opts) => {
        const result = await run(model, flags, opts)
        if (flags.json === true) {
          process.stdout.write(JSON.stringify({ text: result.text, tokens: result.tokens, promptTokens: result.promptTokens, stopReason: result.stopReason, stats: result.stats }) + '\n')
        } else {
          process.stdout.write('\n')
          process.stderr.write(`[${describeStats(result)}]\n`)
        }
      })
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
