/** Chat templates and conversations: the text the model sees, and turns that reuse the caches. */
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ChatTemplate } from '../../client/chat-template.js'
import { LanguageModel } from '../../client/language-model.js'
import { sharedPrefix } from '../../client/openai/session-pool.js'
import type { GenerateChunk, GenerationResult } from '../../client/text-generation.js'
import { CHATML_TEMPLATE, chatModelCopy, ZEPHYR_TEMPLATE } from '../helpers/chat-model.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'

const GREEDY = { maxNewTokens: 16, temperature: 0 }

async function drain (stream: AsyncGenerator<GenerateChunk, GenerationResult>): Promise<GenerationResult> {
  for (;;) {
    const next = await stream.next()
    if (next.done === true) return next.value
  }
}

describe('ChatTemplate', () => {
  const conversation = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]

  it('renders Zephyr / TinyLlama-chat and ChatML (Qwen) as their model cards show the format', () => {
    const specials = { bos_token: '<s>', eos_token: '</s>' }
    expect(ChatTemplate.parse(ZEPHYR_TEMPLATE, 'zephyr', specials).render(conversation))
      .toBe('<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n')
    expect(ChatTemplate.parse(ZEPHYR_TEMPLATE, 'zephyr', specials).render(conversation, { addGenerationPrompt: false }))
      .toBe('<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n')
    expect(ChatTemplate.parse(CHATML_TEMPLATE, 'chatml').render(conversation))
      .toBe('<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n')
  })

  it('is read from tokenizer_config.json (a string, or the "default" of a list) or chat_template.jinja; a base model has none', () => {
    const dirs: string[] = []
    try {
      const listed = chatModelCopy([{ name: 'tool_use', template: 'tools' }, { name: 'default', template: CHATML_TEMPLATE }])
      dirs.push(listed)
      expect(ChatTemplate.fromDir(listed)?.render(conversation)).toMatch(/^<\|im_start\|>system\n/)
      const jinja = chatModelCopy(ZEPHYR_TEMPLATE)
      dirs.push(jinja)
      writeFileSync(join(jinja, 'chat_template.jinja'), CHATML_TEMPLATE) // the file wins over the field
      expect(ChatTemplate.fromDir(jinja)?.render(conversation)).toMatch(/^<\|im_start\|>system\n/)
      // the special tokens come from tokenizer_config.json
      const zephyr = chatModelCopy(ZEPHYR_TEMPLATE)
      dirs.push(zephyr)
      expect(ChatTemplate.fromDir(zephyr)?.render(conversation)).toContain('Hi</s>')
      expect(ChatTemplate.fromDir(BUNDLED_MODEL)).toBeUndefined()
    } finally {
      for (const d of dirs) rmSync(join(d, '..'), { recursive: true, force: true })
    }
  })

  it('says which file holds a template it cannot parse, and passes on what a template raises', () => {
    const broken = chatModelCopy('{% for message in messages %}{{ message.content }}')
    try {
      expect(() => ChatTemplate.fromDir(broken)).toThrow(/tokenizer_config\.json \(chat_template\): cannot parse the chat template/)
    } finally {
      rmSync(join(broken, '..'), { recursive: true, force: true })
    }
    const strict = ChatTemplate.parse("{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must start with user') }}{% endif %}ok", 'strict')
    expect(strict.render([{ role: 'user', content: 'x' }])).toBe('ok')
    expect(() => strict.render(conversation)).toThrow(/chat template of strict: .*Conversation roles must start with user/)
  })
})

describe('Conversation (local model)', () => {
  let dir: string
  let model: LanguageModel
  beforeAll(async () => {
    dir = chatModelCopy()
    model = await LanguageModel.local(dir)
  })
  afterAll(async () => {
    await model?.release()
    rmSync(join(dir, '..'), { recursive: true, force: true })
  })

  it('a second turn sends only what the caches lack, and says what a fresh generation of the whole conversation says', async () => {
    const conversation = await model.conversation({ system: 'Tell a story.' })
    const first = await drain(conversation.say('Lily went to the park.', GREEDY))
    const firstIds = model.tokenizer.encode(model.chatTemplate!.render(conversation.messages.slice(0, 2)), { addSpecialTokens: false })
    expect(first.promptTokens).toEqual(firstIds) // nothing cached yet: all of it
    const second = await drain(conversation.say('What did she find?', GREEDY))
    await conversation.close()

    expect(conversation.messages.map(m => m.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant'])
    expect(conversation.messages[2]?.content).toBe(first.text)
    expect(conversation.messages[4]?.content).toBe(second.text)
    const wholeIds = model.tokenizer.encode(model.chatTemplate!.render(conversation.messages.slice(0, 4)), { addSpecialTokens: false })
    // only the tail went out: the rest was in the caches
    expect(second.promptTokens.length).toBeLessThan(wholeIds.length - firstIds.length)
    expect(second.promptTokens).toEqual(wholeIds.slice(wholeIds.length - second.promptTokens.length))
    const fresh = await drain(model.generate(wholeIds, GREEDY))
    expect(second.tokens).toEqual(fresh.tokens)
    expect(second.tokens.length).toBeGreaterThan(0)
  }, 30_000)

  it('a fork holds the conversation (its caches copied) and goes on on its own, as a fresh generation of its history would', async () => {
    const conversation = await model.conversation({ system: 'Tell a story.' })
    await drain(conversation.say('Lily went to the park.', GREEDY))
    const fork = await conversation.fork()
    expect(fork.messages).toEqual(conversation.messages)
    expect(fork.session.target.stats()).toMatchObject({ prefixesAdopted: 1, runsComputed: 0 })
    const held = [...fork.session.tokens]
    const [mine, theirs] = [await drain(conversation.say('What did she find?', GREEDY)), await drain(fork.say('Who came to help?', GREEDY))]
    for (const [c, result] of [[conversation, mine], [fork, theirs]] as const) {
      const seen = model.tokenizer.encode(model.chatTemplate!.render(c.messages.slice(0, -1)), { addSpecialTokens: false })
      expect(result.tokens).toEqual((await drain(model.generate(seen, GREEDY))).tokens)
      // only what the held history lacks went out
      const kept = Math.min(sharedPrefix(held, seen), held.length - 1)
      expect(kept).toBeGreaterThan(30)
      expect(result.promptTokens).toEqual(seen.slice(kept))
    }
    expect(fork.messages[3]?.content).toBe('Who came to help?')
    expect(conversation.messages[3]?.content).toBe('What did she find?')
    await Promise.all([conversation.close(), fork.close()])
  }, 30_000)

  it('when the session is full the oldest turns leave the context, the system message stays, and replies stay exact', async () => {
    const conversation = await model.conversation({ system: 'Tell a story.', maxTokens: 110 })
    const turns = ['Lily went to the park.', 'What did she find?', 'Who came to help?', 'How did it end?']
    let dropped = false
    for (const turn of turns) {
      const ids = conversation.promptIds({ role: 'user', content: turn }) // before any turn leaves
      const result = await drain(conversation.say(turn, { maxNewTokens: 12, temperature: 0 }))
      const context = conversation.inContext.slice(0, -1) // what the model saw: all but its reply
      const seen = model.tokenizer.encode(model.chatTemplate!.render(context), { addSpecialTokens: false })
      expect(seen.length + 12).toBeLessThanOrEqual(110)
      if (seen.length < ids.length) dropped = true
      expect(context[0]).toEqual({ role: 'system', content: 'Tell a story.' })
      expect(result.tokens).toEqual((await drain(model.generate(seen, { maxNewTokens: 12, temperature: 0 }))).tokens)
    }
    expect(dropped).toBe(true)
    expect(conversation.messages).toHaveLength(1 + 2 * turns.length) // the whole history is kept
    expect(conversation.inContext.length).toBeLessThan(conversation.messages.length)
    // a message that cannot fit even alone says so
    await expect(drain(conversation.say('Lily '.repeat(200), { maxNewTokens: 4 }))).rejects.toThrow(/session holds 110 positions/)
    await conversation.close()
  }, 30_000)

  it('a model without a chat template says so', async () => {
    const plain = await LanguageModel.local(BUNDLED_MODEL)
    try {
      await expect(plain.conversation()).rejects.toThrow(/This model has no chat template/)
    } finally {
      await plain.release()
    }
  })
})

describe('ChatSession.continueWith', () => {
  it('rolls back to the longest prefix it holds and recomputes the rest', async () => {
    const model = await LanguageModel.local(BUNDLED_MODEL)
    const session = await model.session()
    try {
      const base = model.encode('Once upon a time there was a little girl')
      await drain(session.continueWith(base, { maxNewTokens: 4, temperature: 0 }))
      // an edit in the middle: everything from the edit on is sent again
      const edited = [...base.slice(0, 5), ...model.encode(' dog named Max').slice(1)]
      const result = await drain(session.continueWith(edited, { maxNewTokens: 8, temperature: 0 }))
      expect(result.promptTokens).toEqual(edited.slice(5))
      expect(result.tokens).toEqual((await drain(model.generate(edited, { maxNewTokens: 8, temperature: 0 }))).tokens)
      expect(session.tokens).toEqual([...edited, ...result.tokens])
    } finally {
      await session.close()
      await model.release()
    }
  }, 30_000)
})
