import type { Command } from 'commander'
import { exportClientParts } from '../model/client-export.js'

/**
 * `petal-node export-client`: the part of a checkpoint a client needs (config, tokenizer,
 * embedding, final norm, LM head) and the blocks' weight hashes, in a new folder that
 * `generate`, `chat`, `api` and the SDK take as `--model` with any swarm serving the model.
 */
export function exportClientCommand (program: Command): void {
  program.command('export-client')
    .description('write a client\'s share of a checkpoint (tokenizer, embedding, LM head, block hashes) to a new folder: clients of a swarm need no blocks')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint folder (every block: their hashes go into the export)')
    .requiredOption('--out <dir>', 'new (or empty) folder to write')
    .option('--model-id <id>', 'model id the servers announce (default: the checkpoint folder\'s name)')
    .addHelpText('after', `
Example:
  petal-node export-client --model ~/models/Llama-3.1-8B --out ~/models/Llama-3.1-8B-client
  petal-node generate --model ~/models/Llama-3.1-8B-client --bootstrap /ip4/... --prompt "Hello"`)
    .action((flags: { model: string, out: string, modelId?: string }) => {
      const result = exportClientParts(flags.model, flags.out, flags.modelId !== undefined ? { modelId: flags.modelId } : {})
      const mib = (b: number): string => (b / 2 ** 20).toFixed(1)
      process.stdout.write(`wrote ${flags.out}: ${mib(result.clientBytes)} MiB of client tensors (the checkpoint's tensors: ${mib(result.checkpointBytes)} MiB), ` +
        `${result.copied.length} files copied, hashes of ${result.manifest.numBlocks} blocks; model id ${result.manifest.modelId}\n`)
    })
}
