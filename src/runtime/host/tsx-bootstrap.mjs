// Worker bootstrap used only when graincluster runs from its TypeScript
// sources (tests, benchmarks, `npm run quickstart`): on Node 20 a worker
// cannot load .ts, and `execArgv: ['--import', 'tsx']` does not apply tsx's
// hooks to the worker's entry module, so register tsx here and then import
// the real entry. Built code (dist/) never goes through this file.
import { workerData } from 'node:worker_threads'
import { register } from 'tsx/esm/api'

register()
await import(workerData.tsEntry)
