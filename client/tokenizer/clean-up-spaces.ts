/** transformers' `clean_up_tokenization` replacements, applied in this order. */
const REPLACEMENTS: ReadonlyArray<readonly [string, string]> = [
  [' .', '.'], [' ?', '?'], [' !', '!'], [' ,', ','], [" ' ", "'"],
  [" n't", "n't"], [" 'm", "'m"], [" 's", "'s"], [" 've", "'ve"], [" 're", "'re"]
]

/** Removes the space before punctuation and English contractions, as transformers does when `clean_up_tokenization_spaces` is set. */
export function cleanUpSpaces (text: string): string {
  let out = text
  for (const [from, to] of REPLACEMENTS) out = out.split(from).join(to)
  return out
}

/**
 * Where text that may still change under `cleanUpSpaces` begins: the last space, when what follows it
 * is the start of a pattern (" n" may become "n't"); else `end`. Streaming holds this tail back.
 */
export function cleanUpSafeEnd (text: string, end: number): number {
  const space = text.lastIndexOf(' ', end - 1)
  if (space < 0) return end
  const tail = text.slice(space, end)
  return REPLACEMENTS.some(([from]) => from.startsWith(tail) && from.length > tail.length) ? space : end
}
