import type { Command } from 'commander'
import { UsageError } from './cli-error.js'
import { loadLocalModel } from './load-model.js'
import { parseIntList } from './options.js'

/** `petal-node forward`: logits for every position of a token sequence, as JSON. */
export function forwardCommand (program: Command): void {
  program.command('forward')
    .description('print the logits at every position of a token id sequence (scoring, debugging, parity checks)')
    .requiredOption('--model <dir>', 'Hugging Face checkpoint folder')
    .requiredOption('--ids <ids>', 'comma-separated token ids, e.g. 1,403,407')
    .option('--split <blocks>', 'run the model as spans cut at these block indexes, e.g. 2,4')
    .addHelpText('after', '\nPrints {"logits": [[...V floats], ...]} with one row per position.')
    .action(async (opts: { model: string, ids: string, split?: string }) => {
      const ids = parseIntList(opts.ids, '--ids')
      if (ids.length === 0) throw new UsageError('--ids must name at least one token id')
      const split = opts.split === undefined ? [] : parseIntList(opts.split, '--split')
      const { model } = await loadLocalModel(opts.model, { split })
      try {
        const logits = await model.newSession().forward(ids)
        process.stdout.write(JSON.stringify({ logits: logits.map(row => Array.from(row)) }) + '\n')
      } finally {
        await model.release()
      }
    })
}
