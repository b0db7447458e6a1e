/**
 * Petal's model engine on a GPU through onnxruntime-node's bundled WebGPU execution provider
 * (Dawn over Vulkan on Linux): which backends this build has, parity of the WebGPU path
 * against the transformers references, and prefill / decode speed on webgpu vs cpu for a
 * random ~200M Llama. Meant to be bundled into one file (scripts/gpu/build.sh) and run on a
 * machine with no Node.js install; one JSON line per figure on stdout.
 *
 *   node gpu-check.mjs backends
 *   node gpu-check.mjs parity --device webgpu --model stories260k=models/stories260k --model tiny-llama-gqa=DIR
 *   node gpu-check.mjs write-random --out /tmp/random-200m --size 200M --tokenizer-from models/stories260k
 *   node gpu-check.mjs bench --device webgpu --dir /tmp/random-200m --name random-200m [--steps 16] [--prefill 128]
 *   node gpu-check.mjs write-random --out /tmp/q3 --size 20M --model-type qwen3 --tokenizer-from models/stories260k
 *   node gpu-check.mjs agree --device webgpu --dir /tmp/q3 --name qwen3-20m    # the device's logits against cpu's
 *   node gpu-check.mjs pack --device webgpu --dir /tmp/random-200m --name random-200m [--steps 16]   # batched decode on the GPU span path
 *   node gpu-check.mjs transient --device webgpu --dir /tmp/random-200m --name random-200m      # lone decode around batches
 *
 * --quantize int8|int4 holds the blocks quantized (bench, agree, pack); bench then also reads the
 * GPU's used memory from nvidia-smi.
 *
 * PETAL_ORT_SEVERITY=0..4 overrides every session's logSeverityLevel (0 = verbose: ORT then
 * logs which execution provider each node was placed on). PETAL_WEBGPU_OPTS='{"validationMode":"disabled"}'
 * replaces the plain 'webgpu' provider name with {name: 'webgpu', ...opts}.
 */
import { execFileSync } from 'node:child_process'
import { availableParallelism, cpus } from 'node:os'
import { parseArgs } from 'node:util'
import * as ort from 'onnxruntime-node'
import onnxProto from 'onnx-proto'
import { Checkpoint } from '../../model/checkpoint.js'
import { LocalModel } from '../../model/local-model.js'
import { createOrtSession, type Device } from '../../model/ort-session.js'
import type { Quantization } from '../../model/quantize.js'
import { GraphBuilder } from '../../model/onnx/graph-builder.js'
import type { SpanCache } from '../../model/kv-cache.js'
import { SpanRunner } from '../../model/span-runner.js'
import { pathTo } from '../../model/token-tree.js'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    device: { type: 'string', default: 'webgpu' },
    model: { type: 'string', multiple: true },
    out: { type: 'string' },
    size: { type: 'string', default: '200M' },
    'tokenizer-from': { type: 'string', default: 'models/stories260k' },
    dir: { type: 'string' },
    name: { type: 'string', default: 'model' },
    steps: { type: 'string', default: '16' },
    prefill: { type: 'string', default: '128' },
    label: { type: 'string' },
    'blocks-per-graph': { type: 'string' },
    'decode-only-ctx': { type: 'string' },
    'model-type': { type: 'string', default: 'llama' },
    quantize: { type: 'string', default: 'none' }
  }
})

const quantization = args.quantize as Quantization

/** The GPU memory in use (all processes), from nvidia-smi; undefined without one. */
function gpuMemoryUsedMiB (): number | undefined {
  try {
    return Number(execFileSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8' }).split('\n')[0])
  } catch {
    return undefined
  }
}

function emit (fields: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ ...fields, ...(args.label !== undefined ? { label: args.label } : {}) }) + '\n')
}

function median (xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

function argmax (row: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i
  return best
}

function maxAbsDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number))
    if (Number.isNaN(d)) return Number.NaN
    m = Math.max(m, d)
  }
  return m
}

/** Lets the environment raise ORT's log level and pass WebGPU EP options, without touching model/. */
function patchSessionCreate (): void {
  const sev = process.env.PETAL_ORT_SEVERITY
  const gpuOpts = process.env.PETAL_WEBGPU_OPTS
  const profile = process.env.PETAL_ORT_PROFILE
  const gemmToMatMul = process.env.PETAL_GEMM_TO_MATMUL === '1'
  if (sev === undefined && gpuOpts === undefined && profile === undefined && !gemmToMatMul) return
  if (sev !== undefined) ort.env.logLevel = (['verbose', 'info', 'warning', 'error', 'fatal'] as const)[Number(sev)] ?? 'warning'
  const IS = ort.InferenceSession as unknown as { create: (model: unknown, options?: ort.InferenceSession.SessionOptions) => Promise<ort.InferenceSession> }
  const original = IS.create.bind(IS)
  IS.create = async (model: unknown, options?: ort.InferenceSession.SessionOptions) => {
    const o: ort.InferenceSession.SessionOptions = { ...(options ?? {}) }
    if (sev !== undefined) { o.logSeverityLevel = Number(sev) as 0; o.logVerbosityLevel = 0 }
    if (gpuOpts !== undefined && o.executionProviders !== undefined) {
      o.executionProviders = o.executionProviders.map(p => p === 'webgpu' ? { name: 'webgpu', ...JSON.parse(gpuOpts) } : p)
    }
    if (profile !== undefined) {
      const extra = (o.extra ?? {}) as Record<string, Record<string, unknown>>
      o.extra = { ...extra, session: { ...(extra.session ?? {}), enable_profiling: profile } }
    }
    return await original(gemmToMatMul && model instanceof Uint8Array ? rewriteGemmAsMatMul(model) : model, o)
  }
}

/**
 * Experiment: every Gemm(x, W, transB=1) whose W is an initializer becomes MatMul(x, W^T) with
 * W^T stored (in, out), to compare the WebGPU EP's Gemm and MatMul kernels. Same function.
 */
function rewriteGemmAsMatMul (bytes: Uint8Array): Uint8Array {
  const { onnx } = onnxProto
  const model = onnx.ModelProto.decode(bytes)
  const graph = model.graph!
  const inits = new Map((graph.initializer ?? []).map(t => [t.name!, t]))
  let n = 0
  for (const node of graph.node ?? []) {
    if (node.opType !== 'Gemm' || (node.input ?? []).length !== 2) continue
    const attrs = new Map((node.attribute ?? []).map(a => [a.name!, a]))
    if (Number(attrs.get('transB')?.i ?? 0) !== 1 || Number(attrs.get('transA')?.i ?? 0) !== 0) continue
    if (attrs.has('alpha') && attrs.get('alpha')!.f !== 1) continue
    const w = inits.get(node.input![1]!)
    if (w === undefined || w.rawData === undefined || w.rawData === null || (w.dims ?? []).length !== 2) continue
    const [rows, cols] = (w.dims as Array<number | { toNumber: () => number }>).map(d => typeof d === 'number' ? d : d.toNumber()) as [number, number]
    const raw = w.rawData
    const src = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))
    const dst = new Float32Array(src.length)
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c] as number
    w.rawData = new Uint8Array(dst.buffer)
    w.dims = [cols, rows]
    node.opType = 'MatMul'
    node.attribute = []
    n++
  }
  rewrites += n
  return onnx.ModelProto.encode(model).finish()
}
let rewrites = 0

async function greedy (model: LocalModel, promptIds: readonly number[], n: number): Promise<number[]> {
  const seq = model.newSession()
  let logits = (await seq.forward(promptIds)).at(-1) as Float32Array
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    out.push(argmax(logits))
    logits = (await seq.forward([out.at(-1) as number]))[0] as Float32Array
  }
  return out
}

/**
 * A checkpoint without a transformers reference (a random Qwen2 or Qwen3): the device's logits
 * at every position of a 40-token prompt, and its greedy continuation, against the CPU's.
 */
async function agree (device: Device, dir: string, name: string): Promise<void> {
  const ckpt = Checkpoint.open(dir)
  const [cpu, dev] = [await LocalModel.load(ckpt, { quantization }), await LocalModel.load(ckpt, { device, quantization })]
  const ids = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % ckpt.config.vocabSize)
  const [want, got] = [await cpu.newSession().forward(ids), await dev.newSession().forward(ids)]
  const worst = (a: Float32Array[], b: Float32Array[]): number => a.reduce((m, row, t) => Math.max(m, maxAbsDiff(row, b[t] as Float32Array)), 0)
  const [greedyCpu, greedyDev] = [await greedy(cpu, ids, 16), await greedy(dev, ids, 16)]
  // quantized: how far each is from the float32 model's logits
  const exact = quantization === 'none' ? undefined : await LocalModel.load(ckpt)
  const floats = exact === undefined ? undefined : await exact.newSession().forward(ids)
  emit({
    model: name, device, metric: 'agree_with_cpu', modelType: ckpt.config.modelType, quantization, positions: ids.length, max_abs_diff: worst(got, want),
    greedy_identical: greedyCpu.every((t, k) => t === greedyDev[k]),
    ...(floats !== undefined ? { cpu_vs_float32: worst(want, floats), device_vs_float32: worst(got, floats), logit_range: Math.max(...floats.map(r => Math.max(...r.map(Math.abs)))) } : {})
  })
  await Promise.all([cpu.release(), dev.release(), exact?.release()])
}

async function parity (device: Device, specs: string[]): Promise<void> {
  for (const spec of specs) {
    const [name, dir] = spec.split('=') as [string, string]
    const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'))
    const t0 = performance.now()
    let model: LocalModel
    try {
      model = await LocalModel.load(Checkpoint.open(dir), { device })
    } catch (err) {
      emit({ model: name, device, metric: 'load_error', error: String((err as Error)?.stack ?? err) })
      continue
    }
    emit({ model: name, device, metric: 'load_seconds', value: (performance.now() - t0) / 1000 })
    try {
      if (Array.isArray(ref.prompts)) {
        // stories260k: last prompt logits of each prompt + greedy continuation
        for (const [i, p] of (ref.prompts as Array<{ prompt: string, prompt_ids: number[], greedy_new_ids: number[], last_prompt_logits: number[] }>).entries()) {
          const logits = await model.newSession().forward(p.prompt_ids)
          const diff = maxAbsDiff(logits.at(-1) as Float32Array, p.last_prompt_logits)
          const got = await greedy(model, p.prompt_ids, p.greedy_new_ids.length)
          const firstMismatch = got.findIndex((t, k) => t !== p.greedy_new_ids[k])
          emit({ model: name, device, metric: 'parity_last_prompt_logits', prompt: i, max_abs_diff: diff, greedy_identical: firstMismatch < 0, greedy_first_mismatch: firstMismatch, greedy_tokens: got.length })
        }
      } else {
        const logits = await model.newSession().forward(ref.input_ids)
        let diff = 0
        for (let t = 0; t < logits.length; t++) diff = Math.max(diff, maxAbsDiff(logits[t] as Float32Array, ref.logits[t]))
        if (logits.length !== ref.logits.length) throw new Error(`row count ${logits.length} vs ${ref.logits.length}`)
        const got = await greedy(model, ref.input_ids, ref.greedy_new_ids.length)
        const firstMismatch = got.findIndex((t: number, k: number) => t !== ref.greedy_new_ids[k])
        const [first, second] = ref.kv_cache_check.chunks as [number[], number[]]
        const seq = model.newSession()
        const chunked = [...await seq.forward(first), ...await seq.forward(second)]
        let chunkDiff = 0
        for (let t = 0; t < chunked.length; t++) chunkDiff = Math.max(chunkDiff, maxAbsDiff(chunked[t] as Float32Array, ref.kv_cache_check.logits[t]))
        emit({ model: name, device, metric: 'parity_all_position_logits', positions: logits.length, max_abs_diff: diff, chunked_kv_max_abs_diff: chunkDiff, greedy_identical: firstMismatch < 0, greedy_first_mismatch: firstMismatch, greedy_tokens: got.length })
        // token-tree runs (tree speculation): every row equals a chain run over its own path
        const input = ref.input_ids as number[]
        const prefix = input.slice(0, 5)
        const tokens = [input[5], input[6], input[7], input[8], 17, 23, 29, 31] as number[]
        const parents = [-1, 0, 1, 2, 0, 4, 1, -1]
        const treeSeq = model.newSession()
        await treeSeq.forward(prefix, 0)
        const rows = await treeSeq.forward(tokens, 5, parents)
        let treeDiff = 0
        for (let r = 0; r < tokens.length; r++) {
          const path = pathTo(parents, r).map(i => tokens[i] as number)
          const chain = await model.newSession().forward([...prefix, ...path], 0)
          treeDiff = Math.max(treeDiff, maxAbsDiff(rows[r] as Float32Array, Array.from(chain.at(-1) as Float32Array)))
        }
        const after = await treeSeq.forward(input.slice(9), 9) // the cache holds the trunk only
        let afterDiff = 0
        for (let t = 0; t < after.length; t++) afterDiff = Math.max(afterDiff, maxAbsDiff(after[t] as Float32Array, ref.logits[9 + t]))
        emit({ model: name, device, metric: 'parity_token_tree', rows: tokens.length, max_abs_diff_vs_chain: treeDiff, next_run_max_abs_diff_vs_reference: afterDiff })
        // a sequence that adopts another's prefix (on the GPU path: the same device tensors) goes
        // on as the reference, though the source then rolls back and grows
        const source = model.newSession()
        await source.forward(input.slice(0, 9), 0)
        const copy = model.newSession()
        copy.copyPrefix(source, 6)
        await source.forward([3, 5, 7], 4)
        const adopted = await copy.forward(input.slice(6), 6)
        let adoptDiff = 0
        for (let t = 0; t < adopted.length; t++) adoptDiff = Math.max(adoptDiff, maxAbsDiff(adopted[t] as Float32Array, ref.logits[6 + t]))
        emit({ model: name, device, metric: 'parity_adopted_prefix', positions: adopted.length, max_abs_diff_vs_reference: adoptDiff })
      }
    } catch (err) {
      emit({ model: name, device, metric: 'run_error', error: String((err as Error)?.stack ?? err) })
    }
    if (rewrites > 0) emit({ model: name, device, metric: 'gemm_rewritten_as_matmul', value: rewrites })
    rewrites = 0
    await model.release()
  }
}

async function bench (device: Device, dir: string, name: string, steps: number, prefillTokens: number): Promise<void> {
  const t0 = performance.now()
  const bpg = args['blocks-per-graph'] !== undefined ? Number(args['blocks-per-graph']) : undefined
  const model = await LocalModel.load(Checkpoint.open(dir), { device, quantization, ...(bpg !== undefined ? { blocksPerGraph: bpg } : {}) })
  const cfg = model.parts.config
  emit({ model: name, device, metric: 'load_seconds', value: (performance.now() - t0) / 1000, config: { L: cfg.numLayers, C: cfg.hiddenSize, V: cfg.vocabSize }, cores: availableParallelism(), cpu: cpus()[0]?.model })
  const V = cfg.vocabSize
  const ids = (n: number, salt: number): number[] => Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + salt) % (V - 3)))

  await model.newSession().forward(ids(8, 0))
  await model.newSession().forward(ids(prefillTokens, 99)) // warm-up at the measured shape (shader compiles)
  const prefill: number[] = []
  for (let r = 0; r < 5; r++) {
    const t = performance.now()
    await model.newSession().forward(ids(prefillTokens, r))
    prefill.push(performance.now() - t)
  }
  emit({ model: name, device, metric: 'prefill_tokens_per_second', value: prefillTokens / (median(prefill) / 1000), unit: 'tokens/s', tokens: prefillTokens, runs_ms: prefill.map(x => +x.toFixed(2)) })

  for (const ctx of [16, 256]) {
    const seq = model.newSession()
    await seq.forward(ids(ctx, 1))
    for (let w = 0; w < 3; w++) await seq.forward(ids(1, 1000 + w)) // warm-up at this context
    const times: number[] = []
    const blocks: number[] = []
    const head: number[] = []
    for (let i = 0; i < steps; i++) {
      const t = performance.now()
      const h = await seq.hidden(ids(1, i)) // embedding + every block
      const t1 = performance.now()
      await model.parts.logits(h) // final norm + LM head
      const t2 = performance.now()
      times.push(t2 - t); blocks.push(t1 - t); head.push(t2 - t1)
    }
    emit({ model: name, device, metric: `decode_ms_per_token_ctx${ctx}`, value: median(times), unit: 'ms', steps, min: Math.min(...times), max: Math.max(...times), blocks_ms: median(blocks), head_ms: median(head), blocks_per_graph: bpg ?? 1 })
  }
  if (rewrites > 0) emit({ model: name, device, metric: 'gemm_rewritten_as_matmul', value: rewrites })
  rewrites = 0
  emit({ model: name, device, metric: 'peak_rss_mb', value: process.resourceUsage().maxRSS / 1024, unit: 'MiB', quantization })
  const gpuMiB = gpuMemoryUsedMiB()
  if (gpuMiB !== undefined) emit({ model: name, device, metric: 'gpu_memory_used_mib', value: gpuMiB, unit: 'MiB', quantization })
  await model.release()
}

/**
 * Batched decode on the GPU span path (GpuSpanRunner.forwardPacked): n sessions' decode steps
 * as one packed run against the same steps one session after another, over every block of
 * the model at a 128-token context; each packed output checked against the lone run's.
 */
async function pack (device: Device, dir: string, name: string, steps: number): Promise<void> {
  const ckpt = Checkpoint.open(dir)
  const cfg = ckpt.config
  const C = cfg.hiddenSize
  const t0 = performance.now()
  const runner = await SpanRunner.load(ckpt, 0, cfg.numLayers, { device, packLimit: 8, quantization })
  emit({ model: name, device, metric: 'pack_load_seconds', value: (performance.now() - t0) / 1000, config: { L: cfg.numLayers, C } })
  const rows = (n: number, salt: number): Float32Array => Float32Array.from({ length: n * C }, (_, i) => Math.sin(i * 0.37 + salt))
  const CONTEXT = 128
  for (const n of [1, 2, 4, 8]) {
    const packed = Array.from({ length: n }, () => runner.newCache())
    const alone = Array.from({ length: n }, () => runner.newCache())
    for (const [i, c] of [...packed, ...alone].entries()) await runner.forward(rows(CONTEXT, i % n), c, 0)
    const items = (step: number): Array<{ hidden: Float32Array, cache: SpanCache, position: number }> => packed.map((cache, i) => ({ hidden: rows(1, 1000 * step + i), cache, position: cache.length }))
    for (let w = 0; w < 3; w++) { await runner.forwardPacked(items(-1 - w)); for (const c of packed) c.truncate(CONTEXT) } // warm-up (shader compiles)
    const packedMs: number[] = []
    const aloneMs: number[] = []
    let maxDiff = 0
    for (let step = 0; step < steps; step++) {
      const its = items(step)
      let t = performance.now()
      const outs = await runner.forwardPacked(its)
      packedMs.push(performance.now() - t)
      t = performance.now()
      const wants: Float32Array[] = []
      for (const [i, it] of its.entries()) wants.push(await runner.forward(it.hidden, alone[i] as SpanCache, it.position))
      aloneMs.push(performance.now() - t)
      for (const [i, want] of wants.entries()) for (let j = 0; j < want.length; j++) maxDiff = Math.max(maxDiff, Math.abs((outs[i] as Float32Array)[j] as number - (want[j] as number)))
    }
    const config = { sessions: n, context: CONTEXT, steps }
    emit({ model: name, device, metric: `pack_step_ms_sessions${n}`, value: median(packedMs), unit: 'ms', min: Math.min(...packedMs), config })
    emit({ model: name, device, metric: `alone_steps_ms_sessions${n}`, value: median(aloneMs), unit: 'ms', min: Math.min(...aloneMs), config })
    emit({ model: name, device, metric: `pack_gain_sessions${n}`, value: median(aloneMs) / median(packedMs), unit: 'x', config })
    emit({ model: name, device, metric: `pack_max_abs_diff_sessions${n}`, value: maxDiff, config })
    for (const c of [...packed, ...alone]) c.dispose()
    // what the span graph alone costs for such a step: one session's n rows over n contexts' columns
    const one = runner.newCache()
    await runner.forward(rows(n * CONTEXT, 7), one, 0)
    for (let w = 0; w < 3; w++) await runner.forward(rows(n, 50 + w), one, n * CONTEXT)
    const rowsMs: number[] = []
    for (let step = 0; step < steps; step++) {
      const t = performance.now()
      await runner.forward(rows(n, 100 + step), one, n * CONTEXT)
      rowsMs.push(performance.now() - t)
    }
    emit({ model: name, device, metric: `lone_rows${n}_ms_context${n * CONTEXT}`, value: median(rowsMs), unit: 'ms', min: Math.min(...rowsMs), config })
    one.dispose()
  }
  // a lone session's decode on this runner (after its batches) and on a fresh one that cannot pack, in turn, 4 rounds each
  const plain = await SpanRunner.load(ckpt, 0, cfg.numLayers, { device, packLimit: 1, quantization })
  const lone = new Map<SpanRunner, number[]>([[runner, []], [plain, []]])
  for (let round = 0; round < 4; round++) {
    for (const r of round % 2 === 0 ? [runner, plain] : [plain, runner]) {
      const cache = r.newCache()
      await r.forward(rows(CONTEXT, 3), cache, 0)
      for (let w = 0; w < 3; w++) await r.forward(rows(1, 60 + w), cache, CONTEXT)
      const times: number[] = []
      for (let step = 0; step < steps; step++) {
        const t = performance.now()
        await r.forward(rows(1, 300 + step), cache, CONTEXT + (step % 2)) // decode and roll back, as speculation does
        times.push(performance.now() - t)
      }
      lone.get(r)?.push(median(times))
      cache.dispose()
    }
  }
  for (const [r, medians] of lone) emit({ model: name, device, metric: `lone_decode_ms_pack_limit${r.packLimit}`, value: median(medians), unit: 'ms', rounds: medians.map(m => +m.toFixed(2)), config: { context: CONTEXT, steps } })
  await plain.release()
  await runner.release()
}

/**
 * Whether lone decode slows down after batches, and whose state that is: runner A decodes
 * alone, runs 8 sessions' batches, then decodes alone again, round by round; a runner B that
 * never batches decodes alone between A's rounds. Median ms of each round of 16 steps.
 */
async function transient (device: Device, dir: string, name: string): Promise<void> {
  const ckpt = Checkpoint.open(dir)
  const cfg = ckpt.config
  const C = cfg.hiddenSize
  const rows = (n: number, salt: number): Float32Array => Float32Array.from({ length: n * C }, (_, i) => Math.sin(i * 0.37 + salt))
  const a = await SpanRunner.load(ckpt, 0, cfg.numLayers, { device, packLimit: 8, quantization })
  const b = await SpanRunner.load(ckpt, 0, cfg.numLayers, { device, packLimit: 1, quantization })
  const lone = async (r: SpanRunner): Promise<number> => {
    const cache = r.newCache()
    await r.forward(rows(128, 3), cache, 0)
    const times: number[] = []
    for (let step = 0; step < 16; step++) {
      const t = performance.now()
      await r.forward(rows(1, 300 + step), cache, 128 + (step % 2))
      times.push(performance.now() - t)
    }
    cache.dispose()
    return median(times)
  }
  const batches = async (): Promise<void> => {
    const caches = Array.from({ length: 8 }, () => a.newCache())
    for (const [i, c] of caches.entries()) await a.forward(rows(128, i), c, 0)
    for (let step = 0; step < 32; step++) await a.forwardPacked(caches.map((cache, i) => ({ hidden: rows(1, 1000 * step + i), cache, position: cache.length })))
    for (const c of caches) c.dispose()
    // diagnosis: with node --expose-gc and PETAL_GC_AFTER_BATCHES=1, collect the batches' garbage now
    if (process.env.PETAL_GC_AFTER_BATCHES === '1') (globalThis as { gc?: () => void }).gc?.()
  }
  const sequence: Array<[string, () => Promise<number | void>]> = [
    ['a', async () => await lone(a)], ['b', async () => await lone(b)], ['a', async () => await lone(a)], ['b', async () => await lone(b)],
    ['batches', batches],
    ['a', async () => await lone(a)], ['b', async () => await lone(b)], ['a', async () => await lone(a)], ['b', async () => await lone(b)],
    ['batches', batches],
    ['b', async () => await lone(b)], ['a', async () => await lone(a)], ['b', async () => await lone(b)], ['a', async () => await lone(a)]
  ]
  const out: string[] = []
  for (const [label, step] of sequence) {
    const ms = await step()
    out.push(ms === undefined ? label : `${label} ${ms.toFixed(2)}`)
  }
  emit({ model: name, device, metric: 'lone_decode_rounds_around_batches', value: out.join(' | '), unit: 'ms (median of 16 steps each)' })
  await a.release()
  await b.release()
}

/** Sums ORT profile events (chrome trace JSON files in `dir`) by category, provider and op. */
function profileSummary (dir: string): void {
  const files = readdirSync(dir).filter(f => f.endsWith('.json'))
  const sums = new Map<string, { us: number, n: number }>()
  for (const f of files) {
    let events: Array<{ cat?: string, name?: string, dur?: number, args?: Record<string, unknown> }>
    try { events = JSON.parse(readFileSync(join(dir, f), 'utf8')) } catch { continue }
    for (const e of events) {
      const a = e.args ?? {}
      const op = String(a.op_name ?? (e.cat === 'Node' ? '?' : (e.name ?? '?').replace(/_\d+$/, '').slice(0, 60)))
      const phase = e.cat === 'Node' ? String(e.name ?? '').replace(/^.*_(kernel_time|fence_before|fence_after)$/, '$1') : ''
      const key = `${e.cat}|${String(a.provider ?? '')}|${op}|${phase}`
      const s = sums.get(key) ?? { us: 0, n: 0 }
      s.us += e.dur ?? 0; s.n += 1
      sums.set(key, s)
    }
  }
  const rows = [...sums.entries()].sort((x, y) => y[1].us - x[1].us).slice(0, 60)
  emit({ metric: 'profile_files', value: files.length })
  for (const [k, v] of rows) emit({ metric: 'profile', key: k, total_ms: +(v.us / 1000).toFixed(3), count: v.n })
}

/** A graph of `n` independent y_i = x_i + 1 over (1, size) floats. */
function addGraph (n: number, size: number): Uint8Array {
  const g = new GraphBuilder()
  const one = g.floats('one', new Float32Array(size).fill(1), [1, size])
  for (let i = 0; i < n; i++) {
    const x = g.input(`x${i}`, 'float32', [1, size])
    g.rename(g.op('Add', [x, one]), `y${i}`)
    g.output(`y${i}`, 'float32', [1, size])
  }
  return g.build('latency')
}

/**
 * What one session.run costs when it does almost nothing: n inputs uploaded, n outputs read
 * back; then, on webgpu, 13 runs chained with outputs left on the GPU (preferredOutputLocation
 * 'gpu-buffer') and one read at the end, as a model would if hidden states and caches stayed there.
 */
async function latency (device: Device): Promise<void> {
  for (const [n, size] of [[1, 1024], [3, 1024], [1, 262144], [3, 262144]] as const) {
    const session = await createOrtSession(addGraph(n, size), { device })
    const feeds: Record<string, ort.Tensor> = {}
    for (let i = 0; i < n; i++) feeds[`x${i}`] = new ort.Tensor('float32', new Float32Array(size).fill(i), [1, size])
    for (let w = 0; w < 5; w++) await session.run(feeds)
    const times: number[] = []
    for (let r = 0; r < 50; r++) {
      const t = performance.now()
      const out = await session.run(feeds)
      times.push(performance.now() - t)
      if (r === 0 && (out.y0!.data as Float32Array)[0] !== 1) throw new Error('wrong result')
    }
    emit({ device, metric: 'run_latency_ms', value: median(times), inputs: n, outputs: n, floats_each: size, min: Math.min(...times) })
    await session.release()
  }
  if (device !== 'webgpu') return
  const step = (m: string): void => { process.stderr.write(`[gpu-buffer] ${m}\n`) }
  try {
    step('create session with preferredOutputLocation gpu-buffer')
    const session = await ort.InferenceSession.create(addGraph(1, 1024), { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' })
    const x0 = new ort.Tensor('float32', new Float32Array(1024), [1, 1024])
    step('run with a cpu input')
    const first = (await session.run({ x0 })).y0!
    step(`output location=${first.location} type=${first.type} dims=${first.dims.join('x')}`)
    const plain = await ort.InferenceSession.create(addGraph(1, 1024), { executionProviders: ['webgpu'] })
    step('feed the gpu-buffer output back as input (gpu-buffer out)')
    const second = (await session.run({ x0: first })).y0!
    step(`second run ok, location=${second.location}`)
    step('feed a gpu-buffer output to a session with cpu outputs')
    const third = (await plain.run({ x0: second })).y0!
    step(`third run ok, location=${third.location}, value=${(third.data as Float32Array)[0]} (want 3)`)
    const chain = async (): Promise<number> => {
      let x: ort.Tensor = x0
      const made: ort.Tensor[] = []
      for (let k = 0; k < 12; k++) { x = (await session.run({ x0: x })).y0!; made.push(x) }
      const v = (await plain.run({ x0: x })).y0!.data as Float32Array // 13th run reads back to the CPU
      return v[0] as number
    }
    step('chain of 13')
    if (await chain() !== 13) throw new Error('chained result wrong')
    const times: number[] = []
    for (let r = 0; r < 20; r++) { const t = performance.now(); await chain(); times.push(performance.now() - t) }
    emit({ device, metric: 'chain13_gpu_resident_ms', value: median(times), per_run_ms: median(times) / 13, location: 'gpu-buffer', note: '12 runs gpu-buffer -> gpu-buffer, 13th to cpu; getData() on a gpu-buffer tensor aborts the process' })
    await session.release()
  } catch (err) {
    emit({ device, metric: 'chain13_gpu_resident_error', error: String((err as Error)?.stack ?? err) })
  }
}

patchSessionCreate()
const mode = positionals[0] ?? 'backends'
const device = args.device as Device
if (mode === 'backends') {
  emit({ metric: 'backends', value: ort.listSupportedBackends(), node: process.version })
} else if (mode === 'parity') {
  await parity(device, args.model ?? [])
} else if (mode === 'write-random') {
  const { parseCount, shapeForParams, writeRandomLlama } = await import('../make-random-llama.js')
  const t0 = performance.now()
  const shape = shapeForParams(parseCount(args.size), {})
  const modelType = args['model-type'] as 'llama' | 'qwen2' | 'qwen3'
  const r = writeRandomLlama({ ...shape, out: args.out ?? '/tmp/random-200m', seed: 0, tokenizerFrom: args['tokenizer-from'], modelType })
  emit({ metric: 'random_model_written', shape, parameters: r.parameters, seconds: (performance.now() - t0) / 1000 })
} else if (mode === 'agree') {
  await agree(device, args.dir ?? '/tmp/random-200m', args.name)
} else if (mode === 'bench') {
  await bench(device, args.dir ?? '/tmp/random-200m', args.name, Number(args.steps), Number(args.prefill))
} else if (mode === 'transient') {
  await transient(device, args.dir ?? '/tmp/random-200m', args.name)
} else if (mode === 'pack') {
  await pack(device, args.dir ?? '/tmp/random-200m', args.name, Number(args.steps))
} else if (mode === 'latency') {
  await latency(device)
} else if (mode === 'profile-summary') {
  profileSummary(args.dir ?? '/tmp/prof')
} else {
  throw new Error(`unknown mode ${mode}`)
}
