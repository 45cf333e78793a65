// The mycelium command line: one commander program, one subcommand per file in node/commands/.
import { Command } from 'commander'
import { registerRunCommand } from './commands/run.ts'

const program = new Command()
  .name('mycelium')
  .description('Peer-to-peer serving of large language models from volunteer machines')
  .version('0.1.0')

registerRunCommand(program)

await program.parseAsync(process.argv)
