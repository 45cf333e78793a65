// The consensus protocols' public surface (re-exported by protocols/index.ts).
export { consensusJudgeService, consensusJudgeProtocol, ConsensusJudgeService } from './judge-service.ts'
export type { ConsensusJudgeInit, JudgeHooks } from './judge-service.ts'
export { collectJudging, serveJudging } from './judge-exchange.ts'
export type { JudgeFn, JudgingResult, JudgingRound } from './judge-exchange.ts'
export { spotCheckService, spotCheckProtocol, SpotCheckService, fetchAnswer, fetchTrace, requestAudit, requestChallenge, serveSpotCheck } from './spot-check.ts'
export type { AuditRequest, ChallengeAnswer, ChallengeRequest, SpotCheckHooks, SpotTrace } from './spot-check.ts'
