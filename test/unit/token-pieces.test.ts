import { describe, expect, it } from 'vitest'
import { Tokenizer, TokenPieces } from '../../client/tokenizer/index.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'
import { llama3StyleTokenizerJson } from '../helpers/byte-level-tokenizer.js'

describe('TokenPieces: what a token adds to a text (logprobs\' token strings)', () => {
  it('SentencePiece (stories260k): a word keeps its leading space, a byte token is its byte', () => {
    const tokenizer = Tokenizer.fromDir(BUNDLED_MODEL)
    const pieces = new TokenPieces(tokenizer)
    const text = 'Once upon a time, there was a café.\nThe end'
    const ids = tokenizer.encode(text, { addSpecialTokens: false })
    // the pieces spell the text (its first leading space aside, which decoding strips)
    expect(ids.map(id => pieces.of(id).text).join('')).toBe(` ${text}`)
    const newline = tokenizer.tokenToId('<0x0A>') as number
    expect(pieces.of(newline)).toEqual({ text: '\n', bytes: [0x0A] })
    const once = tokenizer.tokenToId('▁Once') as number
    expect(pieces.of(once)).toEqual({ text: ' Once', bytes: [...Buffer.from(' Once')] })
    // a lone lead byte of a two-byte character: its byte exactly, its text a replacement mark
    const lead = tokenizer.tokenToId('<0xC3>') as number
    expect(pieces.of(lead)).toEqual({ text: '\uFFFD', bytes: [0xC3] })
  })

  it('byte-level BPE (Llama 3 style): spaces as Ġ become spaces; part of a character has no exact bytes', () => {
    const tokenizer = Tokenizer.fromJson(llama3StyleTokenizerJson(), { clean_up_tokenization_spaces: false })
    const pieces = new TokenPieces(tokenizer)
    const ids = tokenizer.encode(' the cat', { addSpecialTokens: false })
    expect(ids.map(id => pieces.of(id).text)).toEqual([' the', ' cat'])
    expect(pieces.of(tokenizer.tokenToId('Ã') as number)).toEqual({ text: '\uFFFD', bytes: null })
  })
})
