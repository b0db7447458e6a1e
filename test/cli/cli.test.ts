import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, cpSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { LanguageModel } from '../../client/language-model.js'
import { chatModelCopy } from '../helpers/chat-model.js'
import { BUNDLED_MODEL, fixtureDir, maxAbsDiffRows, readReference } from '../helpers/fixtures.js'

const CLI = fileURLToPath(new URL('../../bin/petal-node.js', import.meta.url))
const exec = promisify(execFile)

async function cli (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [CLI, ...args], { maxBuffer: 64 * 2 ** 20 })
    return { code: 0, stdout, stderr }
  } catch (err: any) {
    return { code: err.code as number, stdout: err.stdout as string, stderr: err.stderr as string }
  }
}

describe('petal-node forward', () => {
  it('prints logits for every position; --split gives the same numbers', async () => {
    const ref = readReference('tiny-llama-gqa')
    const ids = ref.input_ids.join(',')
    const whole = JSON.parse((await cli('forward', '--model', fixtureDir('tiny-llama-gqa'), '--ids', ids)).stdout)
    const split = JSON.parse((await cli('forward', '--model', fixtureDir('tiny-llama-gqa'), '--ids', ids, '--split', '2,3,5')).stdout)
    expect(maxAbsDiffRows(whole.logits, ref.logits)).toBeLessThan(1e-4)
    expect(maxAbsDiffRows(split.logits, whole.logits)).toBeLessThan(1e-5)
  }, 30_000)
})

describe('petal-node generate (local)', () => {
  it('--json: greedy tokens of the reference, the prompt ids and stats', async () => {
    const p = readReference('stories260k').prompts[0]
    const { code, stdout } = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', p.prompt, '--max-new-tokens', '48', '--temperature', '0', '--json')
    expect(code).toBe(0)
    const out = JSON.parse(stdout)
    expect(out.promptTokens).toEqual(p.prompt_ids)
    expect(out.tokens).toEqual(p.greedy_new_ids.slice(0, out.tokens.length))
    expect(out.text.length).toBeGreaterThan(0)
    expect(out.stats.tokensPerSecond).toBeGreaterThan(0)
  }, 30_000)

  it('--logprobs N: each token with its text, logprob and N alternatives; the first as transformers scores it', async () => {
    const p = readReference('stories260k').prompts[0] as { prompt: string, last_prompt_logits: number[] }
    const { code, stdout } = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', p.prompt, '--max-new-tokens', '6', '--temperature', '0', '--logprobs', '3', '--json')
    expect(code).toBe(0)
    const out = JSON.parse(stdout)
    expect(out.logprobs.map((e: { token: number }) => e.token)).toEqual(out.tokens)
    expect(out.logprobs.map((e: { text: string }) => e.text).join('')).toBe(out.text)
    for (const e of out.logprobs) expect(e.top).toHaveLength(3)
    const logits = p.last_prompt_logits
    const logZ = Math.log(logits.reduce((sum, x) => sum + Math.exp(x), 0))
    expect(Math.abs(out.logprobs[0].logprob - ((logits[out.tokens[0]] as number) - logZ))).toBeLessThan(2e-4)
    expect((await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'x', '--logprobs', '21')).code).not.toBe(0)
  }, 30_000)

  it('--draft DIR / ngram with --speculation: the same greedy tokens, and the decode stats say how', async () => {
    const p = readReference('stories260k').prompts[0]
    for (const [draft, mode] of [[fixtureDir('stories260k-draft'), 'pipelined'], ['ngram', 'sync']] as Array<[string, string]>) {
      const { code, stdout } = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', p.prompt, '--max-new-tokens', '48', '--temperature', '0', '--draft', draft, '--speculation', mode, '--k', '4', '--json')
      expect(code, `${draft} ${mode}`).toBe(0)
      const out = JSON.parse(stdout)
      expect(out.tokens).toEqual(p.greedy_new_ids.slice(0, out.tokens.length))
      expect(out.tokens.length).toBeGreaterThan(0)
      expect(out.stats.decode.mode).toBe(mode)
      expect(out.stats.decode.proposed).toBeGreaterThan(0)
    }
  }, 30_000)

  it('streams text; the same seed gives the same text', async () => {
    const a = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'Lily', '--max-new-tokens', '30', '--temperature', '0.9', '--seed', '7')
    const b = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'Lily', '--max-new-tokens', '30', '--temperature', '0.9', '--seed', '7')
    expect(a.code).toBe(0)
    expect(a.stdout.startsWith('Lily')).toBe(true)
    expect(a.stdout).toBe(b.stdout)
  }, 30_000)

  it('--samples 3: three continuations at once, sample i what the SDK samples with seed + i', async () => {
    const { code, stdout } = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'Lily', '--max-new-tokens', '12', '--temperature', '0.9', '--seed', '7', '--samples', '3', '--json')
    expect(code).toBe(0)
    const out = JSON.parse(stdout)
    expect(out.samples).toHaveLength(3)
    const model = await LanguageModel.local(BUNDLED_MODEL)
    try {
      for (const [i, sample] of (out.samples as Array<{ tokens: number[] }>).entries()) {
        const gen = model.generate('Lily', { maxNewTokens: 12, temperature: 0.9, seed: 7 + i })
        let step = await gen.next()
        while (step.done !== true) step = await gen.next()
        expect(sample.tokens).toEqual(step.value.tokens)
      }
    } finally {
      await model.release()
    }
    const text = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'Lily', '--max-new-tokens', '4', '--samples', '2')
    expect(text.stdout.match(/^--- sample \d of 2 ---$/gm)).toHaveLength(2)
  }, 30_000)
})

/** Runs the CLI with `input` on stdin. */
async function cliWithInput (input: string, ...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  child.stdin.end(input)
  const code = await new Promise<number>(resolve => { child.on('close', (c) => { resolve(c ?? -1) }) })
  return { code, stdout, stderr }
}

describe('petal-node chat (local)', () => {
  const dir = chatModelCopy()
  afterAll(() => { rmSync(join(dir, '..'), { recursive: true, force: true }) })

  it('--json: one reply per line of stdin, as the SDK\'s conversation gives them', async () => {
    const turns = ['Lily went to the park.', '', 'What did she find?']
    const r = await cliWithInput(turns.join('\n') + '\n', 'chat', '--model', dir, '--system', 'Tell a story.', '--max-new-tokens', '10', '--temperature', '0', '--json')
    expect(r.code, r.stderr).toBe(0)
    const lines = r.stdout.trim().split('\n').map(l => JSON.parse(l))
    expect(lines).toHaveLength(2) // the empty line is no turn
    const model = await LanguageModel.local(dir)
    const conversation = await model.conversation({ system: 'Tell a story.' })
    for (const [i, turn] of ['Lily went to the park.', 'What did she find?'].entries()) {
      const stream = conversation.say(turn, { maxNewTokens: 10, temperature: 0 })
      let next = await stream.next()
      while (next.done !== true) next = await stream.next()
      expect(lines[i].tokens).toEqual(next.value.tokens)
      expect(lines[i].promptTokens).toEqual(next.value.promptTokens)
    }
    await conversation.close()
    await model.release()
  }, 30_000)

  it('streams each reply on its own line; a model without a chat template is refused', async () => {
    const r = await cliWithInput('Hello\n', 'chat', '--model', dir, '--max-new-tokens', '6', '--temperature', '0')
    expect(r.code).toBe(0)
    expect(r.stdout.trim().length).toBeGreaterThan(0)
    expect(r.stdout.endsWith('\n')).toBe(true) // the reply ends its line
    expect(r.stderr).toMatch(/6 tokens in .* sent \d+ new tokens/)
    // a small session: five turns still work, the oldest leaving the context
    const small = await cliWithInput('One.\nTwo.\nThree.\nFour.\nFive.\n', 'chat', '--model', dir, '--max-tokens', '64', '--max-new-tokens', '8', '--temperature', '0', '--json')
    expect(small.code, small.stderr).toBe(0)
    const turns = small.stdout.trim().split('\n').map(l => JSON.parse(l))
    expect(turns).toHaveLength(5)
    for (const t of turns) expect(t.tokens.length).toBeGreaterThan(0)
    const plain = await cliWithInput('Hello\n', 'chat', '--model', BUNDLED_MODEL)
    expect(plain.code).toBe(1)
    expect(plain.stderr.trim()).toMatch(/^petal-node: This model has no chat template/)
  }, 30_000)
})

describe('petal-node export-client', () => {
  it('writes the client parts and says what it wrote; generating locally from them is refused in one line', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'petal-cli-export-')), 'client')
    try {
      const r = await cli('export-client', '--model', BUNDLED_MODEL, '--out', out)
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/^wrote .*client: [\d.]+ MiB of client tensors \(the checkpoint's tensors: [\d.]+ MiB\), \d+ files copied, hashes of 5 blocks; model id stories260k\n$/)
      const local = await cli('generate', '--model', out, '--prompt', 'Once')
      expect(local.code).toBe(1)
      expect(local.stderr.trim().split('\n')).toHaveLength(1)
      expect(local.stderr).toMatch(/model\.layers\.0\..* is missing/)
    } finally {
      rmSync(join(out, '..'), { recursive: true, force: true })
    }
  }, 30_000)
})

describe('errors are one clear line and a non-zero exit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petal-cli-'))
  afterAll(() => { rmSync(dir, { recursive: true, force: true }) })

  it('a missing model folder', async () => {
    const r = await cli('generate', '--model', join(dir, 'nope'), '--prompt', 'x')
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/config\.json: cannot read config: file not found/)
  })

  it('an unsupported architecture, with --verbose adding the stack', async () => {
    const bad = join(dir, 'bad')
    cpSync(BUNDLED_MODEL, bad, { recursive: true })
    writeFileSync(join(bad, 'config.json'), JSON.stringify({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }))
    const r = await cli('forward', '--model', bad, '--ids', '1')
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/field "model_type" is not supported/)
    const v = await cli('forward', '--model', bad, '--ids', '1', '--verbose')
    expect(v.stderr).toMatch(/at /)
  })

  it('a bad flag value', async () => {
    const r = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'x', '--top-p', '7')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/--top-p must be a number >= 0 and <= 1/)
    const liveness = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'x', '--liveness', '2')
    expect(liveness.code).toBe(1)
    expect(liveness.stderr).toMatch(/--liveness 2: expected AFTER,TIMEOUT in seconds/)
    // commander's own usage errors name the subcommand's help, on the same line
    const unknown = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'x', '--frobnicate')
    expect(unknown.code).toBe(1)
    expect(unknown.stderr.trim().split('\n')).toEqual(["petal-node: unknown option '--frobnicate' (see petal-node generate --help)"])
  })

  it('api: a --listen that is no host:port', async () => {
    const r = await cli('api', '--model', BUNDLED_MODEL, '--listen', '8000')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/--listen must be host:port/)
  })

  it('serve --quantize with the cuda device (quantized blocks run on cpu and webgpu)', async () => {
    const r = await cli('serve', '--model', BUNDLED_MODEL, '--blocks', '0:5', '--quantize', 'int4', '--device', 'cuda')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/--quantize int4 runs on cpu and webgpu only/)
  })

  it('--quantize-client without a swarm', async () => {
    const r = await cli('generate', '--model', BUNDLED_MODEL, '--prompt', 'x', '--quantize-client', 'int8')
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/--quantize-client is for a swarm client: add --bootstrap/)
  })

  it('every command has --help', async () => {
    for (const cmd of ['serve', 'generate', 'chat', 'api', 'forward', 'export-client', 'status', 'demo']) {
      const r = await cli(cmd, '--help')
      expect(r.code).toBe(0)
      expect(r.stdout).toContain(`Usage: petal-node ${cmd}`)
    }
  }, 30_000)
})
