// The node daemon: identity → host → control socket → structured logs, until SIGINT/SIGTERM.
// Its first stdout line after start-up is a pino record with `"event":"ready"` (peer id,
// addresses, control socket): scripts wait on that line, never on a sleep.
import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, PeerId } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { bulkProtocol, sendBulk } from '../protocols/index.ts'
import type { NodeConfig } from './config.ts'
import { serveControl } from './control.ts'
import type { ControlRequest } from './control.ts'
import { ControlError } from './errors.ts'
import { createHost } from './host.ts'
import type { HostOptions, MyceliumHost } from './host.ts'
import { loadOrCreateIdentity } from './identity.ts'
import { announceModel, findModelProviders } from './providers.ts'
import { startAutoNATNudge } from './autonat-nudge.ts'
import { startBootstrapKeeper } from './bootstrap-keeper.ts'
import { startNodeRecordPublisher } from './node-record.ts'
import { startRecordAddresses } from './record-addresses.ts'
import { ownLoad, startLoadBeacon } from './load-beacon.ts'
import { swarmSummary, swarmView } from './swarm-report.ts'
import type { NodeModel, OpenedModel } from './model-startup.ts'
import type { StageWrapper } from './spot-check-corrupt.ts'

export interface Daemon {
  host: MyceliumHost
  /** The model side (with `--model`): manifest, measured capability, step timer, allocator. */
  model?: NodeModel
  /** Resolves with the error when the node cannot serve its model (the caller should exit 1); never resolves otherwise. */
  fatal: Promise<Error>
  stop: () => Promise<void>
}

/** What `status` and `doctor` show about the model side. */
function modelSummary (model: NodeModel | undefined): Record<string, unknown> | undefined {
  if (model === undefined) return undefined
  const view = model.allocator?.current()
  return {
    path: model.path,
    dtype: model.dtype,
    phase: model.phase,
    manifest: model.manifest?.id,
    nLayers: model.manifest?.nLayers,
    capability: model.capability,
    announced: model.announced,
    allocation: view === undefined ? undefined : { members: view.members.length, covered: view.covered, self: view.self, tokensPerS: view.tokensPerS }
  }
}

function describe (c: Connection): Record<string, unknown> {
  const limits = c.limits == null ? undefined : { bytes: c.limits.bytes?.toString(), seconds: c.limits.seconds }
  return { peer: c.remotePeer.toString(), addr: c.remoteAddr.toString(), direct: !c.remoteAddr.toString().includes('/p2p-circuit'), limited: c.limits != null, limits }
}

function str (request: ControlRequest, key: string): string {
  const v = request[key]
  if (typeof v !== 'string' || v === '') throw new ControlError(`"${key}" must be a non-empty string`)
  return v
}

function peerArg (request: ControlRequest): PeerId {
  try {
    return peerIdFromString(str(request, 'peer'))
  } catch (err) {
    throw new ControlError(`"peer" is not a peer id: ${String(request.peer)}`, { cause: err })
  }
}

/** Starts the daemon; resolves once the host listens and the control socket is up. */
/** TEST ONLY flags: every stage the inference service is handed goes through `w` (sessionsOn sees the unwrapped shard). */
function wrapServedStages (host: MyceliumHost, w: StageWrapper): void {
  const svc = host.services.inference
  const serve = svc.serve.bind(svc)
  const sessionsOn = svc.sessionsOn.bind(svc)
  svc.serve = (stage) => { serve(w.wrap(stage)) }
  svc.sessionsOn = (shard) => sessionsOn(w.unwrap(shard))
}

export async function startDaemon (config: NodeConfig, log: Logger, hostOptions: HostOptions = {}): Promise<Daemon> {
  // With a model: open it first (headers only; a missing or damaged file stops here, with one
  // line). The engine and sharding/ are loaded only then: a mesh-only node starts without them.
  const modelStartup = config.model === undefined ? undefined : await import('./model-startup.ts')
  const opened = config.model === undefined || modelStartup === undefined ? undefined : await modelStartup.openNodeModel(config.model)
  // `--layers a:b`: the range is checked against the model now, before the ready line
  const serving = opened !== undefined ? await import('./serving.ts') : undefined
  if (opened !== undefined && config.model?.layers !== undefined) serving?.checkLayers(config.model.layers, opened.source.config.nLayers)
  const identity = await loadOrCreateIdentity(config.identityPath)
  log.info({ event: 'identity', path: identity.path, created: identity.created }, identity.created ? 'created a new identity' : 'loaded identity')
  const host = await createHost(config, identity.privateKey, { identityExisted: !identity.created, ...hostOptions })
  const state = host.services.swarmSync.state
  if (state.loadReport.status === 'corrupt') {
    log.error({ event: 'state-corrupt', ...state.loadReport }, 'the swarm-state store was corrupt: set aside, rebuilding from peers')
  } else {
    log.info({ event: 'state-loaded', dir: config.stateDir, ...state.loadReport }, 'swarm state loaded')
  }
  if (config.testCorruptOutput !== undefined) {
    // TEST ONLY (issue 7): this node's stage adds noise to what it sends (node/spot-check-corrupt.ts)
    const { corruptingStages } = await import('./spot-check-corrupt.ts')
    wrapServedStages(host, corruptingStages(config.testCorruptOutput))
    log.warn({ event: 'test-corrupt-output', scale: config.testCorruptOutput }, 'TEST ONLY: this stage corrupts its outputs')
  }
  const record = startNodeRecordPublisher(host, config, log)
  // stages dial the next hop by peer id: teach the peer store the addresses records publish
  const stopAddresses = startRecordAddresses(host, log)
  let advertised = ''
  host.addEventListener('connection:open', (evt) => { log.debug({ event: 'connection:open', ...describe(evt.detail) }, 'connection open') })
  host.addEventListener('connection:close', (evt) => { log.debug({ event: 'connection:close', ...describe(evt.detail) }, 'connection closed') })
  host.addEventListener('self:peer:update', () => {
    const addrs = host.getMultiaddrs().map(String)
    if (addrs.join() === advertised) return
    advertised = addrs.join()
    log.info({ event: 'addresses', addrs }, 'advertised addresses changed')
  })

  // The model side starts after the ready line (below); the control handler reads it through this.
  let served: { model: NodeModel, done: Promise<void>, stop: () => void } | undefined
  // live load on the swarm's load topic (presence-like, never in the record): a node with a model publishes its own
  const loads = startLoadBeacon(host, config.swarm, () => (opened !== undefined ? ownLoad(host.services.inference, served?.model.stepTimer) : undefined), log)
  let api: { url: string, close: () => Promise<void> } | undefined // --api-port (node/api/)
  // issue 7: the reputation ledger, derived from the replicated round records (node/reputation.ts)
  const { startLedger, genesisOf } = await import('./reputation.ts')
  const ledger = startLedger(state, genesisOf(config.bootstrap.map(String), host.peerId.toString()))
  // `--judge-model` (no --model): the model is held for judging, calibration and spot-check audits
  // only, no layers served (headers opened now; the manifest is hashed in the background and then
  // published as the record's `judgeModel` capability, so round owners ask it to verify stages)
  const judgeOnly = opened === undefined && config.judgeModel !== undefined ? await openJudgeOnly(config.judgeModel, log, (id) => { record.setJudgeModel(id) }) : undefined
  // spot-checks: the stage's tap (recorder) and the verifier (node/spot-check.ts); wraps serve() before any stage is served
  const { startSpotChecks } = await import('./spot-check.ts')
  // a verifier loads its own copy of the audited layers: only a node whose start-up accounting held
  // that copy back (it judges, node/consensus-judge.ts consensusMemory) shows the verifier its model;
  // one near its memory limit refuses audits instead of over-committing. A judge-only node shows
  // its judge model (no layers of its own: its audit copies are within the judge budget)
  const spots = startSpotChecks(host, opened ?? judgeOnly?.opened, () => (served?.model.consensus?.judging === true ? served.model : judgeOnly?.model), ledger, log, config.model?.maxMemoryBytes)
  if (config.testWrongStage !== undefined) {
    // TEST ONLY (issue 7): wrong outputs everywhere, challenges included — outermost on serve(), so
    // the spot-check service answers CHALLENGE with the wrong stage (node/test-wrong-stage.ts)
    const { wrongStages } = await import('./test-wrong-stage.ts')
    wrapServedStages(host, wrongStages(config.testWrongStage))
    log.warn({ event: 'test-wrong-stage', scale: config.testWrongStage }, 'TEST ONLY: this stage answers everything wrongly')
  }
  const stopNudge = startAutoNATNudge(host, log)
  const stopKeeper = startBootstrapKeeper(host, config.bootstrap, log)
  const control = await serveControl(config.controlSocket, async (request, signal) => {
    switch (request.cmd) {
      case 'status': {
        const report = await host.services.reachability.report()
        return {
          ...report,
          swarm: config.swarm,
          public: config.public,
          relayServing: host.services.relay?.reservations.size ?? 0,
          relayClients: [...(host.services.relay?.reservations.keys() ?? [])].map(String),
          direct: host.services.direct?.attempts ?? [],
          bulk: host.services.bulk.stats,
          inference: { protocol: host.services.inference.protocol, ...host.services.inference.usage, ...host.services.inference.stats },
          load: { own: loads.own() ?? null, peers: loads.table.size, ...loads.stats },
          swarmState: swarmSummary(host),
          reputation: ledger.summary(),
          model: modelSummary(served?.model),
          ...(api !== undefined ? { api: api.url } : {})
        }
      }
      case 'swarm':
        return { ...swarmView(host, loads), reputation: ledger.summary() } // issue 7: the ledger beside the records
      case 'reputation':
        return { genesis: ledger.genesis, reputation: ledger.summary(), rounds: ledger.current().outcomes.length, spotChecks: spots.stats, recorded: spots.recorder.size }
      case 'evidence': // issue 7: the spot-check records in the replica (node/reputation.ts)
        return { evidence: ledger.evidence() }
      case 'allocation': {
        const allocator = served?.model.allocator
        if (allocator === undefined) {
          throw new ControlError(served === undefined ? 'this node serves no model (start it with --model)' : `no allocation yet: the model is ${served.model.phase}`)
        }
        return { allocation: allocator.refresh() as unknown as Record<string, unknown> }
      }
      case 'dial': {
        const started = performance.now()
        const connection = await host.dial(multiaddr(str(request, 'addr')), { signal })
        return { ...describe(connection), ms: performance.now() - started }
      }
      case 'connections':
        return { connections: host.getConnections().map(describe) }
      case 'ping': {
        // the ping protocol allows one outbound stream per peer, and libp2p's connection monitor
        // pings new connections too: when ours collides with its ping, try again shortly
        for (let attempt = 1; ; attempt++) {
          try {
            return { rtt: await host.services.ping.ping(peerArg(request), { signal }) }
          } catch (err) {
            if ((err as Error).name !== 'TooManyOutboundProtocolStreamsError' || attempt >= 5) throw err
            await new Promise((resolve) => setTimeout(resolve, 50 * attempt))
          }
        }
      }
      case 'bulk': {
        const bytes = Number(request.bytes)
        if (!Number.isSafeInteger(bytes) || bytes < 0) throw new ControlError('"bytes" must be a non-negative integer')
        // `swarm` lets the lab try another swarm's protocol (a non-member probing a member).
        const swarm = typeof request.swarm === 'string' ? request.swarm : config.swarm
        const stream = await host.dialProtocol(peerArg(request), bulkProtocol(swarm), { signal })
        const result = await sendBulk(stream, bytes, { signal })
        return { ...result, via: stream.protocol, direct: !host.getConnections(peerArg(request)).every((c) => c.remoteAddr.toString().includes('/p2p-circuit')) }
      }
      case 'upgrade': {
        const direct = host.services.direct
        if (direct == null) throw new ControlError('direct upgrades are disabled on this node')
        const started = performance.now()
        const ok = await direct.upgrade(peerArg(request), { signal })
        return { direct: ok, ms: performance.now() - started }
      }
      case 'provide':
        await announceModel(host.contentRouting, config.swarm, str(request, 'hash'), { signal })
        return {}
      case 'find':
        return { providers: await findModelProviders(host.contentRouting, config.swarm, str(request, 'hash'), { signal, limit: Number(request.limit ?? 20) }) }
      default:
        throw new ControlError(`unknown command ${JSON.stringify(request.cmd)}`)
    }
  })
  log.info({
    event: 'ready',
    peerId: host.peerId.toString(),
    swarm: config.swarm,
    public: config.public,
    listen: host.getMultiaddrs().map(String),
    control: config.controlSocket,
    ...(opened !== undefined ? { model: config.model?.path } : {})
  }, 'node ready')

  let reportFatal: (err: Error) => void = () => {}
  const fatal = new Promise<Error>((resolve) => { reportFatal = resolve })
  if (opened !== undefined && modelStartup !== undefined && config.model !== undefined) {
    served = modelStartup.startNodeModel(host, { ...config, model: config.model }, opened, record, log)
  }
  served?.done.catch((err: Error) => { reportFatal(err) })
  const stageStop = new AbortController()
  const stage = serving !== undefined && opened !== undefined && config.model?.layers !== undefined
    ? serving.startStageServing(host, opened, { ...config.model, layers: config.model.layers }, served?.model, log, { signal: stageStop.signal })
    : undefined
  stage?.catch((err: Error) => { if (!stageStop.signal.aborted) reportFatal(err) })
  // `--layers auto` (the default with --model): serve the allocator's range for this node
  const following = serving !== undefined && opened !== undefined && config.model !== undefined && config.model.layers === undefined && served !== undefined
    ? serving.followAllocation(host, opened, config.model, served.model, log)
    : undefined
  // issue 7: the judge and the calibration of newcomers (node/consensus-judge.ts)
  const { startConsensusNode, registerConsensusNode } = await import('./consensus-judge.ts')
  const consensus = startConsensusNode(host, opened ?? judgeOnly?.opened, served?.model ?? judgeOnly?.model, ledger, { log, judgeOnly: judgeOnly !== undefined, ...(config.model?.maxMemoryBytes !== undefined ? { maxMemoryBytes: config.model.maxMemoryBytes } : {}) })
  registerConsensusNode(host, consensus)
  if (config.api !== undefined) {
    const { startDaemonApi } = await import('./api/daemon-api.ts')
    api = await startDaemonApi(host, { ...config, api: config.api }, opened, served?.model, log, loads)
  }

  let stopping: Promise<void> | undefined
  return {
    host,
    ...(served !== undefined ? { model: served.model } : {}),
    fatal,
    stop: async () => {
      stopping ??= (async () => {
        served?.stop()
        record.stop()
        stopAddresses()
        loads.stop()
        stopNudge()
        stopKeeper()
        await control.close()
        await api?.close()
        await consensus.stop()
        await spots.stop()
        ledger.stop()
        stageStop.abort()
        await host.stop()
        await stage?.then(async (s) => { await s.stop() }, () => {})
        await following?.stop()
        log.info({ event: 'stopped' }, 'node stopped')
      })()
      await stopping
    }
  }
}

/** `--judge-model`: the model opened (headers only) and its manifest hashed in the background (calibration and audits wait for it; `onReady` gets its id). */
async function openJudgeOnly (judge: { path: string, manifestCacheDir: string }, log: Logger, onReady: (manifestId: string) => void): Promise<{ opened: OpenedModel, model: NodeModel }> {
  const { openNodeModel } = await import('./model-startup.ts')
  const { cachedManifest } = await import('./manifest-cache.ts')
  const opened = await openNodeModel({ path: judge.path, threads: 1, manifestCacheDir: judge.manifestCacheDir })
  const model: NodeModel = { path: judge.path, dtype: opened.dtype, phase: 'hashing', announced: false }
  cachedManifest(opened.source, judge.manifestCacheDir).then(({ manifest }) => {
    model.manifest = manifest
    model.phase = 'ready'
    onReady(manifest.id)
    log.info({ event: 'judge-model-ready', model: manifest.id }, 'judge model hashed: judging, calibrating and verifying stages only')
  }, (err: Error) => {
    model.phase = 'failed'
    log.warn({ event: 'judge-model-failed', err: err.message }, 'cannot hash the judge model: no judging')
  })
  return { opened, model }
}
