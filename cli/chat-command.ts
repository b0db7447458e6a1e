import { createInterface } from 'node:readline'
import type { Command } from 'commander'
import type { Conversation } from '../client/conversation.js'
import type { GenerateOptions, GenerationResult } from '../client/text-generation.js'
import { addGenerationOptions, describeStats, withModel, type GenerationFlags } from './generation-flags.js'
import { parseNumber } from './options.js'

interface ChatFlags extends GenerationFlags {
  system?: string
  json?: boolean
  maxTokens?: number
}

/**
 * `petal-node chat`: a conversation with an instruction-tuned model (it needs a chat template),
 * one user message per line of stdin; the KV caches stay on the servers between turns.
 */
export function chatCommand (program: Command): void {
  const command = program.command('chat')
    .description('chat with an instruction-tuned model: one message per line of stdin, locally or through a swarm')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint folder with a chat template (tokenizer_config.json chat_template or chat_template.jinja)')
    .option('--system <text>', 'a system message to open the conversation')
    .option('--max-tokens <n>', 'positions the session holds on the servers (default: the model\'s context); older turns leave the context when it is full', parseNumber('--max-tokens', { integer: true, min: 2 }))
    .option('--json', 'print one JSON object {text, tokens, promptTokens, stats} per reply instead of streaming')
  addGenerationOptions(command)
    .addHelpText('after', `
Examples:
  petal-node chat --model ~/models/qwen2.5-0.5b-instruct --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...
  printf 'Hi!\\nWhat can you do?\\n' | petal-node chat --model ~/models/tinyllama-chat --json`)
    .action(async (flags: ChatFlags, cmd: Command) => {
      await withModel(flags, cmd, async (model, opts) => {
        const conversation = await model.conversation({
          ...(flags.system !== undefined ? { system: flags.system } : {}),
          ...(flags.maxTokens !== undefined ? { maxTokens: flags.maxTokens } : {})
        })
        try {
          const interactive = process.stdin.isTTY === true && flags.json !== true
          const lines = createInterface({ input: process.stdin, ...(interactive ? { output: process.stdout, prompt: '> ' } : {}) })
          if (interactive) lines.prompt()
          for await (const line of lines) {
            if (line.trim() !== '') {
              const result = await reply(conversation, line, opts, flags.json === true)
              if (flags.json === true) process.stdout.write(JSON.stringify({ text: result.text, tokens: result.tokens, promptTokens: result.promptTokens, stopReason: result.stopReason, stats: result.stats }) + '\n')
              else process.stderr.write(`[${describeStats(result)}; sent ${result.promptTokens.length} new tokens]\n`)
            }
            if (interactive) lines.prompt()
          }
        } finally {
          await conversation.close()
        }
      })
    })
}

/** One turn: streams the reply to stdout (unless `quiet`) and returns it. */
async function reply (conversation: Conversation, message: string, opts: GenerateOptions, quiet: boolean): Promise<GenerationResult> {
  const stream = conversation.say(message, opts)
  for (;;) {
    const next = await stream.next()
    if (next.done === true) {
      if (!quiet) process.stdout.write('\n')
      return next.value
    }
    if (!quiet) process.stdout.write(next.value.text)
  }
}
