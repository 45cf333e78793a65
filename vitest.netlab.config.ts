// The NAT lab suite (`npm run test:netlab`): root only, real network namespaces, one lab shared
// by the tests of a file, run in order. Its files end in `.netlab.ts`, so the default suite
// (`test/**/*.test.ts`) never picks them up.
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/netlab/**/*.netlab.ts'],
    testTimeout: 90_000,
    hookTimeout: 90_000,
    pool: 'forks',
    fileParallelism: false,
    sequence: { concurrent: false }
  }
})
