// The mycelium command line: one commander program, one subcommand per file in node/commands/.
// Errors a user can cause (bad files, bad flags) print one clear line and exit 1, no stack trace.
import { Command } from 'commander'
import { enableCompileCache } from 'node:module'
import { registerStartCommand } from './commands/start.ts'
import { registerDoctorCommand } from './commands/doctor.ts'
import { registerTestnetCommand } from './commands/testnet.ts'
import { registerStatusCommand } from './commands/status.ts'
import { registerGenerateCommand } from './commands/generate.ts'

const USER_ERRORS = new Set(['ModelFormatError', 'ModelDownloadError', 'ShardConfigError', 'SessionLimitError', 'ShapeError', 'RangeError',
  'ConfigError', 'IdentityCorruptError', 'IdentityPermissionError', 'ControlError',
  // the SDK's (generate)
  'ConnectFailedError', 'NoRouteError', 'ModelNotFoundError', 'TokenizerUnavailableError', 'InvalidRequestError', 'InferenceFailedError'])

// V8's compile cache (in the OS temp folder) makes every start after the first one faster; the
// heavy modules (libp2p, the engine) are imported dynamically below, after this call.
enableCompileCache?.()

const program = new Command()
  .name('mycelium')
  .description('Peer-to-peer serving of large language models from volunteer machines')
  .version('0.1.0')

// The engine is only loaded for the commands that can use it: `node start` and `doctor` start
// ~200 ms sooner without it (joining fast is a mesh target); testnet, status and generate load
// what they need when they run.
const sub = process.argv[2]
if (!['node', 'doctor', 'testnet', 'status', 'generate'].includes(sub ?? '')) (await import('./commands/run.ts')).registerRunCommand(program)
registerStartCommand(program)
registerDoctorCommand(program)
registerTestnetCommand(program)
registerStatusCommand(program)
registerGenerateCommand(program)

try {
  await program.parseAsync(process.argv)
} catch (err) {
  const e = err as Error
  if (USER_ERRORS.has(e.name)) {
    process.stderr.write(`mycelium: ${e.message}\n`)
  } else {
    process.stderr.write(`mycelium: unexpected error: ${e.stack ?? String(e)}\n`)
  }
  process.exitCode = 1
}
