#!/usr/bin/env node
// The `graincluster` command: runs the built CLI when dist/ exists, else the
// TypeScript sources through tsx (a source checkout after `npm install`).
import { existsSync } from 'node:fs'

const built = new URL('../dist/node/cli.js', import.meta.url)
let mod
if (existsSync(built)) {
  mod = await import(built.href)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  mod = await import(new URL('../src/node/cli.ts', import.meta.url).href)
}
process.exitCode = await mod.runCli(process.argv.slice(2))
