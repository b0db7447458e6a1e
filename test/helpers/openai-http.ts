/** Requests to an OpenAiServer in tests: JSON posts, streamed events, the SDK's result to compare with. */
import { expect } from 'vitest'
import { OpenAiServer, type OpenAiServerInit } from '../../client/openai/openai-server.js'
import type { GenerationResult } from '../../client/text-generation.js'

export async function post (server: OpenAiServer, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, json: any, headers: Headers }> {
  const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  return { status: res.status, json: await res.json(), headers: res.headers }
}

/** The events of a streamed response, `[DONE]` as the string. */
export async function events (server: OpenAiServer, path: string, body: unknown): Promise<any[]> {
  const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body as object, stream: true }) })
  expect(res.headers.get('content-type')).toBe('text/event-stream')
  const text = await res.text()
  return text.split('\n\n').filter(e => e !== '').map(e => {
    expect(e.startsWith('data: ')).toBe(true)
    const data = e.slice('data: '.length)
    return data === '[DONE]' ? data : JSON.parse(data)
  })
}

export async function sdkResult (stream: AsyncGenerator<unknown, GenerationResult>): Promise<GenerationResult> {
  for (;;) {
    const next = await stream.next()
    if (next.done === true) return next.value
  }
}

export async function withServer<T> (init: Omit<OpenAiServerInit, 'modelId'>, use: (server: OpenAiServer) => Promise<T>): Promise<T> {
  const server = await OpenAiServer.listen({ modelId: 'stories260k', ...init }, { port: 0 })
  try {
    return await use(server)
  } finally {
    await server.close()
  }
}
