import { describe, expect, it } from 'vitest'
import { fromByteLevel, GPT2_SPLIT, splitByPattern, toByteLevel } from '../../client/tokenizer/byte-level.js'
import { IncrementalDecoder } from '../../client/tokenizer/incremental-decoder.js'
import { withoutCaseGroups } from '../../client/tokenizer/json-field.js'
import { Tokenizer } from '../../client/tokenizer/tokenizer.js'
import { gpt2Alphabet, LLAMA3_SPLIT, llama3StyleTokenizerJson } from '../helpers/byte-level-tokenizer.js'

/** The fixture as a Tokenizer (with `preTokenizer` instead of Llama 3's, if given). */
function llama3StyleTokenizer (preTokenizer?: unknown): Tokenizer {
  return Tokenizer.fromJson(llama3StyleTokenizerJson(preTokenizer), { clean_up_tokenization_spaces: false })
}

describe('byte-level alphabet (GPT-2, Llama 3, Qwen)', () => {
  it('gives every byte a character: printable Latin-1 as itself, the rest from U+0100 in byte order', () => {
    for (const [b, c] of gpt2Alphabet()) if (b < 0x80) expect(toByteLevel(String.fromCharCode(b))).toBe(c)
    expect(toByteLevel(' ')).toBe('Ġ')
    expect(toByteLevel('\n')).toBe('Ċ')
    expect(toByteLevel('\0')).toBe('Ā')
    expect(toByteLevel('!~')).toBe('!~')
    expect(toByteLevel('é')).toBe('Ã©') // UTF-8 C3 A9
    const alphabet = gpt2Alphabet()
    expect(new Set(alphabet.map(([, c]) => c)).size).toBe(256)
    expect(fromByteLevel(alphabet.map(([, c]) => c))).toBe(new TextDecoder().decode(Uint8Array.from(alphabet.map(([b]) => b))))
  })

  it('decodes back to text, invalid UTF-8 as U+FFFD, characters outside the alphabet as themselves', () => {
    const text = 'naïve café\n日本語 🙂'
    expect(fromByteLevel([toByteLevel(text)])).toBe(text)
    expect(fromByteLevel(['Ã'])).toBe('\uFFFD') // a lone lead byte
    expect(fromByteLevel(['<|eot|>', 'Ġhi'])).toBe('<|eot|> hi')
  })

  it("splits words as GPT-2 does", () => {
    expect(splitByPattern("Hello world, it's  2024!", GPT2_SPLIT, 'Isolated')).toEqual(['Hello', ' world', ',', ' it', "'s", ' ', ' 2024', '!'])
  })

  it('runs Llama 3\'s Oniguruma pattern: case-insensitive contractions, digits in threes, a space before digits alone', () => {
    const pattern = new RegExp(withoutCaseGroups(LLAMA3_SPLIT), 'gu')
    expect(splitByPattern("I'm 12345 years", pattern, 'Isolated')).toEqual(['I', "'m", ' ', '123', '45', ' years'])
    expect(splitByPattern("I'M", pattern, 'Isolated')).toEqual(['I', "'M"])
    expect(withoutCaseGroups("(?i:'s|[a-z]\\d)|x")).toBe("(?:'[sS]|[a-z]\\d)|x")
  })

  it('splits with the other Split behaviors', () => {
    expect(splitByPattern('a-b-c', '-', 'Removed')).toEqual(['a', 'b', 'c'])
    expect(splitByPattern('a-b-c', '-', 'MergedWithPrevious')).toEqual(['a-', 'b-', 'c'])
    expect(splitByPattern('a-b-c', '-', 'MergedWithNext')).toEqual(['a', '-b', '-c'])
  })
})

describe('a byte-level BPE tokenizer laid out as Llama 3\'s', () => {
  const tok = llama3StyleTokenizer()

  it('encodes through split, byte-level and merges, with its begin-of-text token', () => {
    const id = (t: string): number => tok.tokenToId(t) as number
    expect(tok.encode('the cat', { addSpecialTokens: false })).toEqual([id('t'), id('he'), id('Ġcat')])
    expect(tok.encode(' the')[0]).toBe(tok.bosTokenId)
    expect(tok.encode(' the').slice(1)).toEqual([id('Ġthe')])
  })

  it('decodes every text back exactly, multi-byte characters included', () => {
    for (const text of ['the cat', 'naïve café\n\n日本語 🙂', "I'M 12345 cats!!"]) {
      expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text)
    }
  })

  it("with GPT-2's pre-tokenizer (ByteLevel alone, use_regex, add_prefix_space) puts a space before the text", () => {
    const gpt2 = llama3StyleTokenizer({ type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true })
    const ids = gpt2.encode('the cat', { addSpecialTokens: false })
    expect(ids.map(i => gpt2.idToToken(i))).toEqual(['Ġthe', 'Ġcat'])
    expect(gpt2.decode(ids)).toBe(' the cat')
  })

  it("with SmolLM's pre-tokenizer (Digits, then GPT-2's ByteLevel) puts every digit apart", () => {
    const smol = llama3StyleTokenizer({ type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, { type: 'ByteLevel', add_prefix_space: false, use_regex: true }] })
    const tokens = (text: string): Array<string | undefined> => smol.encode(text, { addSpecialTokens: false }).map(i => smol.idToToken(i))
    expect(tokens('the 42')).toEqual(['t', 'he', 'Ġ', '4', '2'])
    const runs = llama3StyleTokenizer({ type: 'Digits', individual_digits: false })
    expect(runs.encode('a42b', { addSpecialTokens: false }).length).toBe(4) // a, 4, 2, b: no merges join digits
    expect(splitByPattern('a42b7', /\p{N}+/gu, 'Isolated')).toEqual(['a', '42', 'b', '7'])
  })

  it('streams a character split over several tokens only once it is whole', () => {
    const ids = tok.encode('a日b', { addSpecialTokens: false }) // 日 is 3 byte tokens
    expect(ids.length).toBe(5)
    const stream = new IncrementalDecoder(tok)
    const chunks = ids.map(i => stream.push(i))
    expect(chunks).toEqual(['a', '', '', '日', 'b'])
  })
})
