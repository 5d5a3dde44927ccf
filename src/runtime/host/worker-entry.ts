/**
 * Where a worker thread's code lives. From dist/ the entry is plain .js;
 * from the TypeScript sources (tests, benchmarks, tsx) it is .ts, which a
 * Node 20 worker can only load through the tsx bootstrap.
 */

const fromSources = import.meta.url.endsWith('.ts')

export interface WorkerEntry {
  /** Script the Worker constructor gets. */
  script: URL
  /** When set, the bootstrap imports this module (pass as workerData.tsEntry). */
  tsEntry: string | undefined
}

/** `name` is a module under src/runtime/ (without extension), e.g. 'worker/worker-main'. */
export function workerEntry(name: string, extraModules: readonly string[] = []): WorkerEntry {
  const needsTsx = fromSources || extraModules.some((u) => /\.[mc]?ts$/.test(u))
  const target = new URL(`../${name}.${fromSources ? 'ts' : 'js'}`, import.meta.url)
  if (!needsTsx) return { script: target, tsEntry: undefined }
  return { script: new URL('./tsx-bootstrap.mjs', import.meta.url), tsEntry: target.href }
}

/** Piscina filename for the stateless grain task module. */
export function statelessTaskEntry(extraModules: readonly string[] = []): URL {
  const needsTsx = fromSources || extraModules.some((u) => /\.[mc]?ts$/.test(u))
  return needsTsx ? new URL('./tsx-task-bootstrap.mjs', import.meta.url) : new URL('../worker/stateless-task.js', import.meta.url)
}
