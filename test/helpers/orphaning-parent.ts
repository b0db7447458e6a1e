/**
 * A parent for test/swarm/orphans.test.ts: starts a one-server LocalSwarm of the bundled
 * model, prints "server <pid>" and waits to be killed.
 */
import { LocalSwarm } from '../../node/local-swarm.js'
import { BUNDLED_MODEL } from './fixtures.js'

const swarm = new LocalSwarm(BUNDLED_MODEL)
const [server] = await swarm.add({ blocks: '0:5' })
process.stdout.write(`server ${server?.child.pid}\n`)
setInterval(() => {}, 60_000)
