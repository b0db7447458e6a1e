/**
 * Weights of the Llama family as Petal's graphs consume them: float32, Hugging Face layout
 * (a Linear weight is (out, in), row-major). The checkpoint reader fills these; the graph
 * builder transposes what it needs.
 */
export interface BlockWeights {
  /** (C) */ readonly inputNorm: Float32Array
  /** (H*D, C) */ readonly q: Float32Array
  /** (Hkv*D, C) */ readonly k: Float32Array
  /** (Hkv*D, C) */ readonly v: Float32Array
  /** (C, H*D) */ readonly o: Float32Array
  /** (C) */ readonly postNorm: Float32Array
  /** (F, C) */ readonly gate: Float32Array
  /** (F, C) */ readonly up: Float32Array
  /** (C, F) */ readonly down: Float32Array
  /** (H*D), (Hkv*D), (Hkv*D): projection biases, present when the config has them (Qwen2; Llama's attention_bias) */
  readonly qBias?: Float32Array
  readonly kBias?: Float32Array
  readonly vBias?: Float32Array
  /** (C): present with Llama's attention_bias */
  readonly oBias?: Float32Array
  /** (D), (D): RMSNorm weights applied to each query / key head before RoPE (Qwen3) */
  readonly qNorm?: Float32Array
  readonly kNorm?: Float32Array
}

/** What the client holds: token embedding, final norm and LM head. */
export interface ClientWeights {
  /** (V, C) */ readonly embedding: Float32Array
  /** (C) */ readonly finalNorm: Float32Array
  /** (V, C); the same array as `embedding` when the checkpoint ties them. */
  readonly lmHead: Float32Array
}

/** Hugging Face tensor names of block `i`. */
export function blockTensorNames (i: number): Record<keyof Required<BlockWeights>, string> {
  const p = `model.layers.${i}`
  return {
    inputNorm: `${p}.input_layernorm.weight`,
    q: `${p}.self_attn.q_proj.weight`,
    k: `${p}.self_attn.k_proj.weight`,
    v: `${p}.self_attn.v_proj.weight`,
    o: `${p}.self_attn.o_proj.weight`,
    postNorm: `${p}.post_attention_layernorm.weight`,
    gate: `${p}.mlp.gate_proj.weight`,
    up: `${p}.mlp.up_proj.weight`,
    down: `${p}.mlp.down_proj.weight`,
    qBias: `${p}.self_attn.q_proj.bias`,
    kBias: `${p}.self_attn.k_proj.bias`,
    vBias: `${p}.self_attn.v_proj.bias`,
    oBias: `${p}.self_attn.o_proj.bias`,
    qNorm: `${p}.self_attn.q_norm.weight`,
    kNorm: `${p}.self_attn.k_norm.weight`
  }
}

export const CLIENT_TENSOR_NAMES = {
  embedding: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  lmHead: 'lm_head.weight'
} as const
