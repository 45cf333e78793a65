// The OpenAI-compatible HTTP API (fastify) on top of an SDK client: /v1/models,
// /v1/completions, /v1/chat/completions (JSON or SSE), /metrics (Prometheus), /health. Every
// failure is an OpenAI error object; nothing a request sends can crash the process.
import { randomBytes } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import Fastify from 'fastify'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ChatMessage, GenerateEvent, GenerateOptions, MyceliumClient } from '../../client/index.ts'
import { createMetrics } from './metrics.ts'
import type { ApiMetrics } from './metrics.ts'
import { ApiError, chatChunk, completionChunk, parseChat, parseCompletion, toApiError, usageOf } from './openai.ts'
import type { Ids, ParsedRequest } from './openai.ts'

/** Request bodies above this are refused with 413 before parsing. */
export const API_BODY_LIMIT_BYTES = 1024 * 1024
/** Generations one API server runs at once (each holds a session on every stage of its chain). */
export const API_MAX_IN_FLIGHT = 64

export interface ApiOptions {
  client: MyceliumClient
  host?: string
  /** 0 picks a free port. */
  port: number
  /** Extra model names → manifest ids (the daemon maps its model file's name, e.g. `stories260K`). */
  aliases?: () => Record<string, string>
  bodyLimit?: number
  /** Generations in flight at once; more are answered 429 (default API_MAX_IN_FLIGHT). */
  maxInFlight?: number
}

export interface ApiServer {
  url: string
  port: number
  metrics: ApiMetrics
  close: () => Promise<void>
}

function newId (prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('hex')}`
}

export async function startApi (options: ApiOptions): Promise<ApiServer> {
  const { client } = options
  const metrics = createMetrics()
  const app: FastifyInstance = Fastify({ bodyLimit: options.bodyLimit ?? API_BODY_LIMIT_BYTES, logger: false, return503OnClosing: true })
  const started = new WeakMap<FastifyRequest, number>()

  const aliases = (): Record<string, string> => options.aliases?.() ?? {}
  /** A requested model name → manifest id (aliases first); unknown names pass through for the SDK to refuse. */
  const modelId = (name: string): string => aliases()[name] ?? name

  const routeOf = (request: FastifyRequest): string => request.routeOptions.url ?? 'unknown'
  const sendError = async (reply: FastifyReply, err: unknown): Promise<void> => {
    const e = toApiError(err)
    metrics.errors.inc({ type: e.code ?? e.type })
    await reply.code(e.status).type('application/json').send(e.body())
  }

  app.addHook('onRequest', async (request) => { started.set(request, performance.now()) })
  app.addHook('onResponse', async (request, reply) => {
    const route = routeOf(request)
    metrics.requests.inc({ route, status: String(reply.statusCode) })
    const t0 = started.get(request)
    if (t0 !== undefined) metrics.latency.observe({ route }, (performance.now() - t0) / 1000)
  })
  // bad JSON, wrong content type, oversized body, …: fastify's errors in OpenAI form
  app.setErrorHandler(async (err: Error & { statusCode?: number, code?: string }, _request, reply) => {
    if (err instanceof ApiError || err.statusCode === undefined || err.statusCode >= 500) { await sendError(reply, err); return }
    const code = err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? 'body_too_large' : err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'unsupported_media_type' : err.name === 'SyntaxError' || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ? 'invalid_json' : 'invalid_request'
    const message = code === 'invalid_json' ? `the request body is not valid JSON: ${err.message}` : err.message
    await sendError(reply, new ApiError(err.statusCode, message, 'invalid_request_error', null, code))
  })
  app.setNotFoundHandler(async (request, reply) => {
    await sendError(reply, new ApiError(404, `no route ${request.method} ${request.url.split('?')[0]}`, 'invalid_request_error', null, 'unknown_url'))
  })

  const modelList = (): Array<{ id: string, object: 'model', created: number, owned_by: string }> => {
    const ids = client.models().filter((m) => m.nodes.length > 0).map((m) => m.id)
    const names = Object.entries(aliases()).filter(([, id]) => ids.includes(id)).map(([name]) => name)
    return [...names, ...ids].map((id) => ({ id, object: 'model', created: 0, owned_by: 'mycelium' }))
  }

  app.get('/health', async () => {
    const models = client.models()
    return { status: 'ok', peerId: client.peerId, swarm: client.swarmName, models: models.length, covered: models.filter((m) => m.covered).map((m) => m.id) }
  })
  app.get('/metrics', async (_request, reply) => {
    await reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
  app.get('/v1/models', async () => ({ object: 'list', data: modelList() }))
  app.get('/v1/models/:model', async (request, reply) => {
    const name = (request.params as { model: string }).model
    const found = modelList().find((m) => m.id === name)
    if (found === undefined) { await sendError(reply, new ApiError(404, `The model '${name}' does not exist`, 'invalid_request_error', 'model', 'model_not_found')); return }
    return found
  })

  /** At most maxInFlight generations at once (429 beyond): each holds a session on every stage. */
  let inFlight = 0
  const maxInFlight = options.maxInFlight ?? API_MAX_IN_FLIGHT
  const serve = async (request: FastifyRequest, reply: FastifyReply, parsed: ParsedRequest, run: (o: Omit<GenerateOptions, 'prompt'>) => AsyncGenerator<GenerateEvent>, chat: boolean): Promise<void> => {
    if (inFlight >= maxInFlight) {
      await sendError(reply, new ApiError(429, `${maxInFlight} generations are running on this node; retry shortly`, 'rate_limit_error', null, 'too_many_requests'))
      return
    }
    inFlight++
    try {
      await generateFor(request, reply, parsed, run, chat)
    } finally {
      inFlight--
    }
  }

  /**
   * Runs one generation for a parsed request. The first event is awaited before anything is
   * sent, so errors at routing/open time are ordinary JSON errors even for `stream: true`.
   */
  const generateFor = async (request: FastifyRequest, reply: FastifyReply, parsed: ParsedRequest, run: (o: Omit<GenerateOptions, 'prompt'>) => AsyncGenerator<GenerateEvent>, chat: boolean): Promise<void> => {
    const route = routeOf(request)
    const abort = new AbortController()
    // the caller went away: stop generating (frees every stage)
    reply.raw.on('close', () => { if (!reply.raw.writableFinished) abort.abort(new Error('client disconnected')) })
    const id = modelId(parsed.model)
    // an unknown model is a 404 at once — unless the replica knows no model yet (a client that
    // just joined): then the SDK waits for the records like for a route
    try {
      client.resolveModel(id)
    } catch (err) {
      if (client.models().length > 0) { await sendError(reply, err); return }
    }
    const genStart = performance.now()
    const events = run({ ...parsed.options, model: id, signal: abort.signal })
    let first: IteratorResult<GenerateEvent>
    try {
      first = await events.next()
    } catch (err) {
      if (abort.signal.aborted) return
      await sendError(reply, err)
      return
    }
    const t0 = started.get(request) ?? performance.now()
    metrics.firstToken.observe({ route }, (performance.now() - t0) / 1000)
    const ids: Ids = { id: newId(chat ? 'chatcmpl' : 'cmpl'), created: Math.floor(Date.now() / 1000), model: parsed.model }
    if (!parsed.stream) {
      let done: Extract<GenerateEvent, { type: 'done' }> | undefined
      try {
        for (let r = first; r.done !== true; r = await events.next()) if (r.value.type === 'done') done = r.value
      } catch (err) {
        if (abort.signal.aborted) return
        await sendError(reply, err)
        return
      }
      if (done === undefined) { await sendError(reply, new Error('generation ended without a result')); return }
      count(metrics, done)
      const usage = usageOf(done.usage)
      // time inside the SDK (routing, the stages, tokenizing): the rest of a request's time is the API's
      void reply.header('x-mycelium-generate-ms', (performance.now() - genStart).toFixed(3))
      // a consensus round's ranking rides along as `consensus` (issue 7)
      await reply.send({ ...(chat
        ? { id: ids.id, object: 'chat.completion', created: ids.created, model: ids.model, system_fingerprint: null, choices: [{ index: 0, message: { role: 'assistant', content: done.text, refusal: null }, logprobs: null, finish_reason: done.finishReason }], usage }
        : { id: ids.id, object: 'text_completion', created: ids.created, model: ids.model, choices: [{ text: done.text, index: 0, logprobs: null, finish_reason: done.finishReason }], usage }), ...(done.consensus !== undefined ? { consensus: done.consensus } : {}) })
      return
    }
    // SSE: `data: {chunk}\n\n` per token, the finish chunk, optional usage chunk, `data: [DONE]`
    reply.hijack()
    const raw: ServerResponse = reply.raw
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' })
    const write = (obj: unknown): void => { if (!raw.destroyed) raw.write(`data: ${JSON.stringify(obj)}\n\n`) }
    const piece = (text: string): Record<string, unknown> => (chat ? chatChunk(ids, { content: text }, null) : completionChunk(ids, text, null))
    if (chat) write(chatChunk(ids, { role: 'assistant', content: '' }, null))
    try {
      for (let r = first; r.done !== true; r = await events.next()) {
        const ev = r.value
        if (ev.type === 'token') {
          if (ev.text !== '') write(piece(ev.text))
          continue
        }
        count(metrics, ev)
        if (ev.tail !== '') write(piece(ev.tail))
        // a consensus round's ranking rides on the finish chunk (issue 7)
        write({ ...(chat ? chatChunk(ids, {}, ev.finishReason) : completionChunk(ids, '', ev.finishReason)), ...(ev.consensus !== undefined ? { consensus: ev.consensus } : {}) })
        if (parsed.includeUsage) write({ id: ids.id, object: chat ? 'chat.completion.chunk' : 'text_completion', created: ids.created, model: ids.model, choices: [], usage: usageOf(ev.usage) })
      }
    } catch (err) {
      if (!abort.signal.aborted) {
        const e = toApiError(err)
        metrics.errors.inc({ type: e.code ?? e.type })
        write(e.body())
      }
    }
    // fastify still runs onResponse for a reply sent through reply.raw: it counts this request
    if (!raw.destroyed) raw.end('data: [DONE]\n\n')
  }

  app.post('/v1/completions', async (request, reply) => {
    let parsed: ReturnType<typeof parseCompletion>
    try { parsed = parseCompletion(request.body) } catch (err) { await sendError(reply, err); return }
    await serve(request, reply, parsed, (o) => client.generate({ ...o, prompt: parsed.prompt }), false)
  })
  app.post('/v1/chat/completions', async (request, reply) => {
    let parsed: ParsedRequest & { messages: ChatMessage[] }
    try { parsed = parseChat(request.body) } catch (err) { await sendError(reply, err); return }
    await serve(request, reply, parsed, (o) => client.chat(parsed.messages, o), true)
  })

  const address = await app.listen({ host: options.host ?? '127.0.0.1', port: options.port })
  const port = (app.server.address() as { port: number }).port
  return {
    url: address.replace('[::1]', 'localhost'),
    port,
    metrics,
    close: async () => { await app.close() }
  }
}

function count (metrics: ApiMetrics, done: Extract<GenerateEvent, { type: 'done' }>): void {
  metrics.tokens.inc({ kind: 'prompt' }, done.usage.promptTokens)
  metrics.tokens.inc({ kind: 'completion' }, done.usage.completionTokens)
}
