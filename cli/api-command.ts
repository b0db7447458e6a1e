import { basename } from 'node:path'
import type { Command } from 'commander'
import { OpenAiServer } from '../client/openai/openai-server.js'
import { addGenerationOptions, withModel, type GenerationFlags } from './generation-flags.js'
import { createCliLogger } from './logger.js'
import { parseHostPort, parseNumber } from './options.js'

interface ApiFlags extends GenerationFlags {
  listen: string
  apiKey?: string
  maxSessions: number
  maxTokens?: number
  idleTimeout: number
  corsOrigin?: string
}

/**
 * `petal-node api`: an OpenAI-compatible HTTP API (/v1/models, /v1/completions,
 * /v1/chat/completions) over a model run locally or through a swarm, until SIGINT/SIGTERM.
 */
export function apiCommand (program: Command): void {
  const command = program.command('api')
    .description('serve an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions) over a model, locally or through a swarm')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint folder (the client needs its tokenizer, embedding and head)')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8000')
    .option('--api-key <key>', 'require "Authorization: Bearer <key>" (default: $PETAL_API_KEY; none: open to whoever can reach the address)')
    .option('--max-sessions <n>', 'sessions at once, busy and idle (each holds cache on its servers)', parseNumber('--max-sessions', { integer: true, min: 1 }), 4)
    .option('--max-tokens <n>', 'positions each session holds: prompt and completion together (default: the model\'s context)', parseNumber('--max-tokens', { integer: true, min: 2 }))
    .option('--cors-origin <origin>', 'let web pages from this origin call the API, e.g. https://chat.example.org, or "*" for any (default: none)')
    .option('--idle-timeout <seconds>', 'close a session idle this long, giving its servers\' caches back (0: keep none, each request opens its own)', parseNumber('--idle-timeout', { min: 0 }), 300)
  addGenerationOptions(command)
    .addHelpText('after', `
Sampling and speculation flags set the defaults; a request's own fields (temperature, top_p,
max_tokens, stop, seed) override them.

Examples:
  petal-node api --model models/stories260k --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo...
  curl -s localhost:8000/v1/completions -H 'content-type: application/json' -d '{"prompt": "Once upon a time", "max_tokens": 40}'`)
    .action(async (flags: ApiFlags, cmd: Command) => {
      const { host, port } = parseHostPort(flags.listen, '--listen')
      const verbose = cmd.optsWithGlobals<{ verbose?: boolean }>().verbose === true
      await withModel(flags, cmd, async (model, defaults) => {
        const apiKey = flags.apiKey ?? process.env.PETAL_API_KEY
        const server = await OpenAiServer.listen({
          model,
          modelId: flags.modelId ?? basename(flags.model),
          defaults,
          maxSessions: flags.maxSessions,
          idleMs: flags.idleTimeout * 1000,
          ...(flags.maxTokens !== undefined ? { sessionTokens: flags.maxTokens } : {}),
          ...(apiKey !== undefined && apiKey !== '' ? { apiKey } : {}),
          ...(flags.corsOrigin !== undefined ? { corsOrigin: flags.corsOrigin } : {}),
          logger: createCliLogger(verbose ? 'info' : 'warn').child({ component: 'api' })
        }, { host, port })
        process.stdout.write(`api ready ${server.url} model ${flags.modelId ?? basename(flags.model)}\n`)
        await new Promise<void>(resolve => {
          process.once('SIGINT', resolve)
          process.once('SIGTERM', resolve)
        })
        await server.close()
      })
    })
}
