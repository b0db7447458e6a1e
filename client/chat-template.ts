/**
 * A checkpoint's chat template: the Jinja program, shipped with instruction-tuned Hugging Face
 * models, that turns a list of messages into the exact text the model was trained on
 * (`<|im_start|>user\n...<|im_end|>` for Qwen, `<|user|>\n...</s>` for Zephyr and TinyLlama
 * chat, ...). Rendered with @huggingface/jinja, as transformers.js does.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Template } from '@huggingface/jinja'
import { CheckpointError } from '../model/errors.js'
import { readOptionalJson } from '../model/json-file.js'
import { parseTokenizerConfig } from './tokenizer/tokenizer-config.js'

export interface ChatMessage {
  /** 'system', 'user' or 'assistant' (what the template knows). */
  role: string
  content: string
}

export class ChatTemplate {
  readonly #template: Template
  readonly #source: string
  readonly #specialTokens: Record<string, string>

  private constructor (template: Template, source: string, specialTokens: Record<string, string>) {
    this.#template = template
    this.#source = source
    this.#specialTokens = specialTokens
  }

  /**
   * The template of the checkpoint in `dir`: `chat_template.jinja` (newer transformers), else
   * `chat_template` in tokenizer_config.json (a string, or a list of named templates of which
   * "default" is taken). Undefined when it has none (a base model).
   */
  static fromDir (dir: string): ChatTemplate | undefined {
    const configFile = join(dir, 'tokenizer_config.json')
    const raw = readOptionalJson(configFile)
    const config = parseTokenizerConfig(raw, configFile)
    const specialTokens: Record<string, string> = {}
    if (config.bosToken !== undefined) specialTokens['bos_token'] = config.bosToken
    if (config.eosToken !== undefined) specialTokens['eos_token'] = config.eosToken
    if (config.unkToken !== undefined) specialTokens['unk_token'] = config.unkToken
    if (config.padToken !== undefined) specialTokens['pad_token'] = config.padToken
    const jinjaFile = join(dir, 'chat_template.jinja')
    if (existsSync(jinjaFile)) return ChatTemplate.parse(readFileSync(jinjaFile, 'utf8'), jinjaFile, specialTokens)
    const field = (raw as Record<string, unknown> | undefined)?.['chat_template']
    if (field == null) return undefined
    const source = `${configFile} (chat_template)`
    if (typeof field === 'string') return ChatTemplate.parse(field, source, specialTokens)
    if (Array.isArray(field)) {
      const named = field.find((t: unknown) => (t as { name?: unknown })?.name === 'default') as { template?: unknown } | undefined
      if (typeof named?.template === 'string') return ChatTemplate.parse(named.template, `${source}, "default"`, specialTokens)
    }
    throw new CheckpointError(`${source}: expected a template string, or a list of {name, template} with one named "default"`)
  }

  /** Compiles template text; `source` names it in errors. */
  static parse (text: string, source: string, specialTokens: Record<string, string> = {}): ChatTemplate {
    try {
      return new ChatTemplate(new Template(text), source, specialTokens)
    } catch (err) {
      throw new CheckpointError(`${source}: cannot parse the chat template: ${(err as Error).message}`, { cause: err })
    }
  }

  /**
   * The conversation as the model's text. With `addGenerationPrompt` the text ends where the
   * assistant's reply begins. Special tokens appear as text (`<s>`, `<|im_start|>`): encode it
   * without adding BOS again. Throws what the template raises (roles that must alternate, say).
   */
  render (messages: readonly ChatMessage[], { addGenerationPrompt = true }: { addGenerationPrompt?: boolean } = {}): string {
    try {
      return this.#template.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        ...this.#specialTokens
      }) // the library defines raise_exception()
    } catch (err) {
      throw new Error(`Cannot render the conversation with the chat template of ${this.#source}: ${(err as Error).message}`, { cause: err })
    }
  }
}
