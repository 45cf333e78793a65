// Token stream → text: concatenates token bytes and yields only whole UTF-8 characters, holding
// back the first bytes of a character split across tokens until the token that completes it.

import type { Tokenizer } from './index.ts'

export interface TextStream {
  /** The text that `token` (after `prev`) completes; may be '' while a character is split. */
  push(prev: number, token: number): string
  /** Whatever is still held back (a truncated character decodes as U+FFFD). */
  flush(): string
}

export function createTextStream (tokenizer: Tokenizer): TextStream {
  const decoder = new TextDecoder('utf-8')
  return {
    push: (prev, token) => decoder.decode(tokenizer.decodeTokenBytes(prev, token), { stream: true }),
    flush: () => decoder.decode()
  }
}
