import { describe, expect, it } from 'vitest'
import { ApiError } from '../../client/openai/api-error.js'
import { parseChatBody, parseCompletionBody } from '../../client/openai/request-body.js'

/** The ApiError a parse throws (fails the test if it does not throw one). */
function refusal (parse: () => unknown): ApiError {
  try {
    parse()
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError)
    return err as ApiError
  }
  throw new Error('expected the request to be refused')
}

describe('OpenAI request bodies', () => {
  it('reads sampling, length, stop and streaming into generate options', () => {
    const parsed = parseCompletionBody({
      model: 'stories260k', prompt: 'Once', max_tokens: 40, temperature: 0.7, top_p: 0.9, top_k: 20,
      repetition_penalty: 1.1, seed: 5, stop: ['\n', 'The end'], stream: true, stream_options: { include_usage: true },
      n: 1, presence_penalty: 0.25, logprobs: null, user: 'someone'
    })
    expect(parsed).toEqual({
      model: 'stories260k',
      prompt: 'Once',
      options: { maxNewTokens: 40, temperature: 0.7, topP: 0.9, topK: 20, repetitionPenalty: 1.1, seed: 5, presencePenalty: 0.25, stopStrings: ['\n', 'The end'] },
      stream: true,
      includeUsage: true,
      logprobs: undefined,
      n: 1,
      echo: false
    })
  })

  it('leaves unset fields to the model and the server', () => {
    expect(parseCompletionBody({ prompt: 'Once' })).toEqual({ model: undefined, prompt: 'Once', options: {}, stream: false, includeUsage: false, logprobs: undefined, n: 1, echo: false })
    // max_completion_tokens (the newer name) wins over max_tokens; a single stop string is a list of one
    expect(parseChatBody({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 9, max_completion_tokens: 3, stop: 'x' }).options)
      .toEqual({ maxNewTokens: 3, stopStrings: ['x'] })
  })

  it('takes a prompt as text, token ids, or a list of one of them', () => {
    expect(parseCompletionBody({ prompt: [1, 2, 3] }).prompt).toEqual([1, 2, 3])
    expect(parseCompletionBody({ prompt: ['Once'] }).prompt).toBe('Once')
    expect(parseCompletionBody({ prompt: [[1, 2]] }).prompt).toEqual([1, 2])
    expect(refusal(() => parseCompletionBody({ prompt: ['a', 'b'] })).message).toMatch(/batches/)
    for (const prompt of ['', [], [1.5], [-1], { text: 'x' }, undefined]) {
      expect(refusal(() => parseCompletionBody({ prompt })).param).toBe('prompt')
    }
  })

  it('reads chat messages, text parts joined', () => {
    const parsed = parseChatBody({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi ' }, { type: 'text', text: 'there' }] }] })
    expect(parsed.messages).toEqual([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi there' }])
  })

  it('refuses malformed messages, naming the field', () => {
    expect(refusal(() => parseChatBody({ messages: [] })).param).toBe('messages')
    expect(refusal(() => parseChatBody({})).param).toBe('messages')
    expect(refusal(() => parseChatBody({ messages: [{ role: 'wizard', content: 'x' }] })).param).toBe('messages[0].role')
    expect(refusal(() => parseChatBody({ messages: [{ role: 'user', content: 'x' }, { role: 'user', content: [{ type: 'image_url', image_url: {} }] }] })).param).toBe('messages[1].content')
  })

  it('refuses by name what it cannot honour, and accepts the values that change nothing', () => {
    const chat = { messages: [{ role: 'user', content: 'Hi' }] }
    const refused: Array<[string, unknown]> = [['tools', [{ type: 'function' }]], ['tool_choice', 'auto'],
      ['response_format', { type: 'json_object' }]]
    for (const [field, value] of refused) {
      const err = refusal(() => parseChatBody({ ...chat, [field]: value }))
      expect([err.status, err.param, err.code]).toEqual([400, field, 'unsupported_parameter'])
    }
    expect(() => parseChatBody({ ...chat, n: 1, logprobs: false, tools: [], tool_choice: 'none', response_format: { type: 'text' }, logit_bias: {} })).not.toThrow()
    expect(parseChatBody({ ...chat, logit_bias: {} }).options.logitBias).toBeUndefined()
    expect(parseChatBody({ ...chat, presence_penalty: 0.5, frequency_penalty: -1 }).options).toMatchObject({ presencePenalty: 0.5, frequencyPenalty: -1 })
    for (const [field, value] of [['presence_penalty', 2.5], ['frequency_penalty', -3], ['presence_penalty', 'high']] as Array<[string, unknown]>) {
      expect(refusal(() => parseChatBody({ ...chat, [field]: value })).param).toBe(field)
    }
    expect(parseChatBody({ ...chat, logit_bias: { 42: -100, 7: 2.5 } }).options.logitBias).toEqual({ 42: -100, 7: 2.5 })
    for (const bias of [{ 42: 101 }, { x: 1 }, { '-1': 1 }, [1], 'ban', Object.fromEntries(Array.from({ length: 301 }, (_, i) => [i, 1]))]) {
      expect(refusal(() => parseChatBody({ ...chat, logit_bias: bias })).param).toBe('logit_bias')
    }
    for (const [field, value] of [['suffix', 'end'], ['best_of', 3]] as Array<[string, unknown]>) {
      expect(refusal(() => parseCompletionBody({ prompt: 'x', [field]: value })).param).toBe(field)
    }
  })

  it('reads logprobs as each endpoint spells them, and echo', () => {
    const chat = { messages: [{ role: 'user', content: 'Hi' }] }
    expect(parseChatBody(chat).logprobs).toBeUndefined()
    expect(parseChatBody({ ...chat, logprobs: false }).logprobs).toBeUndefined()
    expect(parseChatBody({ ...chat, logprobs: true }).logprobs).toBe(0)
    expect(parseChatBody({ ...chat, logprobs: true, top_logprobs: 5 }).logprobs).toBe(5)
    expect(refusal(() => parseChatBody({ ...chat, top_logprobs: 5 })).param).toBe('top_logprobs')
    expect(refusal(() => parseChatBody({ ...chat, logprobs: true, top_logprobs: 21 })).message).toContain('in [0, 20]')
    expect(refusal(() => parseChatBody({ ...chat, logprobs: 3 })).param).toBe('logprobs')
    expect(parseCompletionBody({ prompt: 'x', logprobs: 3 }).logprobs).toBe(3)
    expect(parseCompletionBody({ prompt: 'x', logprobs: 0 }).logprobs).toBe(0)
    expect(refusal(() => parseCompletionBody({ prompt: 'x', logprobs: true })).param).toBe('logprobs')
    expect(parseCompletionBody({ prompt: 'x', echo: true }).echo).toBe(true)
    expect(parseChatBody({ ...chat, n: 3 }).n).toBe(3)
    expect(refusal(() => parseCompletionBody({ prompt: 'x', echo: 'yes' })).param).toBe('echo')
    // max_tokens 0 scores an echoed prompt; without echo it would ask for nothing
    expect(parseCompletionBody({ prompt: 'x', echo: true, max_tokens: 0 }).options.maxNewTokens).toBe(0)
    expect(refusal(() => parseCompletionBody({ prompt: 'x', max_tokens: 0 })).param).toBe('max_tokens')
  })

  it('refuses values out of range, naming the field and the value', () => {
    const bad: Array<[string, unknown]> = [['n', 0], ['n', 9], ['n', 1.5], ['max_tokens', 0], ['max_tokens', 2.5], ['temperature', -1], ['temperature', 'hot'],
      ['top_p', 1.5], ['top_k', -2], ['repetition_penalty', 0], ['seed', -1], ['stop', ['']], ['stop', 7],
      ['stop', Array.from({ length: 17 }, (_, i) => `s${i}`)], ['stream', 'yes'], ['model', 7], ['stream_options', { include_usage: 1 }]]
    for (const [field, value] of bad) {
      const err = refusal(() => parseCompletionBody({ prompt: 'x', [field]: value }))
      expect([err.status, err.param]).toEqual([400, field])
    }
    expect(refusal(() => parseCompletionBody({ prompt: 'x', temperature: -1 })).message).toContain('got -1')
  })

  it('refuses a body that is not an object', () => {
    for (const body of [null, [], 'text', 3]) expect(refusal(() => parseCompletionBody(body)).param).toBe('body')
  })
})
