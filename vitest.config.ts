import { defineConfig } from 'vitest/config'

// Three projects (STYLE.md §7): unit = pure logic, integration = one process
// with real worker threads and SAB rings, cluster = real node processes.
// Thread-heavy projects run their files one at a time, and `npm test` runs
// the projects one after another: CI has 2 loaded cores, and the cluster
// tests time failure detection, which must not compete with benchmarks.
export default defineConfig({
  test: {
    passWithNoTests: true,
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 30_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'cluster',
          include: ['test/cluster/**/*.test.ts'],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
})
