// Public surface of client/ (see README.md beside this file): the SDK — connect to a swarm,
// generate and chat with token streaming, swarm and model info, typed errors — plus the chain
// runner of issue 6 for callers that pick their own chain.
export { connect } from './connect.ts'
export type { ConnectOptions } from './connect.ts'
export { createClient } from './client.ts'
export type { ClientInit, ClientLibp2p, GenerateEvent, GenerateOptions, MyceliumClient, SwarmInfo, TokenizerOption, Usage } from './types.ts'
export { chatPrompt } from './chat.ts'
export type { ChatMessage } from './chat.ts'
export { listModels } from './route.ts'
export type { ModelInfo, ServingNode, SwarmReader } from './route.ts'
export { AbortError, ConnectFailedError, ConsensusNotImplementedError, InferenceFailedError, InvalidRequestError, ModelNotFoundError, NoRouteError, TokenizerUnavailableError } from './errors.ts'
export { runInference, inferenceProtocol } from '../protocols/index.ts'
export type { ChainHop, InferenceEvent, InferenceRequest, OpenStream } from '../protocols/index.ts'
