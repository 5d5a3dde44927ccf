// Entry of every benchmark worker thread (see lib/ts-worker.ts): Node 20
// cannot start a worker on a .ts file and ignores `--import tsx` for the
// worker's entry, so register tsx here, then import the real entry.
// workerData: { tsEntry: string (file URL of the .ts module), data: unknown }
import { workerData } from 'node:worker_threads'
import { register } from 'tsx/esm/api'

register()
await import(workerData.tsEntry)
