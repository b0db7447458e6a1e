/**
 * Chat with an instruction-tuned model: the conversation is rendered with the model's chat
 * template at every turn, and the session sends only the tokens its caches do not hold
 * (usually the end of the last reply and the new message).
 */
import type { ChatMessage, ChatTemplate } from './chat-template.js'
import type { ChatSession } from './language-model.js'
import type { GenerateChunk, GenerateOptions, GenerationResult } from './text-generation.js'
import type { Tokenizer } from './tokenizer/index.js'

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

  constructor (session: ChatSession, template: ChatTemplate, tokenizer: Tokenizer, opts: ConversationOptions = {}) {
    this.session = session
    this.#template = template
    this.#tokenizer = tokenizer
    if (opts.system !== undefined) this.messages.push({ role: 'system', content: opts.system })
  }

  /** The token ids of the conversation with `next` added, up to where the assistant's reply begins. */
  promptIds (next: ChatMessage): number[] {
    // the template writes BOS (and every other special token) itself
    return this.#tokenizer.encode(this.#template.render([...this.messages, next]), { addSpecialTokens: false })
  }

  /**
   * Sends a user message; streams the reply. The reply joins `messages` once it is complete
   * (a failed or aborted turn leaves the conversation as it was).
   */
  async * say (content: string, opts: GenerateOptions = {}): AsyncGenerator<GenerateChunk, GenerationResult> {
    const message = { role: 'user', content }
    const result = yield * this.session.continueWith(this.promptIds(message), opts)
    this.messages.push(message, { role: 'assistant', content: result.text })
    return result
  }

  async close (): Promise<void> {
    await this.session.close()
  }
}
