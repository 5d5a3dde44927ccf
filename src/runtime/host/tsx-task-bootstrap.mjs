// Piscina task bootstrap for running from TypeScript sources (see
// tsx-bootstrap.mjs for why): register tsx, then re-export the task.
import { existsSync } from 'node:fs'
import { register } from 'tsx/esm/api'

register()
const js = new URL('../worker/stateless-task.js', import.meta.url)
const mod = await import(existsSync(js) ? js.href : new URL('../worker/stateless-task.ts', import.meta.url).href)
export default mod.default
