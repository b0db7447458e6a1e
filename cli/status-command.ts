import type { Command } from 'commander'
import { SwarmClient } from '../client/swarm/swarm-client.js'
import { collectSwarmStatus } from '../client/swarm/swarm-status.js'
import { formatStatus } from './status-format.js'

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** `petal-node status`: models, block coverage and servers of a swarm. */
export function statusCommand (program: Command): void {
  program.command('status')
    .description('show the swarm: models, block coverage, servers (span, speed, RTT, state, sessions, cache)')
    .requiredOption('--bootstrap <multiaddr>', 'address of any swarm node (repeatable)', collect)
    .option('--model <id>', 'only this model')
    .option('--json', 'print JSON for scripts')
    .option('--timeout <ms>', 'how long discovery may take', (v: string) => Number(v), 5000)
    .action(async (flags: { bootstrap: string[], model?: string, json?: boolean, timeout: number }) => {
      const swarm = await SwarmClient.connect({ bootstrap: flags.bootstrap, discoveryTimeoutMs: flags.timeout })
      try {
        const models = await collectSwarmStatus(swarm, { timeoutMs: flags.timeout, ...(flags.model !== undefined ? { modelId: flags.model } : {}) })
        if (flags.json === true) process.stdout.write(JSON.stringify({ models }) + '\n')
        else process.stdout.write(formatStatus(models))
        if (flags.model !== undefined && models.length === 0) process.exitCode = 1
      } finally {
        await swarm.close()
      }
    })
}
