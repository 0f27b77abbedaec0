// A progress bar for the command line, on stderr so stdout stays the command's output. On a
// terminal it redraws one line; elsewhere (CI logs, pipes) it prints a line every 10%.

const BAR = 30;

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

export class ProgressBar {
  #label = '';
  #lastDecile = -1;
  #lastDraw = 0;
  #drawn = false;
  readonly #tty: boolean;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    /** 'bytes' shows done/total as sizes, 'count' as numbers */
    private readonly unit: 'bytes' | 'count' = 'count',
  ) {
    this.#tty = !!out.isTTY;
  }

  /** Shows `done` of `total` (total 0 or unknown: only the count) under `label`. */
  update(label: string, done: number, total: number): void {
    if (label !== this.#label) {
      if (this.#drawn && this.#tty) this.out.write('\n');
      this.#label = label;
      this.#lastDecile = -1;
    }
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const amount = this.unit === 'bytes' ? `${formatBytes(done)}${total > 0 ? ` / ${formatBytes(total)}` : ''}` : `${done}${total > 0 ? ` / ${total}` : ''}`;
    const pct = total > 0 ? `${String(Math.floor(fraction * 100)).padStart(3)}%` : '';
    if (this.#tty) {
      const now = Date.now();
      if (now - this.#lastDraw < 50 && fraction < 1) return; // 20 redraws a second at most
      this.#lastDraw = now;
      const filled = Math.round(fraction * BAR);
      this.out.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}] ${pct} ${amount}\x1b[K`);
      this.#drawn = true;
    } else {
      const decile = Math.floor(fraction * 10);
      if (decile === this.#lastDecile) return;
      this.#lastDecile = decile;
      this.out.write(`${label} ${pct} ${amount}\n`);
    }
  }

  /** Ends the bar's line. */
  done(): void {
    if (this.#drawn && this.#tty) this.out.write('\n');
    this.#drawn = false;
    this.#label = '';
  }
}
