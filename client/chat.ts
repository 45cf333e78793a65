// Chat messages → one prompt. The engine's tokenizers carry no chat template today (neither the
// llama2.c tokenizer nor the Hugging Face one as the engine loads it), so every model gets the
// plain form: the messages' contents joined by a newline, roles dropped. For the stories models
// (trained on plain stories, no roles) that is the only sensible prompt; a chat-tuned model
// needs its template, which comes with tokenizer templates in the engine.
import { InvalidRequestError } from './errors.ts'

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant'
  content: string
}

/** The prompt text for `messages` (see above). Throws InvalidRequestError on a malformed message. */
export function chatPrompt (messages: readonly ChatMessage[]): string {
  if (!Array.isArray(messages) || messages.length === 0) throw new InvalidRequestError('messages must be a non-empty array', 'messages')
  return messages.map((m) => {
    if (m === null || typeof m !== 'object' || typeof m.content !== 'string' || !['system', 'user', 'assistant'].includes(m.role)) {
      throw new InvalidRequestError('each message needs a role (system, user or assistant) and a string content', 'messages')
    }
    return m.content
  }).join('\n')
}
