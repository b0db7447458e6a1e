import { join } from 'node:path'
import { CheckpointError } from '../../model/errors.js'
import { AddedTokenMatcher, readAddedTokens, type AddedToken } from './added-tokens.js'
import { BpeModel } from './bpe-model.js'
import { cleanUpSpaces } from './clean-up-spaces.js'
import { buildDecoder, type Decode } from './decoder.js'
import { objectField, type JsonPath } from './json-field.js'
import { buildNormalizer, type Normalize } from './normalizer.js'
import { applyBosEosFlags, buildPostProcessor, type SpecialTokenTemplate } from './post-processor.js'
import { buildPreTokenizer, type PreTokenize } from './pre-tokenizer.js'
import { parseTokenizerConfig, type TokenizerConfig } from './tokenizer-config.js'
import { readOptionalJson } from '../../model/json-file.js'

export interface EncodeOptions {
  /** Put the checkpoint's special tokens (BOS for Llama) around the ids. Default true, as in Hugging Face. */
  addSpecialTokens?: boolean
}

export interface DecodeOptions {
  /** Leave out special tokens (`<s>`, `</s>`, ...). Default false, as in Hugging Face. */
  skipSpecialTokens?: boolean
}

/**
 * A Hugging Face fast tokenizer read from `tokenizer.json` (+ `tokenizer_config.json`), for the
 * BPE checkpoints of the Llama family, SentencePiece-style (Llama 2, Mistral, TinyLlama) or
 * byte-level (Llama 3, SmolLM; byte-level.ts): text -> added tokens -> normalizer ->
 * pre-tokenizer -> BPE -> post-processor, and ids -> decoder -> text. The tokenizer.json pipeline is
 * used as written (what transformers' `PreTrainedTokenizerFast` does); anything Petal does not
 * implement is refused at load time with the file and field named.
 */
export class Tokenizer {
  readonly #model: BpeModel
  readonly #normalize: Normalize
  readonly #preTokenize: PreTokenize
  readonly #decode: Decode
  readonly #template: SpecialTokenTemplate
  readonly #addedById = new Map<number, AddedToken>()
  readonly #addedByContent = new Map<string, number>()
  readonly #specialIds = new Set<number>()
  readonly #rawMatcher: AddedTokenMatcher
  readonly #normalizedMatcher: AddedTokenMatcher
  /** V: one past the largest id of the model vocabulary and the added tokens. */
  readonly vocabSize: number
  /** tokenizer_config.json's `bos_token`, else the first id the post-processor puts in front. */
  readonly bosTokenId: number | undefined
  /** tokenizer_config.json's `eos_token`. Generation stops on generation_config.json's list instead. */
  readonly eosTokenId: number | undefined
  /** tokenizer_config.json's `unk_token`, else the BPE model's. */
  readonly unkTokenId: number | undefined
  /** tokenizer_config.json's `pad_token`. */
  readonly padTokenId: number | undefined
  /** Whether `decode` applies transformers' `clean_up_tokenization_spaces`. */
  readonly cleanUpTokenizationSpaces: boolean

  private constructor (json: Record<string, unknown>, config: TokenizerConfig, file: string) {
    const at = (field: string): JsonPath => ({ file, field })
    this.#model = BpeModel.fromJson(json.model, at('model'))
    this.#normalize = buildNormalizer(json.normalizer, at('normalizer'))
    this.#preTokenize = buildPreTokenizer(json.pre_tokenizer, at('pre_tokenizer'))
    this.#decode = buildDecoder(json.decoder, at('decoder'))

    for (const token of [...readAddedTokens(json.added_tokens, at('added_tokens')), ...config.addedTokens]) {
      if (this.#addedById.has(token.id)) continue // tokenizer.json wins over tokenizer_config.json
      this.#addedById.set(token.id, token)
      this.#addedByContent.set(token.content, token.id)
      if (token.special) this.#specialIds.add(token.id)
    }
    const added = [...this.#addedById.values()]
    this.#rawMatcher = new AddedTokenMatcher(added.filter(t => !t.normalized))
    this.#normalizedMatcher = new AddedTokenMatcher(added.filter(t => t.normalized), t => this.#normalize(t.content))
    this.vocabSize = Math.max(this.#model.size, ...added.map(t => t.id + 1))

    const idOf = (token: string | undefined): number | undefined => token === undefined ? undefined : this.tokenToId(token)
    const template = buildPostProcessor(json.post_processor, at('post_processor'))
    this.bosTokenId = idOf(config.bosToken) ?? template.prefix[0]
    this.eosTokenId = idOf(config.eosToken)
    this.unkTokenId = idOf(config.unkToken) ?? this.#model.unkId
    this.padTokenId = idOf(config.padToken)
    // transformers registers the named special tokens as special even when tokenizer.json does not mark them.
    for (const token of [config.bosToken, config.eosToken, config.unkToken, config.padToken, ...config.additionalSpecialTokens]) {
      const id = idOf(token)
      if (id !== undefined) this.#specialIds.add(id)
    }
    this.#template = applyBosEosFlags(template, { addBos: config.addBosToken, addEos: config.addEosToken, bosId: this.bosTokenId, eosId: this.eosTokenId })
    this.cleanUpTokenizationSpaces = config.cleanUpTokenizationSpaces
  }

  /** Loads `DIR/tokenizer.json` and, if present, `DIR/tokenizer_config.json`. */
  static fromDir (dir: string): Tokenizer {
    const file = join(dir, 'tokenizer.json')
    const json = readOptionalJson(file)
    if (json === undefined) throw new CheckpointError(`${file}: cannot read tokenizer: file not found`)
    const configFile = join(dir, 'tokenizer_config.json')
    return Tokenizer.fromJson(json, readOptionalJson(configFile), { tokenizerFile: file, configFile })
  }

  /** Builds a tokenizer from parsed tokenizer.json / tokenizer_config.json contents; file names only label errors. */
  static fromJson (tokenizerJson: unknown, tokenizerConfig?: unknown, files: { tokenizerFile?: string, configFile?: string } = {}): Tokenizer {
    const file = files.tokenizerFile ?? 'tokenizer.json'
    const json = objectField(tokenizerJson, { file, field: '(root)' })
    return new Tokenizer(json, parseTokenizerConfig(tokenizerConfig, files.configFile), file)
  }

  /** Text -> token ids, with the checkpoint's BOS/EOS unless `addSpecialTokens` is false. */
  encode (text: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    const ids: number[] = []
    for (const segment of this.#rawMatcher.split(text)) {
      if (typeof segment === 'number') {
        ids.push(segment)
        continue
      }
      // Each stretch between added tokens is normalized on its own, as Hugging Face does.
      for (const piece of this.#normalizedMatcher.split(this.#normalize(segment.text))) {
        if (typeof piece === 'number') {
          ids.push(piece)
          continue
        }
        const atTextStart = segment.start === 0 && piece.start === 0
        for (const word of this.#preTokenize(piece.text, atTextStart)) this.#model.tokenize(word, ids)
      }
    }
    if (!addSpecialTokens) return ids
    return [...this.#template.prefix, ...ids, ...this.#template.suffix]
  }

  /** Token ids -> text. Ids outside the vocabulary are left out, as Hugging Face does. */
  decode (ids: Iterable<number>, { skipSpecialTokens = false }: DecodeOptions = {}): string {
    const tokens: string[] = []
    for (const id of ids) {
      if (skipSpecialTokens && this.#specialIds.has(id)) continue
      const token = this.idToToken(id)
      if (token !== undefined) tokens.push(token)
    }
    const text = this.#decode(tokens)
    return this.cleanUpTokenizationSpaces ? cleanUpSpaces(text) : text
  }

  /** The token string of `id` (`▁the`, `<0x0A>`, `<s>`), or undefined outside the vocabulary. */
  idToToken (id: number): string | undefined {
    return this.#addedById.get(id)?.content ?? this.#model.idToToken(id)
  }

  /** The id of a token string, added tokens first. */
  tokenToId (token: string): number | undefined {
    return this.#addedByContent.get(token) ?? this.#model.tokenToId(token)
  }

  /** Whether `decode(..., { skipSpecialTokens: true })` leaves `id` out. */
  isSpecialToken (id: number): boolean {
    return this.#specialIds.has(id)
  }
}
