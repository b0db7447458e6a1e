/**
 * GPT-2's byte-level alphabet, which byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, SmolLM)
 * use: every byte has a printable character of its own, so a vocabulary of byte strings can
 * be written as text and no input is ever unknown. Printable Latin-1 bytes ('!'..'~', '¡'..'¬',
 * '®'..'ÿ') stand for themselves; the other 68 bytes take U+0100 and up, in byte order (space,
 * 0x20, is 'Ġ' U+0120; newline is 'Ċ' U+010A).
 */
const BYTE_TO_CHAR: readonly string[] = (() => {
  const keeps = (b: number): boolean => (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
  const chars: string[] = []
  let next = 0x100
  for (let b = 0; b < 256; b++) chars.push(String.fromCharCode(keeps(b) ? b : next++))
  return chars
})()

const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]))
const utf8Encoder = new TextEncoder()
const utf8Lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true })

/**
 * GPT-2's word split (the ByteLevel pre-tokenizer's `use_regex`): contractions, letters with an
 * optional leading space, digits likewise, other symbols likewise, then runs of spaces (all
 * but the last space of a run that precedes a word go on their own).
 */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu

/** Text -> the byte-level characters of its UTF-8 bytes ("é" -> "Ã©", " a" -> "Ġa"). */
export function toByteLevel (text: string): string {
  let out = ''
  for (const b of utf8Encoder.encode(text)) out += BYTE_TO_CHAR[b] as string
  return out
}

/**
 * Token strings -> text: their byte-level characters back to bytes, decoded as UTF-8 with
 * U+FFFD for invalid sequences. A token holding a character outside the alphabet (an added
 * token written as plain text) contributes its own UTF-8 bytes, as Hugging Face does.
 */
export function fromByteLevel (tokens: readonly string[]): string {
  const bytes: number[] = []
  for (const token of tokens) {
    const mapped: number[] = []
    let plain = false
    for (const c of token) {
      const b = CHAR_TO_BYTE.get(c)
      if (b === undefined) { plain = true; break }
      mapped.push(b)
    }
    if (plain) bytes.push(...utf8Encoder.encode(token))
    else bytes.push(...mapped)
  }
  return utf8Lossy.decode(Uint8Array.from(bytes))
}

/**
 * Cuts `text` at the matches of a global regex, as Hugging Face's Split does: `Isolated` makes
 * every match and every stretch between matches a piece; `Removed` drops the matches;
 * `MergedWithPrevious` / `MergedWithNext` glue each match to the stretch before / after it.
 */
export function splitByPattern (text: string, pattern: string | RegExp, behavior: SplitBehavior): string[] {
  const regex = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu') : pattern
  const spans: Array<{ text: string, match: boolean }> = []
  let at = 0
  const push = (from: number, to: number, match: boolean): void => { if (to > from) spans.push({ text: text.slice(from, to), match }) }
  for (const m of text.matchAll(regex)) {
    if (m[0] === '') continue
    push(at, m.index, false)
    push(m.index, m.index + m[0].length, true)
    at = m.index + m[0].length
  }
  push(at, text.length, false)
  if (behavior === 'Isolated') return spans.map(s => s.text)
  if (behavior === 'Removed') return spans.filter(s => !s.match).map(s => s.text)
  const pieces: string[] = []
  spans.forEach((s, i) => {
    const glued = behavior === 'MergedWithPrevious' ? s.match : spans[i - 1]?.match === true
    if (glued && pieces.length > 0) pieces[pieces.length - 1] += s.text
    else pieces.push(s.text)
  })
  return pieces
}

export type SplitBehavior = 'Isolated' | 'Removed' | 'MergedWithPrevious' | 'MergedWithNext'
