// Public surface of protocols/ (see README.md beside this file).

// Swarm naming and the bulk transfer protocol (issue 3, the mesh).
export { validateSwarmName, swarmProtocolPrefix, protocolId, isSwarmProtocol, dhtProtocol, topicName, modelProviderKey } from './swarm.ts'
export { bulkProtocol, bulkTransfer, receiveBulk, sendBulk, BulkTransferService, BulkRequest, BulkResponse } from './bulk.ts'
export type { BulkTransferInit, BulkTransferComponents, BulkReceiveOptions, BulkReceiveResult, BulkSendResult } from './bulk.ts'
export { DEFAULT_SWARM } from './constants.ts'
export { InvalidSwarmNameError, MalformedMessageError, TransferFailedError } from './errors.ts'
export { reverseDialProtocol, reverseDialHandler, requestReverseDial, ReverseDialRequest, ReverseDialResponse } from './reverse-dial.ts'
export type { ReverseDialHandlerInit } from './reverse-dial.ts'

// Swarm-state replication: gossip + /mycelium/sync/1 anti-entropy, presence beacons (issue 4, protocols/sync/).
export { swarmSync, SwarmSync } from './sync/swarm-sync.ts'
export type { SwarmSyncInit, SwarmSyncComponents, SwarmSyncStats } from './sync/swarm-sync.ts'
export { SYNC_PROTOCOL, stateTopic, presenceTopic } from './sync/constants.ts'
export { SyncFailedError, SyncNotStartedError } from './sync/errors.ts'
export { holePunchProtocol, holePunchHandler, requestHolePunch, PunchRequest, PunchResponse } from './hole-punch.ts'
export type { HolePunchHandlerInit, PunchEndpoint } from './hole-punch.ts'

// Link probing: RTT and bandwidth to peers over /mycelium/probe/1 (issue 5, protocols/probe/).
export { probeService, ProbeService } from './probe/probe-service.ts'
export type { ProbeServiceInit, ProbeServiceComponents, ProbeResult } from './probe/probe-service.ts'
export { probeOver, serveProbe, ProbeRequest, ProbeResponse } from './probe/probe.ts'
export type { ProbeMeasurement, ProbeOptions, ServeProbeOptions, ServeProbeResult } from './probe/probe.ts'
export { PROBE_PROTOCOL } from './probe/constants.ts'
export { ProbeFailedError } from './probe/errors.ts'

// Distributed inference: stage service and client runner over /mycelium/<swarm>/inference/1.0.0 (issue 6, protocols/inference/).
export { inferenceStageService, inferenceProtocol, InferenceStageService } from './inference/stage-service.ts'
export type { InferenceStageInit, InferenceStageComponents, StageShard, StageTap, TapFrame } from './inference/stage-service.ts'
export { frameSigner } from './inference/frame-signature.ts'
export type { FrameSigner } from './inference/frame-signature.ts'
export { runInference } from './inference/client.ts'
export type { ChainHop, FailoverOptions, InferenceRequest, InferenceEvent, OpenStream } from './inference/client.ts'
export { chainRouter, routeGraphFromViews, routeSpan } from './inference/route-chain.ts'
export type { ChainRouter, ChainRouterOptions, RouteViews } from './inference/route-chain.ts'
export { Frame as InferenceFrame, Status as InferenceStatus } from './inference/inference.pb.js'
export { INFERENCE_MAX_FRAME_BYTES } from './inference/constants.ts'
export { InferenceFailedError } from './inference/errors.ts'

// The libp2p composition every Mycelium peer shares (daemon host and light client).
export { swarmStack, STACK_MAX_EARLY_STREAMS, STACK_MAX_STREAMS } from './libp2p-stack.ts'
export type { SwarmStack, SwarmStackInit, ServiceFactories } from './libp2p-stack.ts'
// Consensus judging exchange over /mycelium/<swarm>/consensus-judge/1.0.0 (issue 7, protocols/consensus/).
export { consensusJudgeService, consensusJudgeProtocol, ConsensusJudgeService, collectJudging, serveJudging } from './consensus/index.ts'
export type { ConsensusJudgeInit, JudgeHooks, JudgeFn, JudgingResult, JudgingRound } from './consensus/index.ts'
// Spot-checks of sharded execution over /mycelium/<swarm>/spot-check/1.0.0 (issue 7, protocols/consensus/).
export { spotCheckService, spotCheckProtocol, SpotCheckService, fetchTrace, requestAudit, serveSpotCheck } from './consensus/index.ts'
export type { AuditRequest, SpotCheckHooks, SpotTrace } from './consensus/index.ts'
