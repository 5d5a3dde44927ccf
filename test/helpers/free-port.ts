import { createServer } from 'node:net'

/** A currently free TCP port on 127.0.0.1 (bind to 0, read it, release it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })
}

export async function freePorts(n: number): Promise<number[]> {
  const out = new Set<number>()
  for (let i = 0; i < n * 10 && out.size < n; i++) out.add(await freePort())
  if (out.size < n) throw new Error(`could not find ${n} free ports`)
  return [...out]
}
