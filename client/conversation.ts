/**
 * Chat with an instruction-tuned model: the conversation is rendered with the model's chat
 * template at every turn, and the session sends only the tokens its caches do not hold
 * (usually the end of the last reply and the new message).
 */
import type { ChatMessage, ChatTemplate } from './chat-template.js'
import type { ChatSession } from './language-model.js'
import type { GenerateChunk, GenerateOptions, GenerationResult } from './text-generation.js'
import type { Tokenizer } from './tokenizer/index.js'

/** Positions kept free for a reply when the turn does not say how long it may be. */
const DEFAULT_REPLY_ROOM = 256

export interface ConversationOptions {
  /** A system message that opens the conversation (if the template knows the role). */
  system?: string
}

export class Conversation {
  /** Every message so far, the model's replies included. */
  readonly messages: ChatMessage[] = []
  readonly session: ChatSession
  readonly #template: ChatTemplate
  readonly #tokenizer: Tokenizer
  /** The first message past the system one that still goes to the model (older ones no longer fit). */
  #firstKept = 0

  constructor (session: ChatSession, template: ChatTemplate, tokenizer: Tokenizer, opts: ConversationOptions = {}) {
    this.session = session
    this.#template = template
    this.#tokenizer = tokenizer
    if (opts.system !== undefined) this.messages.push({ role: 'system', content: opts.system })
    this.#firstKept = this.messages.length
  }

  /** The messages the model sees: the system message, if any, and the turns that fit the session. */
  get inContext (): ChatMessage[] {
    return [...this.messages.slice(0, this.#systemCount), ...this.messages.slice(this.#firstKept)]
  }

  /** The token ids of the conversation in context with `next` added, up to where the assistant's reply begins. */
  promptIds (next: ChatMessage): number[] {
    // the template writes BOS (and every other special token) itself
    return this.#tokenizer.encode(this.#template.render([...this.inContext, next]), { addSpecialTokens: false })
  }

  /**
   * Sends a user message; streams the reply. The reply joins `messages` once it is complete
   * (a failed or aborted turn leaves the conversation as it was). When the conversation and
   * room for the reply (`maxNewTokens`, else 256) no longer fit the session's positions, the
   * oldest turns leave the context, the system message stays; the caches are then refilled
   * from the first change.
   */
  async * say (content: string, opts: GenerateOptions = {}): AsyncGenerator<GenerateChunk, GenerationResult> {
    const message = { role: 'user', content }
    const reserve = Math.min(opts.maxNewTokens ?? DEFAULT_REPLY_ROOM, Math.floor(this.session.maxTokens / 2))
    let ids = this.promptIds(message)
    while (ids.length + reserve > this.session.maxTokens && this.#firstKept < this.messages.length) {
      this.#firstKept += this.messages[this.#firstKept + 1]?.role === 'assistant' ? 2 : 1 // a user turn and its reply
      ids = this.promptIds(message)
    }
    const result = yield * this.session.continueWith(ids, opts)
    this.messages.push(message, { role: 'assistant', content: result.text })
    return result
  }

  /**
   * A conversation with the same messages on a fork of this one's session (ChatSession.fork:
   * the caches copied where they are, not computed again): try another message, or fork before
   * a turn to ask it twice. Each then goes on on its own.
   */
  async fork (): Promise<Conversation> {
    const copy = new Conversation(await this.session.fork(), this.#template, this.#tokenizer)
    copy.messages.push(...this.messages.map(m => ({ ...m })))
    copy.#firstKept = this.#firstKept
    return copy
  }

  /** 1 with a system message first, else 0. */
  get #systemCount (): number {
    return this.messages[0]?.role === 'system' ? 1 : 0
  }

  async close (): Promise<void> {
    await this.session.close()
  }
}
