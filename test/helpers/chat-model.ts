import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BUNDLED_MODEL } from './fixtures.js'

/** Zephyr's chat template (TinyLlama-1.1B-Chat uses it), as its tokenizer_config.json has it. */
export const ZEPHYR_TEMPLATE = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"

/** ChatML (Qwen2 instruct models), with the default system message left out. */
export const CHATML_TEMPLATE = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

/**
 * A copy of the bundled stories260k (folder name "stories260k", so a swarm serving the
 * original serves it) whose tokenizer_config.json gains `chat_template`. Not a chat model:
 * its replies are stories, which is all the tests need of them.
 */
export function chatModelCopy (template: string | unknown = ZEPHYR_TEMPLATE): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'petal-chat-')), 'stories260k')
  cpSync(BUNDLED_MODEL, dir, { recursive: true })
  const file = join(dir, 'tokenizer_config.json')
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), chat_template: template }))
  return dir
}
