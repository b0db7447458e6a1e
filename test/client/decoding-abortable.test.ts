import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { abortable } from '../../client/decoding/abortable.js'

describe('abortable', () => {
  it('passes the result through and removes its listener', async () => {
    const { signal } = new AbortController()
    const pending = abortable(Promise.resolve(7), signal)
    expect(getEventListeners(signal, 'abort')).toHaveLength(1)
    expect(await pending).toBe(7)
    expect(getEventListeners(signal, 'abort')).toHaveLength(0)
  })

  it('passes a rejection through', async () => {
    const err = new Error('boom')
    await expect(abortable(Promise.reject(err), new AbortController().signal)).rejects.toBe(err)
  })

  it('rejects at once with the reason of an already aborted signal', async () => {
    const reason = new Error('already')
    await expect(abortable(new Promise(() => {}), AbortSignal.abort(reason))).rejects.toBe(reason)
  })

  it('rejects with the reason when the signal aborts first', async () => {
    const controller = new AbortController()
    const reason = new Error('later')
    const pending = abortable(new Promise(() => {}), controller.signal)
    controller.abort(reason)
    await expect(pending).rejects.toBe(reason)
  })
})
