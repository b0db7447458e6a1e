/**
 * Real processes: `petal-node serve --relay` and a server with no address of its own
 * (`--listen /p2p-circuit`, as behind a NAT), which finds the relay, announces the relayed
 * address, and serves `petal-node generate` through it.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { CliProcesses, exited, untilReady } from '../helpers/cli-process.js'
import { BUNDLED_MODEL, readReference } from '../helpers/fixtures.js'

const READY = /^ready (\S+) blocks \[(\d+),(\d+)\) of (\S+)$/m

describe('petal-node serve behind a relay', () => {
  const processes = new CliProcesses()
  const run = (args: string[]): ReturnType<CliProcesses['run']> => processes.run(args, { PETAL_EXIT_WITH_PARENT: '1' })
  /** `petal-node serve ...args` once it has printed its ready line: the address in it. */
  const serve = async (args: string[]): Promise<string> => (await untilReady(run(['serve', '--model', BUNDLED_MODEL, ...args]), READY, 30_000))[1] as string
  afterAll(() => { processes.killAll() })

  it('a --listen /p2p-circuit server reserves on the --relay server it joins through and serves generate', async () => {
    const relay = await serve(['--blocks', '0:3', '--listen', '/ip4/127.0.0.1/tcp/0', '--relay', '4'])
    const hidden = await serve(['--blocks', '3:5', '--listen', '/p2p-circuit', '--bootstrap', relay])
    expect(hidden).toMatch(new RegExp(`^${relay}/p2p-circuit/p2p/\\w+$`))
    const ref = readReference('stories260k').prompts[0]
    const gen = run(['generate', '--bootstrap', relay, '--model', BUNDLED_MODEL, '--prompt', ref.prompt, '--max-new-tokens', '16', '--temperature', '0', '--json', '--liveness', '1,2'])
    expect(await exited(gen.child), gen.stderr()).toBe(0)
    const result = JSON.parse(gen.stdout())
    expect(result.tokens).toEqual(ref.greedy_new_ids.slice(0, 16))
    expect(result.stats.target.route).toContain(hidden.slice(-6))
    // status marks the server reachable only through the relay
    const status = run(['status', '--bootstrap', relay])
    expect(await exited(status.child), status.stderr()).toBe(0)
    const line = (id: string): string | undefined => status.stdout().split('\n').find(l => l.includes(`…${id.slice(-8)}`))
    expect(line(hidden)).toMatch(/ \(relay\)\s+\[3,5\)/)
    expect(line(relay)).not.toContain('(relay)')
  }, 60_000)
})
