// Copies the non-TypeScript runtime files tsc does not emit into dist/.
import { copyFileSync, mkdirSync } from 'node:fs'

const assets = ['runtime/host/tsx-bootstrap.mjs', 'runtime/host/tsx-task-bootstrap.mjs']
for (const a of assets) {
  mkdirSync(new URL(`../dist/${a.slice(0, a.lastIndexOf('/'))}`, import.meta.url), { recursive: true })
  copyFileSync(new URL(`../src/${a}`, import.meta.url), new URL(`../dist/${a}`, import.meta.url))
}
