// The OpenAI wire format: request bodies checked field by field into SDK options, SDK errors
// mapped to OpenAI errors (`{ error: { message, type, param, code } }` with an HTTP status), and
// the response and stream-chunk objects of /v1/completions and /v1/chat/completions.
import type { ChatMessage, GenerateOptions, Usage } from '../../client/index.ts'

/** An error as the API answers it. */
export class ApiError extends Error {
  override name = 'ApiError'
  readonly status: number
  readonly type: string
  readonly param: string | null
  readonly code: string | null
  constructor (status: number, message: string, type = 'invalid_request_error', param: string | null = null, code: string | null = null) {
    super(message)
    this.status = status
    this.type = type
    this.param = param
    this.code = code
  }

  body (): { error: { message: string, type: string, param: string | null, code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

/** Bytes of prompt text (or message contents) accepted in one request. */
export const MAX_PROMPT_CHARS = 256 * 1024
const MAX_MESSAGES = 256

/** An SDK error (or anything else) as an ApiError. */
export function toApiError (err: unknown): ApiError {
  if (err instanceof ApiError) return err
  const e = err as Error & { param?: string, code?: string, status?: string }
  switch (e?.name) {
    case 'InvalidRequestError': return new ApiError(400, e.message, 'invalid_request_error', e.param === undefined ? null : snake(e.param), e.code ?? null)
    case 'ModelNotFoundError': return new ApiError(404, e.message, 'invalid_request_error', 'model', 'model_not_found')
    case 'NoRouteError': return new ApiError(503, e.message, 'service_unavailable', null, 'no_route')
    case 'TokenizerUnavailableError': return new ApiError(503, e.message, 'service_unavailable', 'model', 'tokenizer_unavailable')
    case 'ConsensusNotImplementedError': return new ApiError(400, e.message, 'invalid_request_error', null, 'not_implemented')
    case 'InferenceFailedError': return new ApiError(502, `inference failed: ${e.message}`, 'api_error', null, typeof e.status === 'string' ? e.status.toLowerCase() : 'inference_failed')
    default: return new ApiError(500, 'internal error', 'api_error', null, 'internal_error')
  }
}

function snake (param: string): string {
  return ({ maxTokens: 'max_tokens', topP: 'top_p', topK: 'top_k' } as Record<string, string>)[param] ?? param
}

type Body = Record<string, unknown>

function body (raw: unknown): Body {
  // a JSON body sent as text/plain (fastify parses that type as a string) is taken as JSON
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw)
    } catch (err) {
      throw new ApiError(400, `the request body is not valid JSON: ${(err as Error).message}`, 'invalid_request_error', null, 'invalid_json')
    }
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ApiError(400, 'the request body must be a JSON object')
  return raw as Body
}

function optionalNumber (b: Body, key: string, min: number, max: number, integer = false): number | undefined {
  const v = b[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isSafeInteger(v))) throw new ApiError(400, `'${key}' must be ${integer ? 'an integer' : 'a number'}`, 'invalid_request_error', key, 'invalid_type')
  if (v < min || v > max) throw new ApiError(400, `'${key}' must be between ${min} and ${max}, got ${v}`, 'invalid_request_error', key, 'invalid_value')
  return v
}

function requiredString (b: Body, key: string): string {
  const v = b[key]
  if (v === undefined || v === null) throw new ApiError(400, `'${key}' is required`, 'invalid_request_error', key, 'missing_required_parameter')
  if (typeof v !== 'string' || v.length === 0) throw new ApiError(400, `'${key}' must be a non-empty string`, 'invalid_request_error', key, 'invalid_type')
  return v
}

function stops (b: Body): string[] | undefined {
  const v = b.stop
  if (v === undefined || v === null) return undefined
  const list = typeof v === 'string' ? [v] : v
  if (!Array.isArray(list) || list.length > 4 || !list.every((s) => typeof s === 'string' && s.length > 0 && s.length <= 256)) {
    throw new ApiError(400, "'stop' must be a string or an array of at most 4 non-empty strings", 'invalid_request_error', 'stop', 'invalid_value')
  }
  return list as string[]
}

/** The fields both endpoints share. */
export interface ParsedRequest {
  model: string
  stream: boolean
  includeUsage: boolean
  options: Omit<GenerateOptions, 'prompt' | 'model' | 'signal'>
}

function common (b: Body, maxTokensKey: string): ParsedRequest {
  const model = requiredString(b, 'model')
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw new ApiError(400, "'stream' must be a boolean", 'invalid_request_error', 'stream', 'invalid_type')
  const n = optionalNumber(b, 'n', 1, 1, true)
  void n // only n = 1 is served
  const so = b.stream_options
  if (so !== undefined && so !== null && (typeof so !== 'object' || Array.isArray(so))) throw new ApiError(400, "'stream_options' must be an object", 'invalid_request_error', 'stream_options', 'invalid_type')
  // absurd values are refused here; the context check (prompt + max_tokens) is the SDK's
  const maxTokens = optionalNumber(b, maxTokensKey, 1, 1_000_000, true)
  const temperature = optionalNumber(b, 'temperature', 0, 2)
  const topP = optionalNumber(b, 'top_p', 0, 1)
  const seed = optionalNumber(b, 'seed', 0, Number.MAX_SAFE_INTEGER, true)
  const stop = stops(b)
  const consensus = consensusOf(b)
  return {
    model,
    stream: b.stream === true,
    includeUsage: (so as { include_usage?: unknown } | undefined)?.include_usage === true,
    options: {
      ...(maxTokens !== undefined ? { maxTokens } : {}),
      ...(temperature !== undefined ? { temperature } : {}),
      // OpenAI's top_p 0 means "only the most likely token": the engine's sampler reads 0 as off
      ...(topP !== undefined ? { topP: topP === 0 ? Number.MIN_VALUE : topP } : {}),
      ...(seed !== undefined ? { seed } : {}),
      ...(stop !== undefined ? { stop } : {}),
      ...(consensus !== undefined ? { consensus } : {})
    }
  }
}

/** Mycelium's extension (issue 7): `consensus: { k, deadline_ms }` (or `true`) asks for a consensus round. */
function consensusOf (b: Body): { k?: number, deadlineMs?: number } | undefined {
  const c = b.consensus
  if (c === undefined || c === null || c === false) return undefined
  if (c === true) return {}
  if (typeof c !== 'object' || Array.isArray(c)) throw new ApiError(400, "'consensus' must be an object { k, deadline_ms } or a boolean", 'invalid_request_error', 'consensus', 'invalid_type')
  const o = c as Body
  const k = optionalNumber(o, 'k', 2, 16, true)
  const deadlineMs = optionalNumber(o, 'deadline_ms', 1, 600_000, true)
  return { ...(k !== undefined ? { k } : {}), ...(deadlineMs !== undefined ? { deadlineMs } : {}) }
}

/**
 * POST /v1/completions: `prompt` is a string, a one-element array of one, or token ids (as
 * OpenAI allows; ids are checked against the model's vocabulary by the SDK). Default max_tokens
 * 16, as OpenAI.
 */
export function parseCompletion (raw: unknown): ParsedRequest & { prompt: string | number[] } {
  const b = body(raw)
  const parsed = common(b, 'max_tokens')
  let prompt = b.prompt
  if (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === 'string' || Array.isArray(prompt[0]))) prompt = prompt[0]
  if (prompt === undefined || prompt === null) throw new ApiError(400, "'prompt' is required", 'invalid_request_error', 'prompt', 'missing_required_parameter')
  if (Array.isArray(prompt) && prompt.length > 0 && prompt.length <= MAX_PROMPT_CHARS && prompt.every((t) => Number.isSafeInteger(t))) {
    if (b.echo === true) throw new ApiError(400, "'echo' is not supported", 'invalid_request_error', 'echo', 'unsupported_parameter')
    return { ...parsed, options: { maxTokens: 16, ...parsed.options }, prompt: prompt as number[] }
  }
  if (typeof prompt !== 'string') throw new ApiError(400, "'prompt' must be a string or an array of token ids (batches of prompts are not served)", 'invalid_request_error', 'prompt', 'invalid_type')
  if (prompt.length > MAX_PROMPT_CHARS) throw new ApiError(400, `'prompt' is longer than ${MAX_PROMPT_CHARS} characters`, 'invalid_request_error', 'prompt', 'context_length_exceeded')
  if (b.echo === true) throw new ApiError(400, "'echo' is not supported", 'invalid_request_error', 'echo', 'unsupported_parameter')
  if (b.logprobs !== undefined && b.logprobs !== null && b.logprobs !== 0) throw new ApiError(400, "'logprobs' is not supported", 'invalid_request_error', 'logprobs', 'unsupported_parameter')
  return { ...parsed, options: { maxTokens: 16, ...parsed.options }, prompt }
}

/** POST /v1/chat/completions: `messages` of { role, content: string | text parts }. */
export function parseChat (raw: unknown): ParsedRequest & { messages: ChatMessage[] } {
  const b = body(raw)
  const parsed = common(b, b.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens')
  const list = b.messages
  if (list === undefined || list === null) throw new ApiError(400, "'messages' is required", 'invalid_request_error', 'messages', 'missing_required_parameter')
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_MESSAGES) throw new ApiError(400, `'messages' must be an array of 1 to ${MAX_MESSAGES} messages`, 'invalid_request_error', 'messages', 'invalid_type')
  let chars = 0
  const messages = list.map((m: unknown, i): ChatMessage => {
    const msg = m as { role?: unknown, content?: unknown } | null
    const role = msg?.role === 'developer' ? 'system' : msg?.role
    if (msg === null || typeof msg !== 'object' || (role !== 'system' && role !== 'user' && role !== 'assistant')) {
      throw new ApiError(400, `messages[${i}].role must be system, developer, user or assistant`, 'invalid_request_error', `messages[${i}].role`, 'invalid_value')
    }
    let content = msg.content
    if (Array.isArray(content)) {
      if (!content.every((p: { type?: unknown, text?: unknown }) => p?.type === 'text' && typeof p.text === 'string')) {
        throw new ApiError(400, `messages[${i}].content: only text parts are supported`, 'invalid_request_error', `messages[${i}].content`, 'invalid_value')
      }
      content = content.map((p: { text: string }) => p.text).join('')
    }
    if (typeof content !== 'string') throw new ApiError(400, `messages[${i}].content must be a string`, 'invalid_request_error', `messages[${i}].content`, 'invalid_type')
    chars += content.length
    return { role, content }
  })
  if (chars > MAX_PROMPT_CHARS) throw new ApiError(400, `the messages are longer than ${MAX_PROMPT_CHARS} characters`, 'invalid_request_error', 'messages', 'context_length_exceeded')
  return { ...parsed, messages }
}

export function usageOf (u: Usage): { prompt_tokens: number, completion_tokens: number, total_tokens: number } {
  return { prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, total_tokens: u.totalTokens }
}

export interface Ids { id: string, created: number, model: string }

export function completionChunk (ids: Ids, text: string, finish: string | null): Record<string, unknown> {
  return { id: ids.id, object: 'text_completion', created: ids.created, model: ids.model, choices: [{ text, index: 0, logprobs: null, finish_reason: finish }] }
}

export function chatChunk (ids: Ids, delta: Record<string, unknown>, finish: string | null): Record<string, unknown> {
  return { id: ids.id, object: 'chat.completion.chunk', created: ids.created, model: ids.model, system_fingerprint: null, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] }
}
