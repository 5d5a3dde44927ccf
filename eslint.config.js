// @ts-check
// One flat config: typescript-eslint's type-checked rules plus the module
// boundaries of STYLE.md §2, so `npm run lint` fails on a layering violation.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

const restrict = (patterns, message) => ({
  'no-restricted-imports': ['error', { patterns: patterns.map((group) => ({ group: [group], message })) }],
})

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/wire/generated/**', 'bench-results/**', 'coverage/**', '.quickstart/**', '.scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['*.js', '*.mjs', 'bin/*.mjs', 'scripts/*.mjs'] }, tsconfigRootDir: import.meta.dirname },
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      'no-cond-assign': ['error', 'except-parens'],
    },
  },
  {
    files: ['src/common/**', 'src/wire/**'],
    rules: restrict(['../runtime/**', '../grains/**', '../cluster/**', '../remote/**', '../rpc/**', '../node/**', '../observability/**', 'node:net', 'fastify', 'prom-client'], 'common/wire are L0: pure codecs and helpers'),
  },
  {
    files: ['src/runtime/ring/**', 'src/runtime/worker/**', 'src/grains/**'],
    rules: restrict(['**/cluster/**', '**/remote/**', '**/pubsub/**', '**/rpc/**', '**/observability/metrics*', '**/runtime/host/**', 'node:net', 'fastify', 'prom-client'], 'worker-side code (L1) must not reach the cluster plane or the front'),
  },
  {
    files: ['src/runtime/host/**'],
    rules: restrict(['**/cluster/**', '**/remote/**', '**/rpc/**', 'fastify'], 'runtime/host is L1'),
  },
  {
    files: ['src/cluster/**', 'src/remote/**', 'src/pubsub/**'],
    rules: restrict(['**/rpc/**', '**/runtime/worker/**', 'fastify'], 'cluster plane (L2) must not import the front or worker internals'),
  },
  {
    files: ['src/rpc/**', 'src/observability/metrics*'],
    rules: restrict(['**/runtime/worker/**'], 'the front runs on the main thread'),
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
)
