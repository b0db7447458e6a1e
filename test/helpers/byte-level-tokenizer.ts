/**
 * A byte-level BPE tokenizer.json laid out as Llama 3's (its real split pattern, GPT-2's byte
 * alphabet in GPT-2's vocabulary order, a handful of merges, a begin-of-text token), for tests
 * of tokenizers and of checkpoints that bring their own.
 */

// Llama 3's split pattern as its tokenizer.json writes it (Oniguruma syntax).
export const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/** GPT-2's bytes_to_unicode as its encoder.py builds it: (byte, character) in vocabulary order. */
export function gpt2Alphabet (): Array<[number, string]> {
  const bs: number[] = []
  for (const [a, b] of [[0x21, 0x7E], [0xA1, 0xAC], [0xAE, 0xFF]] as const) for (let x = a; x <= b; x++) bs.push(x)
  const cs = [...bs]
  let n = 0
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++) }
  return bs.map((b, i) => [b, String.fromCharCode(cs[i] as number)])
}

/** The tokenizer.json (with `preTokenizer` instead of Llama 3's, if given). */
export function llama3StyleTokenizerJson (preTokenizer?: unknown): Record<string, unknown> {
  const vocab: Record<string, number> = {}
  for (const [i, [, c]] of gpt2Alphabet().entries()) vocab[c] = i
  const merges = ['Ġ t', 'h e', 'Ġt he', 'c a', 'ca t', 'Ġ ca', 'Ġca t']
  for (const m of merges) vocab[m.replace(' ', '')] ??= Object.keys(vocab).length
  const bot = Object.keys(vocab).length
  return {
    model: { type: 'BPE', vocab, merges, ignore_merges: true, byte_fallback: false },
    added_tokens: [{ id: bot, content: '<|begin_of_text|>', special: true, normalized: false }],
    normalizer: null,
    pre_tokenizer: preTokenizer ?? { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }
    ] },
    post_processor: { type: 'Sequence', processors: [
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [], special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [bot], tokens: ['<|begin_of_text|>'] } } }
    ] },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true }
  }
}

