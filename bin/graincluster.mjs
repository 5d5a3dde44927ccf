#!/usr/bin/env node
// The `graincluster` command. In a source checkout (src/ present, as after
// `git clone && npm install`) it runs the TypeScript sources through tsx, so
// a dist/ left over from an older build never runs stale code; an installed
// package ships only dist/ and runs that.
import { existsSync } from 'node:fs'

const source = new URL('../src/node/cli.ts', import.meta.url)
const built = new URL('../dist/node/cli.js', import.meta.url)
let tsx
if (existsSync(source)) {
  try {
    tsx = await import('tsx/esm/api')
  } catch (e) {
    // Sources without tsx (npm install --omit=dev): run a build if there is one.
    if (!existsSync(built)) throw e
  }
}
let mod
if (tsx !== undefined) {
  tsx.register()
  mod = await import(source.href)
} else {
  mod = await import(built.href)
}
process.exitCode = await mod.runCli(process.argv.slice(2))
