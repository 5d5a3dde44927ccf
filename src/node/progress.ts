/**
 * Progress lines for long CLI steps, on stderr. A spinner redraws one line
 * only when stderr is a terminal and not CI; otherwise each step prints plain
 * lines that read well in a log file. Colour only on a terminal without
 * NO_COLOR.
 */

export interface ProgressOptions {
  stream: NodeJS.WritableStream & { isTTY?: boolean }
  /** From terminalEnv(): CI set, NO_COLOR set. */
  ci: boolean
  color: boolean
}

export interface Progress {
  /** A step starts; `done`/`fail` ends it. */
  start(text: string): void
  done(text?: string): void
  fail(text?: string): void
  /** A line outside any step. */
  note(text: string): void
  /** Stop the spinner timer (idempotent). */
  stop(): void
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
const SPIN_INTERVAL_MS = 80

export function createProgress(o: ProgressOptions): Progress {
  const tty = o.stream.isTTY === true && !o.ci
  const paint = (code: number, s: string): string => (tty && o.color ? `\x1b[${code}m${s}\x1b[0m` : s)
  let current: { text: string; t0: number } | undefined
  let timer: ReturnType<typeof setInterval> | undefined
  let frame = 0
  const write = (s: string): void => void o.stream.write(s)
  const clear = (): void => {
    if (tty) write('\r\x1b[K')
  }
  const elapsed = (): string => (current === undefined ? '' : ` (${((performance.now() - current.t0) / 1000).toFixed(1)} s)`)
  const stopTimer = (): void => {
    if (timer !== undefined) clearInterval(timer)
    timer = undefined
  }
  const end = (mark: string, text: string | undefined): void => {
    stopTimer()
    clear()
    if (current !== undefined) write(`${mark} ${text ?? current.text}${elapsed()}\n`)
    current = undefined
  }
  return {
    start(text) {
      if (current !== undefined) end(paint(32, '✓'), undefined)
      current = { text, t0: performance.now() }
      if (!tty) {
        write(`… ${text}\n`)
        return
      }
      write(`${FRAMES[0]} ${text}`)
      timer = setInterval(() => {
        frame = (frame + 1) % FRAMES.length
        clear()
        write(`${paint(36, FRAMES[frame]!)} ${current?.text ?? ''}${elapsed()}`)
      }, SPIN_INTERVAL_MS)
      timer.unref()
    },
    done(text) {
      end(paint(32, '✓'), text)
    },
    fail(text) {
      end(paint(31, '✗'), text)
    },
    note(text) {
      clear()
      write(`${text}\n`)
      if (tty && current !== undefined) write(`${FRAMES[frame]} ${current.text}${elapsed()}`)
    },
    stop() {
      stopTimer()
      if (current !== undefined) clear()
      current = undefined
    },
  }
}
