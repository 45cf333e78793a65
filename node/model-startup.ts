// A node that offers a model: open it before the host starts (a missing or damaged file stops
// the daemon with one line, before the ready line), then — after the ready line, so a node joins
// the mesh at once — hash it (cached, see manifest-cache.ts), measure its per-layer speed with the
// real engine in a worker thread, publish the manifest and the measured capability in the swarm
// state, announce it on the DHT and start the allocator. Every step takes the daemon's shutdown
// signal: SIGTERM during hashing or measuring stops at once (the worker is terminated).
import { Worker } from 'node:worker_threads'
import type { IdentifyResult, PeerId } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { JsonValue } from '../crdt/index.ts'
import { dhtProtocol, PROBE_PROTOCOL } from '../protocols/index.ts'
import { openModel } from '../engine/index.ts'
import type { ModelSource, WeightDType } from '../engine/index.ts'
import { createStepTimer } from '../sharding/index.ts'
import type { LayerRange, ModelManifest, NodeCapability, StepTimer } from '../sharding/index.ts'
import { startAllocator } from './allocation.ts'
import type { Allocator } from './allocation.ts'
import type { CapabilityJob } from './capability-worker.ts'
import { consensusMemory } from './consensus-judge.ts'
import type { ConsensusMemory } from './consensus-judge.ts'
import { SERVE_DTYPES } from './config.ts'
import type { ModelConfig, NodeConfig, ServeDType } from './config.ts'
import { ANNOUNCE_REFRESH_MS, ANNOUNCE_RETRY_MS } from './constants.ts'
import { ModelStartupError } from './errors.ts'
import type { MyceliumHost } from './host.ts'
import { cachedManifest } from './manifest-cache.ts'
import type { NodeRecordPublisher } from './node-record.ts'
import { announceModel } from './providers.ts'

export interface OpenedModel { source: ModelSource, dtype: ServeDType }

/**
 * Opens the model (headers only) and decides the dtype: `--dtype`, else the dtype the file stores
 * its layer matrices in when the engine can hold it that way (a q8_0 GGUF stays q8_0, an f16 HF
 * model f16), else f32 (bf16 files: the engine has no bf16 layout and f16 could overflow).
 */
export async function openNodeModel (model: ModelConfig): Promise<OpenedModel> {
  const source = await openModel(model.path)
  const stored = source.tensors.get('layers.0.wq')?.dtype
  const own = (SERVE_DTYPES as readonly string[]).includes(stored ?? '') ? stored as ServeDType : 'f32'
  return { source, dtype: model.dtype ?? own }
}

/** Measures capability in a worker thread; abort terminates it. */
async function measureInWorker (job: CapabilityJob, signal: AbortSignal): Promise<NodeCapability> {
  signal.throwIfAborted()
  const worker = new Worker(new URL('./capability-worker.ts', import.meta.url), { workerData: job })
  try {
    return await new Promise<NodeCapability>((resolve, reject) => {
      const onAbort = (): void => { worker.postMessage('abort'); reject(signal.reason as Error) }
      signal.addEventListener('abort', onAbort, { once: true })
      worker.once('message', (m: { ok: boolean, capability?: NodeCapability, error?: { name: string, message: string } }) => {
        signal.removeEventListener('abort', onAbort)
        if (m.ok && m.capability !== undefined) resolve(m.capability)
        else reject(new ModelStartupError(`capability measurement failed: ${m.error?.name ?? 'Error'}: ${m.error?.message ?? 'unknown'}`))
      })
      worker.once('error', (err) => { reject(new ModelStartupError('capability measurement crashed', { cause: err })) })
      worker.once('exit', (code) => { reject(new ModelStartupError(`capability measurement exited with code ${code}`)) })
    })
  } finally {
    await worker.terminate()
  }
}

async function dhtServerConnected (host: MyceliumHost, swarm: string): Promise<boolean> {
  for (const peer of new Set(host.getConnections().map((c) => c.remotePeer))) {
    const info = await host.peerStore.get(peer).catch(() => undefined)
    if (info?.protocols.includes(dhtProtocol(swarm)) === true) return true
  }
  return false
}

/** The model side of a running node, as the control socket and issue 6's serving path see it. */
export interface NodeModel {
  path: string
  dtype: WeightDType
  phase: 'hashing' | 'measuring' | 'ready' | 'failed' | 'stopped'
  manifest?: ModelManifest
  capability?: NodeCapability
  /** Live per-layer step times (EWMA) seeded with the measurement; the serving path feeds it. */
  stepTimer?: StepTimer
  allocator?: Allocator
  /** `--layers auto`: the range the serving path has loaded and serves now (null: none); the record publishes this. */
  served?: LayerRange | null
  /** Issue 7: whether this node judges and what its judge / calibration / verifier copies hold back (consensus-judge.ts consensusMemory); set with the capability. */
  consensus?: ConsensusMemory
  announced: boolean
}

/**
 * Runs the start-up pipeline in the background. `done` resolves when the node published its
 * capability (or was stopped first) and rejects with a ModelStartupError when it cannot serve.
 */
export function startNodeModel (host: MyceliumHost, config: NodeConfig & { model: ModelConfig }, opened: OpenedModel, record: NodeRecordPublisher, log: Logger): { model: NodeModel, done: Promise<void>, stop: () => void } {
  const controller = new AbortController()
  const signal = controller.signal
  const state = host.services.swarmSync.state
  const model: NodeModel = { path: config.model.path, dtype: opened.dtype, phase: 'hashing', announced: false }
  let announceTimer: ReturnType<typeof setTimeout> | undefined

  // Probe each new direct peer that speaks the probe protocol once, one at a time, so the link
  // figures the allocator reads are published soon after joining rather than at the probe
  // service's first periodic round (60 s), which would move layers once more.
  let probing = Promise.resolve()
  const probeOnce = (peerId: PeerId): void => {
    if (signal.aborted || host.services.probe.result(peerId) !== undefined) return
    probing = probing.then(async () => {
      if (signal.aborted || host.services.probe.result(peerId) !== undefined) return
      await host.services.probe.probe(peerId, { signal })
      model.allocator?.refresh()
    }).catch((err: Error) => { log.debug({ event: 'probe-failed', peer: peerId.toString(), err: err.message }, 'first probe of a peer failed') })
  }
  const onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    if (evt.detail.connection.limits == null && evt.detail.protocols.includes(PROBE_PROTOCOL)) probeOnce(evt.detail.peerId)
  }
  // peers identified before this point (bootstrap anchors dialled while the host started)
  for (const c of host.getConnections()) {
    if (c.limits != null) continue
    void host.peerStore.get(c.remotePeer).then((p) => { if (p.protocols.includes(PROBE_PROTOCOL)) probeOnce(c.remotePeer) }, () => { /* not in the peer store yet: identify reports it later */ })
  }
  host.addEventListener('peer:identify', onIdentify)

  const announce = (): void => {
    announceTimer = undefined
    if (signal.aborted || model.manifest === undefined) return
    const id = model.manifest.id
    announceModel(host.contentRouting, config.swarm, id, { signal }).then(async () => {
      // a provide with no DHT server connected reaches nobody: count it once one could hold it
      const landed = await dhtServerConnected(host, config.swarm)
      if (landed && !model.announced) log.info({ event: 'announced', model: id }, 'model announced on the DHT')
      model.announced ||= landed
      if (!signal.aborted) announceTimer = setTimeout(announce, landed ? ANNOUNCE_REFRESH_MS : ANNOUNCE_RETRY_MS)
    }, (err: Error) => {
      if (signal.aborted) return
      log.debug({ event: 'announce-failed', err: err.message }, 'DHT announcement failed; retrying')
      announceTimer = setTimeout(announce, ANNOUNCE_RETRY_MS)
    })
  }

  const run = async (): Promise<void> => {
    const { source } = opened
    log.info({ event: 'model', path: source.path, format: source.format, layers: source.config.nLayers, dim: source.config.dim, dtype: opened.dtype }, 'model opened')
    let t0 = performance.now()
    const { manifest, cached } = await cachedManifest(source, config.model.manifestCacheDir, { signal })
    model.manifest = manifest
    log.info({ event: 'manifest', model: manifest.id, cached, ms: Math.round(performance.now() - t0) }, cached ? 'model hash read from the cache' : 'model hashed')
    model.phase = 'measuring'
    log.info({ event: 'measuring', model: manifest.id, dtype: opened.dtype, threads: config.model.threads }, 'measuring per-layer speed')
    t0 = performance.now()
    const measured = await measureInWorker({
      path: source.path,
      dtype: opened.dtype,
      threads: config.model.threads,
      ...(config.model.maxMemoryBytes !== undefined ? { maxMemoryBytes: config.model.maxMemoryBytes } : {})
    }, signal)
    // issue 7: the judge's, the calibrator's and the verifier's copies are held back from the
    // measured budget when this node judges (layers first: only when that costs no layer), so the
    // allocator and the serving path see what is left for layers and KV (consensus-judge.ts)
    const consensus = consensusMemory(manifest, opened.dtype, {
      budgetBytes: measured.memoryBytes,
      ...(config.model.maxMemoryBytes !== undefined ? { maxMemoryBytes: config.model.maxMemoryBytes } : {}),
      ...(config.model.layers !== undefined ? { servedLayers: config.model.layers.end - config.model.layers.start } : {})
    })
    const capability: NodeCapability = { ...measured, memoryBytes: consensus.advertisedBytes }
    model.consensus = consensus
    model.capability = capability
    model.stepTimer = createStepTimer(capability)
    log.info({ event: 'capability', model: manifest.id, dtype: opened.dtype, threads: config.model.threads, ...capability, budgetBytes: measured.memoryBytes, judging: consensus.judging, consensusReserveBytes: consensus.reserveBytes, ms: Math.round(performance.now() - t0) }, 'capability measured')
    record.setModel({ model: manifest.id, dtype: opened.dtype, decodeLayerMs: capability.decodeLayerMs, prefillLayerMsPerToken: capability.prefillLayerMsPerToken, memoryBytes: capability.memoryBytes })
    // Not awaited: with a known identity and an empty store the write waits for peers (as the node record does).
    state.putManifest(manifest.id, manifest as unknown as JsonValue, { signal }).catch((err: Error) => {
      if (!signal.aborted) log.warn({ event: 'manifest-publish-failed', err: err.message }, 'could not publish the manifest')
    })
    announce()
    model.allocator = startAllocator({
      state,
      self: host.peerId.toString(),
      manifest,
      dtype: opened.dtype,
      record,
      log,
      beforePass: () => { record.setLinks(host.services.probe.results()) },
      // `--layers auto`: the record says what the serving path serves (followAllocation sets it)
      ...(config.model.layers !== undefined ? { pinned: config.model.layers } : { served: () => model.served ?? null })
    })
    model.phase = 'ready'
  }

  const done = run().catch((err: unknown) => {
    if (signal.aborted) return
    model.phase = 'failed'
    throw err instanceof ModelStartupError ? err : new ModelStartupError(`could not start serving ${config.model.path}: ${(err as Error).message}`, { cause: err })
  })
  return {
    model,
    done,
    stop: () => {
      controller.abort()
      host.removeEventListener('peer:identify', onIdentify)
      model.phase = model.phase === 'failed' ? 'failed' : 'stopped'
      if (announceTimer !== undefined) clearTimeout(announceTimer)
      model.allocator?.stop()
    }
  }
}
