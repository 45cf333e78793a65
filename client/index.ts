// Public surface of client/ (see README.md beside this file). So far: running one generation over
// a chain of stages that the caller chose (issue 6); connect/generate/chat/routing are issue 8.
export { runInference, inferenceProtocol, InferenceFailedError } from '../protocols/index.ts'
export type { ChainHop, InferenceEvent, InferenceRequest, OpenStream } from '../protocols/index.ts'
