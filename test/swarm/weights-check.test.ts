import { cpSync, mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { NoRouteError } from '../../client/routing/route-planner.js'
import { SwarmClient } from '../../client/swarm/swarm-client.js'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalSwarm } from '../../node/local-swarm.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { waitForServers } from '../helpers/swarm.js'

/** A copy of stories260k whose block 3 has one weight changed: same model id, different weights. */
function tamperedCopy (): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'petal-tampered-')), 'stories260k')
  cpSync(BUNDLED_MODEL, dir, { recursive: true })
  const entry = Checkpoint.open(dir).tensorInfo('model.layers.3.mlp.down_proj.weight')
  if (entry === undefined) throw new Error('tensor missing')
  const fd = openSync(entry.file, 'r+')
  const b = Buffer.alloc(4)
  readSync(fd, b, 0, 4, entry.offset)
  b.writeFloatLE(b.readFloatLE(0) + 0.5)
  writeSync(fd, b, 0, 4, entry.offset)
  closeSync(fd)
  return dir
}

describe('a server whose weights differ from the client\'s checkpoint is refused', () => {
  const honest = new LocalSwarm(BUNDLED_MODEL)
  const tamperedDir = tamperedCopy()
  const tampered = new LocalSwarm(tamperedDir)
  let client: SwarmClient

  beforeAll(async () => {
    await honest.add({ blocks: '0:2' })
    await tampered.add({ blocks: '2:5', args: ['--bootstrap', honest.bootstrap] })
    client = await SwarmClient.connect({ bootstrap: [honest.bootstrap] })
    await waitForServers(client, 'stories260k', 5, s => s.length === 2)
  }, 60_000)
  afterAll(async () => {
    await client?.close()
    await tampered.close()
    await honest.close()
    rmSync(join(tamperedDir, '..'), { recursive: true, force: true })
  })

  it('names it when no honest server covers its blocks, and routes around it once one does', async () => {
    const model = await LanguageModel.swarm(client, BUNDLED_MODEL)
    const err = await model.session().catch(e => e)
    expect(err).toBeInstanceOf(NoRouteError)
    expect(err.message).toMatch(/weights differ/)
    const [replacement] = await honest.add({ blocks: '2:5' })
    await waitForServers(client, 'stories260k', 5, s => s.length === 3)
    const session = await model.session({ maxTokens: 32 })
    expect(session.target.stats().route).toContain(`…${replacement?.address.slice(-6)}[2,5)`)
    await session.close()
    await model.release()
  })
})
