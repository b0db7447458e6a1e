import type { Command } from 'commander'
import { fileURLToPath } from 'node:url'
import { LanguageModel } from '../client/language-model.js'
import { uncoveredBlocks } from '../client/routing/route-planner.js'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import { collectSwarmStatus } from '../client/swarm/swarm-status.js'
import { LocalSwarm } from '../node/local-swarm.js'
import { parseNumber } from './options.js'
import { formatStatus } from './status-format.js'

const BUNDLED_MODEL = fileURLToPath(new URL('../models/stories260k', import.meta.url))

/**
 * `petal-node demo`: three server processes on loopback serve the bundled model as
 * [0,2) [2,4) [4,5); a client generates a story through them; then everything stops.
 */
export function demoCommand (program: Command): void {
  program.command('demo')
    .description('start a local 3-node swarm serving the bundled model, generate a story through it, show route, status and timings')
    .option('--prompt <text>', 'story prompt', 'Once upon a time')
    .option('--max-new-tokens <n>', 'tokens to generate', parseNumber('--max-new-tokens', { integer: true, min: 1 }), 120)
    .option('--seed <s>', 'sampling seed', parseNumber('--seed', { integer: true, min: 0 }), 42)
    .option('--temperature <t>', 'sampling temperature (0: greedy)', parseNumber('--temperature', { min: 0 }), 0.8)
    .action(async (flags: { prompt: string, maxNewTokens: number, seed: number, temperature: number }) => {
      const t0 = performance.now()
      const swarm = new LocalSwarm(BUNDLED_MODEL)
      let client: SwarmClient | undefined
      try {
        console.log('starting 3 servers on 127.0.0.1 serving stories260k blocks [0,2) [2,4) [4,5) ...')
        for (const blocks of ['0:2', '2:4', '4:5']) {
          const [s] = await swarm.add({ blocks })
          console.log(`  server ${blocks.replace(':', '..')} ready at ${s?.address}`)
        }
        const tReady = performance.now()
        client = await SwarmClient.connect({ bootstrap: [swarm.bootstrap] })
        await waitForCoverage(client, 'stories260k', 5)
        const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
        console.log(`\n--- story (temperature ${flags.temperature}, seed ${flags.seed}) ---`)
        const stream = model.generate(flags.prompt, { maxNewTokens: flags.maxNewTokens, temperature: flags.temperature, seed: flags.seed })
        process.stdout.write(flags.prompt)
        let next = await stream.next()
        while (next.done !== true) {
          process.stdout.write(next.value.text)
          next = await stream.next()
        }
        const r = next.value
        console.log('\n---')
        console.log(`route:   ${r.stats.target.route}`)
        console.log(`timings: swarm up in ${((tReady - t0) / 1000).toFixed(1)} s; ${r.tokens.length} tokens in ${(r.stats.elapsedMs / 1000).toFixed(2)} s ` +
          `(${r.stats.tokensPerSecond.toFixed(1)} tokens/s, first token after ${r.stats.ttftMs.toFixed(0)} ms), stop: ${r.stopReason}`)
        console.log('\n$ petal-node status --bootstrap ' + swarm.bootstrap)
        process.stdout.write(formatStatus(await collectSwarmStatus(client)))
        await model.release()
      } finally {
        await client?.close()
        await swarm.close()
        console.log('swarm stopped.')
      }
    })
}

/** Polls discovery until every block has a server (servers announce right after they start). */
async function waitForCoverage (client: SwarmClient, modelId: string, numBlocks: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const servers = await client.refresh(modelId, numBlocks)
    if (uncoveredBlocks(servers.map(s => s.info), 0, numBlocks).length === 0) return
    if (Date.now() > deadline) throw new Error(`Blocks ${uncoveredBlocks(servers.map(s => s.info), 0, numBlocks).join(', ')} of ${modelId} have no server after ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 250))
  }
}
