import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { IncrementalDecoder, Tokenizer } from '../../client/tokenizer/index.js'
import { createRng } from '../../client/sampling/index.js'

const STORIES = join(import.meta.dirname, '..', '..', 'models', 'stories260k')
const cases: Array<{ text: string, ids: number[] }> = JSON.parse(readFileSync(join(STORIES, 'tokenizer_cases.json'), 'utf8')).cases
const reference: { prompts: Array<{ prompt: string, prompt_ids: number[], greedy_new_ids: number[], full_text: string }> } =
  JSON.parse(readFileSync(join(STORIES, 'reference.json'), 'utf8'))
const stories = Tokenizer.fromDir(STORIES)

const BROKEN_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Streams `ids` through an IncrementalDecoder; returns the chunks, flush included as the last one. */
function stream (tok: Tokenizer, ids: readonly number[], context?: readonly number[]): string[] {
  const decoder = new IncrementalDecoder(tok, context === undefined ? {} : { context })
  const chunks = ids.map(id => decoder.push(id))
  chunks.push(decoder.flush())
  return chunks
}

describe('Tokenizer on stories260k', () => {
  it('reads the special ids and vocabulary size', () => {
    expect(stories.vocabSize).toBe(512)
    expect(stories.bosTokenId).toBe(1)
    expect(stories.eosTokenId).toBe(2)
    expect(stories.idToToken(259)).toBe('▁t')
    expect(stories.idToToken(13)).toBe('<0x0A>')
    expect(stories.tokenToId('</s>')).toBe(2)
  })

  for (const c of cases) {
    it(`encodes ${JSON.stringify(c.text)} to llama2.c ids and decodes it back`, () => {
      expect(stories.encode(c.text)).toEqual(c.ids)
      expect(stories.decode(c.ids, { skipSpecialTokens: true })).toBe(c.text)
    })
  }

  it('adds BOS only with special tokens, and keeps it in decode unless skipped', () => {
    expect(stories.encode('Once upon a time', { addSpecialTokens: false })).toEqual([403, 407, 261, 378])
    expect(stories.decode([1, 403, 407])).toBe('<s> Once upon')
    expect(stories.decode([1, 403, 407], { skipSpecialTokens: true })).toBe('Once upon')
  })

  it('parses a literal <s> in the text as the special token, normalizing each side on its own', () => {
    const a = stories.encode('a', { addSpecialTokens: false })
    const b = stories.encode('b', { addSpecialTokens: false })
    expect(stories.encode('a<s>b')).toEqual([1, ...a, 1, ...b])
  })

  it('leaves ids outside the vocabulary out of decode', () => {
    expect(stories.decode([403, 9999, 407])).toBe('Once upon')
  })

  for (const p of reference.prompts) {
    it(`matches transformers on reference prompt ${JSON.stringify(p.prompt)}`, () => {
      expect(stories.encode(p.prompt)).toEqual(p.prompt_ids)
      expect(stories.decode([...p.prompt_ids, ...p.greedy_new_ids], { skipSpecialTokens: true })).toBe(p.full_text)
    })
  }

  it('encodes long texts in near-linear time', () => {
    const text = 'Once upon a time, there was a little girl named Lily. 你好 😀 '.repeat(3000) // ~190k chars
    const t0 = performance.now()
    const ids = stories.encode(text)
    expect(performance.now() - t0).toBeLessThan(3000)
    expect(stories.decode(ids, { skipSpecialTokens: true })).toBe(text)
    const noSpaces = text.replaceAll(' ', '') // one huge word: no cache, every merge through the heap
    expect(stories.decode(stories.encode(noSpaces), { skipSpecialTokens: true })).toBe(noSpaces)
  })
})

describe('IncrementalDecoder on stories260k', () => {
  for (const c of cases) {
    it(`streams ${JSON.stringify(c.text)} exactly as one-shot decode, whole characters only`, () => {
      const chunks = stream(stories, c.ids)
      expect(chunks.join('')).toBe(stories.decode(c.ids, { skipSpecialTokens: true }))
      for (const chunk of chunks) {
        expect(chunk).not.toContain('\uFFFD')
        expect(chunk).not.toMatch(BROKEN_SURROGATE)
      }
    })
  }

  it('holds byte tokens until the UTF-8 character is complete', () => {
    const ids = stories.encode('你😀', { addSpecialTokens: false }) // ▁, then 3 + 4 byte tokens
    expect(ids).toEqual([410, 231, 192, 163, 243, 162, 155, 131])
    expect(stream(stories, ids)).toEqual(['', '', '', '你', '', '', '', '😀', ''])
  })

  it('with the prompt as context keeps the leading space of the first generated token', () => {
    for (const c of cases) {
      const full = stories.decode(c.ids, { skipSpecialTokens: true })
      for (let k = 1; k < c.ids.length; k++) {
        const head = stories.decode(c.ids.slice(0, k), { skipSpecialTokens: true })
        if (head.endsWith('\uFFFD')) continue // context cut inside a character
        expect(full.startsWith(head)).toBe(true)
        expect(stream(stories, c.ids.slice(k), c.ids.slice(0, k)).join('')).toBe(full.slice(head.length))
      }
    }
  })

  for (const p of reference.prompts) {
    it(`streams the greedy continuation of ${JSON.stringify(p.prompt)}`, () => {
      const promptText = stories.decode(p.prompt_ids, { skipSpecialTokens: true })
      expect(stream(stories, p.greedy_new_ids, p.prompt_ids).join('')).toBe(p.full_text.slice(promptText.length))
      expect(stream(stories, p.greedy_new_ids).join('')).toBe(stories.decode(p.greedy_new_ids, { skipSpecialTokens: true }))
    })
  }

  it('matches one-shot decode on random multilingual texts', () => {
    const pool = [...'abcdefghij ,.!?\n\tÀéñß', '你', '好', '😀', '👍🏽', '€', '—', '  ']
    const rng = createRng(7)
    for (let n = 0; n < 200; n++) {
      let text = ''
      const len = 1 + Math.floor(rng.next() * 40)
      for (let i = 0; i < len; i++) text += pool[Math.floor(rng.next() * pool.length)]
      const ids = stories.encode(text)
      const chunks = stream(stories, ids)
      expect(chunks.join('')).toBe(text)
      expect(chunks.some(c => c.includes('\uFFFD') || BROKEN_SURROGATE.test(c))).toBe(false)
    }
  })
})

/** A small tokenizer.json in the SentencePiece style; `over` replaces top-level fields. */
function tinyJson (over: Record<string, unknown> = {}, model: Record<string, unknown> = {}): Record<string, unknown> {
  const tokens = ['<unk>', '<s>', '</s>', '▁', 'a', 'b', 'c', 'h', 'e', 'l', 'o', '.', "'", 's', 'n', 't',
    'ab', '▁ab', '▁a', 'he', 'll', 'hell', 'hello', '▁hello', 'abc']
  const special = (id: number, content: string): object => ({ id, content, special: true, normalized: false, lstrip: false, rstrip: false, single_word: false })
  return {
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } }
    },
    decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: true },
    model: {
      type: 'BPE',
      vocab: Object.fromEntries(tokens.map((t, i) => [t, i])),
      merges: [['a', 'b'], ['▁', 'ab'], ['▁', 'a'], ['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o'], ['▁', 'hello']],
      unk_token: '<unk>',
      fuse_unk: true,
      byte_fallback: false,
      ...model
    },
    ...over
  }
}
const ID = { '▁': 3, b: 5, c: 6, ab: 16, '▁ab': 17, '▁a': 18, hello: 22, '▁hello': 23, abc: 24 } as const
const raw = { addSpecialTokens: false }

describe('Tokenizer features beyond stories260k', () => {
  it('splits words with a Metaspace pre-tokenizer and decodes with the Metaspace decoder', () => {
    const tok = Tokenizer.fromJson(tinyJson())
    expect(tok.encode('hello ab')).toEqual([1, ID['▁hello'], ID['▁ab']])
    expect(tok.decode([ID['▁hello'], ID['▁ab']])).toBe('hello ab')
    expect(tok.decode([1, ID['▁hello'], 2])).toBe('<s> hello</s>')
    expect(tok.decode([1, ID['▁hello'], 2], { skipSpecialTokens: true })).toBe('hello')
    const never = Tokenizer.fromJson(tinyJson({ decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never' } }))
    expect(never.decode([ID['▁hello'], ID['▁ab']])).toBe(' hello ab')
  })

  it('merges by rank, not left to right, with merges as pairs or "a b" strings', () => {
    expect(Tokenizer.fromJson(tinyJson()).encode('ab', raw)).toEqual([ID['▁ab']])
    const swapped = Tokenizer.fromJson(tinyJson({}, { merges: ['▁ a', 'a b', '▁ ab'] }))
    expect(swapped.encode('ab', raw)).toEqual([ID['▁a'], ID.b])
  })

  it('takes a whole word from the vocabulary under ignore_merges', () => {
    const pre = { pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'never', split: true } }
    expect(Tokenizer.fromJson(tinyJson(pre)).encode('abc', raw)).toEqual([ID.ab, ID.c])
    expect(Tokenizer.fromJson(tinyJson(pre, { ignore_merges: true })).encode('abc', raw)).toEqual([ID.abc])
  })

  it('prepends the metaspace only at the start of the text under prepend_scheme "first"', () => {
    expect(Tokenizer.fromJson(tinyJson()).encode('<s>ab', raw)).toEqual([1, ID.ab])
    const always = Tokenizer.fromJson(tinyJson({ pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always' } }))
    expect(always.encode('<s>ab', raw)).toEqual([1, ID['▁ab']])
  })

  it('lets added tokens swallow neighbouring spaces (lstrip/rstrip) and respect single_word', () => {
    const mask = (opts: object): object => ({ id: 25, content: '<m>', special: false, normalized: false, ...opts })
    const base = tinyJson()
    const withMask = (opts: object): Tokenizer => Tokenizer.fromJson({ ...base, added_tokens: [...(base.added_tokens as object[]), mask(opts)] })
    expect(withMask({ lstrip: true, rstrip: true }).encode('ab <m> ab', raw)).toEqual([ID['▁ab'], 25, ID.ab])
    expect(withMask({}).encode('ab <m> ab', raw)).toEqual([ID['▁ab'], ID['▁'], 25, ID['▁ab']])
    expect(withMask({ single_word: true }).encode('ab<m>', raw)).not.toContain(25)
    expect(withMask({ single_word: true }).encode('ab <m>', raw)).toContain(25)
    expect(withMask({}).vocabSize).toBe(26)
  })

  it('fuses consecutive unknown characters when fuse_unk is set', () => {
    expect(Tokenizer.fromJson(tinyJson()).encode('xyz', raw)).toEqual([ID['▁'], 0])
    expect(Tokenizer.fromJson(tinyJson({}, { fuse_unk: false })).encode('xyz', raw)).toEqual([ID['▁'], 0, 0, 0])
  })

  it('honours add_bos_token / add_eos_token from tokenizer_config.json', () => {
    const tok = Tokenizer.fromJson(tinyJson(), { bos_token: '<s>', eos_token: { content: '</s>' }, add_bos_token: false, add_eos_token: true })
    expect(tok.encode('ab')).toEqual([ID['▁ab'], 2])
    expect(tok.eosTokenId).toBe(2)
  })

  it('cleans up tokenization spaces when configured, also while streaming', () => {
    const tok = Tokenizer.fromJson(tinyJson(), { clean_up_tokenization_spaces: true })
    const dot = 11
    expect(tok.decode([ID['▁hello'], ID['▁'], dot])).toBe('hello.')
    const alphabet = [3, 4, 5, 11, 12, 13, 14, 15, 16, 17, 18, 22, 23, 1]
    const rng = createRng(11)
    for (let n = 0; n < 500; n++) {
      const ids = Array.from({ length: 1 + Math.floor(rng.next() * 12) }, () => alphabet[Math.floor(rng.next() * alphabet.length)] as number)
      expect(stream(tok, ids).join('')).toBe(tok.decode(ids, { skipSpecialTokens: true }))
    }
  })
})

describe('Tokenizer refuses what it does not implement', () => {
  const refuse = (json: unknown, field: string): void => {
    let error: any
    try {
      Tokenizer.fromJson(json)
    } catch (err) {
      error = err
    }
    expect(error).toMatchObject({ name: 'CheckpointError', code: 'ERR_CHECKPOINT' })
    expect(error.message).toContain('tokenizer.json')
    expect(error.message).toContain(`"${field}"`)
  }

  it('names the field of an unsupported model, normalizer, pre-tokenizer, decoder or post-processor', () => {
    refuse(tinyJson({ model: { type: 'WordPiece', vocab: {}, unk_token: '[UNK]' } }), 'model.type')
    refuse(tinyJson({ model: { type: 'Unigram', vocab: [] } }), 'model.type')
    refuse(tinyJson({ pre_tokenizer: { type: 'Whitespace' } }), 'pre_tokenizer.type')
    refuse(tinyJson({ pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'Contiguous' } }), 'pre_tokenizer.behavior')
    refuse(tinyJson({ pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'Isolated', invert: true } }), 'pre_tokenizer.invert')
    refuse(tinyJson({ decoder: { type: 'Sequence', decoders: [{ type: 'WordPiece' }] } }), 'decoder.decoders[0].type')
    refuse(tinyJson({ normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'BertNormalizer' }] } }), 'normalizer.normalizers[1].type')
    refuse(tinyJson({ post_processor: { type: 'BertProcessing', sep: ['[SEP]', 102], cls: ['[CLS]', 101] } }), 'post_processor.type')
    refuse(tinyJson({}, { continuing_subword_prefix: '##' }), 'model.continuing_subword_prefix')
    refuse(tinyJson({}, { merges: [['a', 'zz']] }), 'model.merges[0]')
  })

  it('names the file it read from a folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'petal-tok-'))
    expect(() => Tokenizer.fromDir(dir)).toThrow(join(dir, 'tokenizer.json'))
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tinyJson({ model: { type: 'WordPiece', vocab: {} } })))
    expect(() => Tokenizer.fromDir(dir)).toThrow(`${join(dir, 'tokenizer.json')}: field "model.type" is not supported`)
  })
})
