/**
 * The client SDK in a page: connect to a swarm, load the client parts of a model from a
 * local checkpoint folder, stream a story, then chat over one session whose KV caches stay
 * on the servers between turns, and fork it to try another turn.
 *
 *   node --import tsx scripts/example-sdk.ts /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo... [models/stories260k]
 */
import { LanguageModel, SwarmClient } from '../client/index.js'

const [bootstrap, dir = 'models/stories260k'] = process.argv.slice(2)
if (bootstrap === undefined) throw new Error('usage: example-sdk.ts BOOTSTRAP_MULTIADDR [MODEL_DIR]')

const swarm = await SwarmClient.connect({ bootstrap: [bootstrap] })
const model = await LanguageModel.swarm(swarm, dir) // tokenizer, embedding, LM head from `dir`; blocks from the swarm

// 1. One-shot generation: text chunks as they come, stats at the end.
process.stdout.write('Once upon a time')
const story = model.generate('Once upon a time', { maxNewTokens: 40, temperature: 0.8, seed: 1 })
for (let step = await story.next(); ; step = await story.next()) {
  if (step.done === true) {
    console.log(`\n[${step.value.tokens.length} tokens, ${step.value.stats.tokensPerSecond.toFixed(0)} tokens/s, route ${step.value.stats.target.route}]`)
    break
  }
  process.stdout.write(step.value.text)
}

// 2. A session: the second turn sends only its own tokens; the servers kept the rest.
const chat = await model.session({ maxTokens: 256 })
for (const turn of ['Lily and Ben went to the park.', ' Then they']) {
  process.stdout.write(turn)
  for await (const chunk of chat.generate(turn, { maxNewTokens: 24, temperature: 0 })) process.stdout.write(chunk.text)
  console.log()
}

// 3. A fork holds the same conversation (its servers copied the caches): try another turn.
const fork = await chat.fork()
process.stdout.write(' But the dog')
for await (const chunk of fork.generate(' But the dog', { maxNewTokens: 24, temperature: 0 })) process.stdout.write(chunk.text)
console.log(`\n[fork: ${String(fork.target.stats()['hopsAdopted'])} servers copied the caches, ${fork.tokens.length} tokens]`)
await fork.close()
await chat.close()
await model.release()
await swarm.close()
