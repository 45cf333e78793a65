// The SDK's client object over any libp2p node that replicates the swarm state: a light peer from
// `connect()` (connect.ts), or a daemon's own host (the HTTP API in node/api/). Text is tokenized
// here with the model's tokenizer; the chain comes from the router over the replicated records;
// the stages run the layers and stream token ids back (protocols/inference).
import { peerIdFromString } from '@libp2p/peer-id'
import type { AbortOptions, PeerId, Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createTextStream } from '../engine/index.ts'
import type { Tokenizer } from '../engine/index.ts'
import { InferenceFailedError, chainRouter, inferenceProtocol, runInference } from '../protocols/index.ts'
import type { ChainHop, FrameSigner } from '../protocols/index.ts'
import { ShardUnavailableError } from '../sharding/index.ts'
import { AbortError, ConsensusNotImplementedError, InvalidRequestError, ModelNotFoundError, NoRouteError, TokenizerUnavailableError } from './errors.ts'
import { check, checkOptions } from './options.ts'
import { listModels } from './route.ts'
import type { ModelInfo } from './route.ts'
import { chatPrompt } from './chat.ts'
import { stopMatcher } from './stop.ts'
import { reputationSummary, runConsensusRound } from './consensus.ts'
import { auditPlainRequest, auditSampled } from './consensus-audit.ts'
import type { ClientInit, GenerateEvent, GenerateOptions, MyceliumClient } from './types.ts'

const DEFAULT_MAX_TOKENS = 128
const DEFAULT_ROUTE_WAIT_MS = 10_000
/** Tries to open a chain before giving up, however short routeWaitMs is. */
const MIN_OPEN_ATTEMPTS = 3

function abortError (signal: AbortSignal | undefined, cause?: unknown): AbortError {
  return new AbortError('generation aborted', { cause: cause ?? signal?.reason })
}

/** A client over an existing libp2p node and swarm-state replica. */
export function createClient (init: ClientInit): MyceliumClient {
  const { libp2p, swarm, state } = init
  // the owner's signature on its prompts: ours, or the daemon's stage service's (same identity key)
  const signer = init.signer ?? (libp2p as { services?: { inference?: { signer?: FrameSigner } } }).services?.inference?.signer
  const protocol = inferenceProtocol(swarm)
  const online = init.online ?? (() => state.online())
  const routeWaitMs = init.routeWaitMs ?? DEFAULT_ROUTE_WAIT_MS
  const tokenizers = new Map<string, Promise<Tokenizer>>()
  const closing = new AbortController()
  let closed: Promise<void> | undefined

  const models = (): ModelInfo[] => listModels(state, online())

  const resolveModel = (model?: string): ModelInfo => {
    const all = models()
    if (model !== undefined) {
      const found = all.find((m) => m.id === model)
      if (found === undefined) throw new ModelNotFoundError(model, `model ${model} is not offered in swarm ${swarm}`)
      return found
    }
    const served = all.filter((m) => m.nodes.length > 0)
    if (served.length === 1) return served[0]
    throw new ModelNotFoundError(undefined, served.length === 0 ? `no model is served in swarm ${swarm} yet` : `${served.length} models are served in swarm ${swarm}: name one (${served.map((m) => m.id.slice(0, 12)).join(', ')})`)
  }

  /**
   * Retries `find` (on state changes and every 250 ms, up to routeWaitMs) while it throws
   * ModelNotFoundError or NoRouteError: a fresh client has not replicated the records yet, and
   * a swarm that is moving layers has gaps for a moment.
   */
  const waitFor = async <T>(find: () => T, signal: AbortSignal, deadline = Date.now() + routeWaitMs): Promise<T> => {
    for (;;) {
      try {
        return find()
      } catch (err) {
        if (!(err instanceof ModelNotFoundError) && !(err instanceof NoRouteError)) throw err
        if (signal.aborted) throw abortError(signal)
        if (Date.now() >= deadline) throw err
      }
      await nextChange(signal, deadline)
    }
  }

  /** Resolves on the next swarm-state change, after 250 ms (presence expiry emits no change), at the deadline, or on abort. */
  const nextChange = async (signal: AbortSignal, deadline: number): Promise<void> => {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.min(250, Math.max(1, deadline - Date.now())))
      const off = state.onChange(done)
      signal.addEventListener('abort', done, { once: true })
      function done (): void { clearTimeout(timer); off(); signal.removeEventListener('abort', done); resolve() }
    })
  }

  const tokenizerFor = async (model: ModelInfo): Promise<Tokenizer> => {
    let t = tokenizers.get(model.id)
    if (t === undefined) {
      const option = init.tokenizer
      t = (async () => {
        const found = option === undefined ? undefined : typeof option === 'function' ? await option(model.manifest) : option
        if (found === undefined) throw new TokenizerUnavailableError(`no tokenizer for model ${model.id.slice(0, 12)}: pass \`tokenizer\` to connect (the model's tokenizer file)`)
        if (found.vocabSize !== model.manifest.vocabSize) throw new TokenizerUnavailableError(`the tokenizer has ${found.vocabSize} tokens, model ${model.id.slice(0, 12)} has ${model.manifest.vocabSize}`)
        return found
      })()
      tokenizers.set(model.id, t)
      t.catch(() => { tokenizers.delete(model.id) })
    }
    return await t
  }

  /** Opens a stream to a stage, teaching the peer store the addresses its record publishes. */
  const openStream = async (peer: PeerId | string, proto: string, options: AbortOptions): Promise<Stream> => {
    const id = typeof peer === 'string' ? peerIdFromString(peer) : peer
    if (init.openLocal !== undefined && id.equals(libp2p.peerId)) return await init.openLocal(proto, options)
    if (libp2p.getConnections(id).length === 0) {
      const addrs = state.nodes().get(id.toString())?.addresses ?? []
      const multiaddrs = addrs.flatMap((a) => { try { return [multiaddr(a)] } catch { return [] } }) // reason: a bad address in a record is skipped
      if (multiaddrs.length > 0) await libp2p.peerStore.merge(id, { multiaddrs })
    }
    return await libp2p.dialProtocol(id, proto, options)
  }

  async function * generate (options: GenerateOptions): AsyncGenerator<GenerateEvent> {
    checkOptions(options)
    const consensus = options.consensus === undefined || options.consensus === false ? undefined : options.consensus === true ? {} : options.consensus
    if (consensus !== undefined && init.consensus === undefined) {
      throw new ConsensusNotImplementedError('this client has no consensus host (createClient needs `consensus`; connect() and the daemon API pass one)')
    }
    const signal = options.signal === undefined ? closing.signal : AbortSignal.any([options.signal, closing.signal])
    if (signal.aborted) throw abortError(signal)
    const info = await waitFor(() => resolveModel(options.model), signal)
    const tokenizer = await tokenizerFor(info)
    const { prompt: input } = options
    let prompt: number[]
    if (typeof input === 'string') {
      prompt = tokenizer.encode(input, { bos: true })
    } else {
      check(Array.isArray(input) && input.length > 0 && input.every((t) => Number.isInteger(t) && t >= 0 && t < info.manifest.vocabSize), `prompt token ids must be integers in [0, ${info.manifest.vocabSize})`, 'prompt')
      prompt = input
    }
    const context = info.manifest.seqLen
    const maxTokens = options.maxTokens ?? Math.min(DEFAULT_MAX_TOKENS, Math.max(1, context - prompt.length))
    if (prompt.length + maxTokens > context) {
      throw new InvalidRequestError(`this model's maximum context length is ${context} tokens; the prompt has ${prompt.length} and ${maxTokens} were asked for`, prompt.length >= context ? 'prompt' : 'maxTokens', 'context_length_exceeded')
    }
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
    const text = createTextStream(tokenizer)
    const stops = stopMatcher(options.stop ?? [])
    let prev = prompt[prompt.length - 1]
    let completion = 0
    let output = ''
    let chain: ChainHop[] = []
    // issue 7: a sampled fraction of plain requests gets every stage spot-checked, as a round's
    // chains are (consensus-audit.ts auditPlainRequest): the tokens, the last stage's signature of
    // each and its done receipt are kept for it; the audits run in the background
    let sessionId: string | undefined
    let sessions = 0
    const auditRate = init.consensus?.auditRate
    const sampling = { temperature: options.temperature ?? 1, topP: options.topP ?? 1, topK: options.topK ?? 0, seed }
    const seen: { tokens: number[], signatures: Array<Uint8Array<ArrayBuffer>>, receipt?: { session: string, first: number, signature: Uint8Array } } = { tokens: [], signatures: [] }
    const finish = (finishReason: 'stop' | 'length', tail = ''): GenerateEvent => {
      if (sessionId !== undefined && sessions === 1) sampleAudit(sessionId, chain)
      return { type: 'done', finishReason, model: info.id, text: output, tail, chain, usage: { promptTokens: prompt.length, completionTokens: completion, totalTokens: prompt.length + completion } }
    }
    const sampleAudit = (session: string, hops: ChainHop[]): void => {
      const host = init.consensus
      if (host === undefined || auditRate === undefined || !auditSampled(session, auditRate) || seen.tokens.length === 0) return
      void auditPlainRequest({
        swarm, model: info.id, self: libp2p.peerId.toString(), state, online, reputation: host.reputation(), openStream,
        session: { sessionId: session, chain: hops, prompt, tokens: seen.tokens, signatures: seen.signatures, ...(seen.receipt !== undefined ? { receipt: seen.receipt } : {}), sampling },
        ...(signer !== undefined ? { signer } : {})
      }).catch(() => {})
    }
    if (consensus !== undefined && init.consensus !== undefined) {
      // issue 7: k answers from chains with distinct nodes, judged and ranked (client/consensus.ts)
      const excluded = init.consensus.excluded
      const meta = await runConsensusRound({
        self: libp2p.peerId.toString(),
        swarm,
        state,
        online: excluded === undefined ? online : () => online().filter((p) => !excluded(p)),
        openStream,
        inferenceProtocol: protocol,
        info,
        tokenizer,
        prompt,
        promptText: typeof input === 'string' ? input : tokenizer.decode(prompt),
        maxTokens,
        seed,
        sampling: { temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK },
        codecBytes: 4,
        host: init.consensus,
        ...(signer !== undefined ? { signer } : {}),
        signal
      }, { ...(consensus.k ?? consensus.replicas) !== undefined ? { k: consensus.k ?? consensus.replicas } : {}, ...(consensus.deadlineMs !== undefined ? { deadlineMs: consensus.deadlineMs } : {}) })
      const withMeta = (ev: GenerateEvent): GenerateEvent => (ev.type === 'done' ? { ...ev, consensus: meta } : ev)
      const best = meta.answers.find((a) => a.id === meta.winner) ?? meta.answers[0]
      chain = best.chain
      for (const id of best.tokens) {
        completion++
        const cut = stops.push(text.push(prev, id))
        prev = id
        output += cut.text
        yield { type: 'token', id, text: cut.text }
        if (cut.stopped) { yield withMeta(finish('stop')); return }
      }
      const tail = stops.flush(text.flush())
      output += tail.text
      yield withMeta(finish(tail.stopped || completion < maxTokens ? 'stop' : 'length', tail.text))
      return
    }
    const views = { nodes: () => state.nodes(), online }
    const deadline = Date.now() + routeWaitMs
    const codecBytes = options.codec === 'f16' ? 2 : options.codec === 'int8' ? 1 : 4
    let atBound = false
    const boundEnd = (): GenerateEvent => { const tail = stops.flush(text.flush()); output += tail.text; return finish(tail.stopped ? 'stop' : 'length', tail.text) }
    const auditing = (): boolean => auditRate !== undefined && sessionId !== undefined && sessions === 1 && auditSampled(sessionId, auditRate)
    for (let attempt = 1; ; attempt++) {
      // the shared router (protocols/inference/route-chain.ts): whole published ranges, failover re-routes a span
      const router = chainRouter(views, {
        model: { id: info.id, nLayers: info.manifest.nLayers },
        hiddenBytesPerToken: info.manifest.dim * codecBytes,
        request: { promptTokens: prompt.length, genTokens: maxTokens },
        ...(init.self !== undefined ? { self: init.self } : {})
      })
      const replaced = new Map<number, ChainHop[]>()
      chain = await waitFor(() => {
        try {
          return router.route()
        } catch (err) {
          if (err instanceof ShardUnavailableError) throw new NoRouteError(err.message, { cause: err })
          throw err
        }
      }, signal, Math.max(deadline, Date.now() + 1))
      try {
        for await (const ev of runInference(openStream, protocol, {
          chain,
          prompt,
          // the last token is sampled from position P + M − 2 and never run: P + M − 1 positions
          maxLength: prompt.length + maxTokens - 1,
          model: info.id,
          signal,
          ...(signer !== undefined ? { signer } : {}),
          ...(options.codec !== undefined ? { codec: options.codec } : {}),
          sampling: { ...sampling, maxTokens },
          // keep `chain` what the session runs on: record replacements, apply them at the retry
          failover: {
            replace: async (hop, index) => {
              const hops = await router.replace(hop, index)
              if (hops !== undefined) replaced.set(index, hops)
              return hops
            }
          }
        })) {
          if (ev.type === 'open') { sessionId = ev.sessionId; sessions++; seen.tokens = []; seen.signatures = []; delete seen.receipt } // a repaired session is not audited (its neighbours changed)
          if (ev.type === 'retry') {
            for (const [index, hops] of [...replaced].sort(([a], [b]) => b - a)) chain = [...chain.slice(0, index), ...hops, ...chain.slice(index + 1)]
            replaced.clear()
          }
          if (ev.type === 'token') {
            // a token past the bound (a stage that ignores max_tokens) ends the answer as before
            if (atBound) { yield boundEnd(); return }
            seen.tokens.push(ev.id)
            seen.signatures.push(ev.signature as Uint8Array<ArrayBuffer>)
            completion++
            const piece = text.push(prev, ev.id)
            prev = ev.id
            const cut = stops.push(piece)
            output += cut.text
            yield { type: 'token', id: ev.id, text: cut.text }
            if (signal.aborted) throw abortError(signal) // no event after an abort, even one already received
            if (cut.stopped) { yield finish('stop'); return }
            // the stages stop at max_tokens; this also holds the bound against a stage that does not
            if (completion >= maxTokens) {
              // an audited session waits for the done token's receipt, which the last token's frame
              // carries (runInference yields it right after, without reading): no delay
              if (auditing()) { atBound = true; continue }
              yield boundEnd(); return
            }
          } else if (ev.type === 'done') {
            if (ev.sessionId === sessionId && ev.receipt.length > 0) seen.receipt = { session: ev.sessionId, first: ev.first, signature: ev.receipt }
            const tail = stops.flush(text.flush())
            output += tail.text
            yield finish(ev.reason === 'bos' || tail.stopped ? 'stop' : 'length', tail.text)
            return
          }
        }
        if (atBound) yield boundEnd()
        return
      } catch (err) {
        if (signal.aborted) throw abortError(signal, err)
        // every token was delivered; only the receipt of an audited session did not come
        if (atBound) { yield boundEnd(); return }
        // Before the first token a retry repeats nothing. Records can be ahead of the stages for a
        // moment (a node publishes its new range, then loads it: WRONG_LAYERS meanwhile), so
        // retry on a fresh route after the next state change, until routeWaitMs has passed.
        if (!(err instanceof InferenceFailedError) || completion > 0 || (attempt >= MIN_OPEN_ATTEMPTS && Date.now() >= deadline)) throw err
        await nextChange(signal, deadline)
      }
    }
  }

  return {
    peerId: libp2p.peerId.toString(),
    swarmName: swarm,
    generate,
    chat: async function * (messages, options = {}) { yield * generate({ ...options, prompt: chatPrompt(messages) }) },
    resolveModel,
    tokenizer: async (model) => await tokenizerFor(resolveModel(model)),
    models,
    reputation: () => reputationSummary(init.consensus?.reputation()),
    swarm: () => {
      const live = new Set(online())
      const records = state.nodes()
      return {
        swarm,
        self: libp2p.peerId.toString(),
        online: [...live].sort(),
        members: [...records].sort(([a], [b]) => a.localeCompare(b)).map(([peerId, r]) => ({
          peerId,
          online: live.has(peerId),
          layers: r.layers.map((l) => ({ model: l.model, start: l.start, end: l.end })),
          ...(typeof r.capabilities.model === 'string' ? { model: r.capabilities.model } : {}),
          version: r.version
        })),
        models: models()
      }
    },
    close: async () => {
      closed ??= (async () => {
        closing.abort(new AbortError('client closed'))
        await init.onClose?.()
      })()
      await closed
    }
  }
}
