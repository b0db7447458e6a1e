/**
 * Local engine benchmark, CPU: prefill tokens/s, decode ms/token at context 16 and 256,
 * peak RSS, and the memory-bandwidth floor (weight bytes read per token / measured copy
 * bandwidth), for stories260k and a random ~200M-parameter Llama; plus the RSS of a server
 * holding blocks [0,2) against the whole model. One JSON line per figure.
 *
 *   npm run bench:local                      # full run (writes .cache/models/random-200m once)
 *   npm run bench:local -- --quick           # tiny smoke run (stories260k only), as CI does
 *   npm run bench:local -- --quantize int8,int4   # also each model with quantized blocks (metrics suffixed _int8, _int4),
 *                                            # and their outputs against float32's on stories260k's reference texts
 *
 * Each model is measured in a child process so that peak RSS is its own.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Checkpoint } from '../model/checkpoint.js'
import { ClientParts } from '../model/client-parts.js'
import { blockParameterCount } from '../model/config.js'
import { LocalModel } from '../model/local-model.js'
import { QUANT_BLOCK_SIZE, quantizationBits, type Quantization } from '../model/quantize.js'
import { SpanRunner } from '../model/span-runner.js'
import { logitsDivergence } from '../test/helpers/logits-divergence.js'
import { emit, median } from './lib/bench-output.js'
import { measureCopyBandwidth } from './lib/copy-bandwidth.js'
import { ensureRandomModel } from './lib/random-models.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'child-model': { type: 'string' },
    'child-span': { type: 'string' },
    'child-quality': { type: 'string' },
    'child-client': { type: 'string' },
    quantization: { type: 'string' },
    quantize: { type: 'string' },
    name: { type: 'string' },
    blocks: { type: 'string' },
    'decode-tokens': { type: 'string' },
    'prefill-tokens': { type: 'string' }
  }
})
const decodeTokens = Number(args['decode-tokens'] ?? (args.quick ? 8 : 32))
const prefillTokens = Number(args['prefill-tokens'] ?? (args.quick ? 32 : 128))

const quantization = (args.quantization ?? 'none') as Quantization
const quantizations = (args.quantize ?? '').split(',').filter(Boolean) as Quantization[]
for (const q of quantizations) if (!['int8', 'int4'].includes(q)) throw new RangeError(`Cannot --quantize ${q}: int8 and int4 are the formats`)

if (args['child-model'] !== undefined) await measureModel(args['child-model'], args.name ?? 'model')
else if (args['child-quality'] !== undefined) await measureQuality(args['child-quality'], args.name ?? 'model')
else if (args['child-client'] !== undefined) await measureClientParts(args['child-client'], args.name ?? 'model')
else if (args['child-span'] !== undefined) await measureSpanRss(args['child-span'], args.blocks ?? '0:2', args.name ?? 'model')
else await main()

async function main (): Promise<void> {
  const models: Array<[string, string]> = [['stories260k', join(ROOT, 'models', 'stories260k')]]
  if (!args.quick) models.push(['random-200m', ensureRandomModel('200M')])
  const bandwidth = Math.max(await measureCopyBandwidth(1), await measureCopyBandwidth(Math.min(2, availableParallelism())))
  emit({ model: 'machine', metric: 'copy_bandwidth', value: bandwidth / 1e9, unit: 'GB/s', config: { cores: availableParallelism() } })

  for (const [name, dir] of models) {
    for (const q of ['none', ...quantizations] as Quantization[]) {
      const suffix = q === 'none' ? '' : `_${q}`
      const lines = child(['--child-model', dir, '--name', name, '--quantization', q])
      const floorMs = (bytesPerToken(dir, q) / bandwidth) * 1000
      emit({ model: name, metric: `bandwidth_floor_ms_per_token${suffix}`, value: floorMs, unit: 'ms', config: { weightBytesPerToken: bytesPerToken(dir, q) } })
      const decode16 = lines.find(l => l.metric === `decode_ms_per_token_ctx16${suffix}`)?.value as number
      emit({ model: name, metric: `decode_ctx16_vs_floor${suffix}`, value: decode16 / floorMs, unit: 'x' })
    }
  }
  for (const q of quantizations) child(['--child-quality', join(ROOT, 'models', 'stories260k'), '--name', 'stories260k', '--quantization', q])
  // a swarm client's parts (embedding, LM head) in 8 bits (LanguageModel.swarm's clientQuantization)
  if (quantizations.includes('int8')) {
    for (const [name, dir] of models) for (const q of ['none', 'int8']) child(['--child-client', dir, '--name', name, '--quantization', q])
  }
  if (!args.quick) {
    const [name, dir] = models[1] as [string, string]
    const L = Checkpoint.open(dir).config.numLayers
    const span = child(['--child-span', dir, '--blocks', '0:2', '--name', name])[0]?.value as number
    const whole = child(['--child-span', dir, '--blocks', `0:${L}`, '--name', name])[0]?.value as number
    emit({ model: name, metric: 'span_rss_ratio_0_2_vs_all', value: span / whole, unit: 'x', config: { expected: 2 / L } })
    for (const q of quantizations) {
      const quantized = child(['--child-span', dir, '--blocks', `0:${L}`, '--name', name, '--quantization', q])[0]?.value as number
      emit({ model: name, metric: `span_rss_ratio_${q}_vs_float32`, value: quantized / whole, unit: 'x', config: { blocks: `0:${L}` } })
    }
  }
}

/**
 * Bytes of weights one decode step reads: every block (quantized: per block of 32 values, the
 * codes, a float32 scale and a zero point; norms counted as codes too, a slight undercount)
 * plus the LM head and final norm (float32).
 */
function bytesPerToken (dir: string, q: Quantization = 'none'): number {
  const cfg = Checkpoint.open(dir).config
  const perParam = q === 'none' ? 4 : (QUANT_BLOCK_SIZE * quantizationBits(q) / 8 + 4 + quantizationBits(q) / 8) / QUANT_BLOCK_SIZE
  return perParam * cfg.numLayers * blockParameterCount(cfg) + 4 * (cfg.vocabSize * cfg.hiddenSize + cfg.hiddenSize)
}

/** Runs this script in a child process, echoes and returns its JSON lines. */
function child (extra: string[]): Array<{ metric: string, value: number }> {
  // --expose-gc: RSS figures are taken after a collection (loading leaves float32 copies behind)
  const out = execFileSync(process.execPath, [...process.execArgv, '--expose-gc', fileURLToPath(import.meta.url), ...extra,
    '--decode-tokens', String(decodeTokens), '--prefill-tokens', String(prefillTokens)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  process.stdout.write(out)
  return out.trim().split('\n').filter(Boolean).map(l => JSON.parse(l))
}

async function measureModel (dir: string, name: string): Promise<void> {
  const suffix = quantization === 'none' ? '' : `_${quantization}`
  const report = (fields: Parameters<typeof emit>[0]): void => { emit({ ...fields, metric: fields.metric + suffix, ...(suffix !== '' ? { quantization } : {}) }) }
  const t0 = performance.now()
  const model = await LocalModel.load(Checkpoint.open(dir), { quantization })
  report({ model: name, metric: 'load_seconds', value: (performance.now() - t0) / 1000, unit: 's' })
  const V = model.parts.config.vocabSize
  const ids = (n: number, salt: number): number[] => Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + salt) % (V - 3)))

  await model.newSession().forward(ids(8, 0)) // warm-up
  const prefill: number[] = []
  for (let r = 0; r < 3; r++) {
    const t = performance.now()
    await model.newSession().forward(ids(prefillTokens, r))
    prefill.push(prefillTokens / ((performance.now() - t) / 1000))
  }
  report({ model: name, metric: 'prefill_tokens_per_second', value: median(prefill), unit: 'tokens/s', config: { tokens: prefillTokens } })

  for (const ctx of [16, 256]) {
    const seq = model.newSession()
    await seq.forward(ids(ctx, 1))
    await seq.forward(ids(2, 2)) // warm-up at this context
    const times: number[] = []
    for (let i = 0; i < decodeTokens; i++) {
      const t = performance.now()
      await seq.forward(ids(1, i)) // embedding + every block + LM head, one token
      times.push(performance.now() - t)
    }
    report({ model: name, metric: `decode_ms_per_token_ctx${ctx}`, value: median(times), unit: 'ms', config: { tokens: decodeTokens } })
  }
  report({ model: name, metric: 'peak_rss_mb', value: process.resourceUsage().maxRSS / 1024, unit: 'MiB' })
  await model.release()
}

/** RSS once blocks [a, b) are loaded the way a server loads them, less the process's RSS before. */
async function measureSpanRss (dir: string, blocks: string, name: string): Promise<void> {
  const [a, b] = blocks.split(':').map(Number) as [number, number]
  const before = process.memoryUsage().rss
  const runner = await SpanRunner.load(Checkpoint.open(dir), a, b, { quantization })
  globalThis.gc?.()
  await new Promise(resolve => setTimeout(resolve, 500)) // V8 frees array buffers' memory after the collection, on another thread
  const after = process.memoryUsage().rss
  emit({ model: name, metric: `span_rss_mb_blocks_${a}_${b}${quantization === 'none' ? '' : `_${quantization}`}`, value: (after - before) / 2 ** 20, unit: 'MiB' })
  await runner.release()
}


/**
 * Quantized blocks against float32 on the checkpoint's reference texts (reference.json: each
 * prompt and its greedy continuation, teacher-forced): mean KL(float || quantized) per
 * position, and how often the two argmaxes agree.
 */
async function measureQuality (dir: string, name: string): Promise<void> {
  const ckpt = Checkpoint.open(dir)
  const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as { prompts: Array<{ prompt_ids: number[], greedy_new_ids: number[] }> }
  const float = await LocalModel.load(ckpt)
  const quantized = await LocalModel.load(ckpt, { quantization })
  let kl = 0
  let agree = 0
  let positions = 0
  for (const p of reference.prompts) {
    const ids = [...p.prompt_ids, ...p.greedy_new_ids]
    const d = logitsDivergence(await float.newSession().forward(ids), await quantized.newSession().forward(ids))
    kl += d.kl * ids.length
    agree += d.agree * ids.length
    positions += ids.length
  }
  const config = { positions, text: 'reference.json prompts and greedy continuations' }
  emit({ model: name, metric: `kl_vs_float32_${quantization}`, value: kl / positions, unit: 'nats', config })
  emit({ model: name, metric: `top1_agreement_vs_float32_${quantization}`, value: agree / positions, unit: 'fraction', config })
  await Promise.all([float.release(), quantized.release()])
}

/** A client's embedding and LM head as ClientParts loads them: RSS growth, and the head's time for one token. */
async function measureClientParts (dir: string, name: string): Promise<void> {
  const suffix = quantization === 'none' ? '' : `_${quantization}`
  const before = process.memoryUsage().rss
  const parts = await ClientParts.load(Checkpoint.open(dir), { quantization: quantization === 'int8' ? 'int8' : 'none' })
  globalThis.gc?.()
  await new Promise(resolve => setTimeout(resolve, 500)) // V8 frees array buffers' memory after the collection, on another thread
  emit({ model: name, metric: `client_parts_rss_mb${suffix}`, value: (process.memoryUsage().rss - before) / 2 ** 20, unit: 'MiB' })
  const hidden = parts.embed([1]) // (1,1,C)
  for (let i = 0; i < 4; i++) await parts.logits(hidden) // warm-up
  const times: number[] = []
  for (let i = 0; i < decodeTokens; i++) {
    const t = performance.now()
    await parts.logits(hidden)
    times.push(performance.now() - t)
  }
  emit({ model: name, metric: `client_head_ms${suffix}`, value: median(times), unit: 'ms', config: { tokens: decodeTokens } })
  await parts.release()
}
