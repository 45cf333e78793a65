// Lint configuration: typescript-eslint's recommended rules plus the house-style rules that a
// linter can check (see ../shared/STYLE.md): no default exports, no console in library code.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['node_modules/**', 'bench/results/**', '**/*.wasm', '**/*.pb.js', '**/*.pb.d.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
    rules: {
      'no-restricted-exports': ['error', { restrictDefaultExports: { direct: true, named: true, defaultFrom: true, namedFrom: true, namespaceFrom: true } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-empty': ['error', { allowEmptyCatch: false }]
    }
  },
  {
    files: ['engine/**', 'sharding/**', 'consensus/**', 'crdt/**', 'protocols/**', 'client/**'],
    rules: { 'no-console': 'error' }
  },
  {
    // Config files must default-export for their tools.
    files: ['eslint.config.js', 'vitest.config.ts', 'vitest.netlab.config.ts'],
    rules: { 'no-restricted-exports': 'off' }
  }
)
