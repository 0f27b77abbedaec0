// Prints a tensor exactly the way PyTorch 1.13's repr does (torch/_tensor_str.py with the
// default print options): `tensor([[ 0.1234, -1.5000]])`, integer-valued floats as `1.`,
// scientific notation for wide ranges, `...` past 1000 elements, lines wrapped at 80
// characters, and the device and dtype when they are not the defaults. Numbers are rounded
// like Python's `format` (exact binary value, ties to even), not like JS `toFixed`.

const PRECISION = 4;
const THRESHOLD = 1000;
const EDGE = 3;
const LINEWIDTH = 80;

type Value = number | bigint | boolean;

function isFloatDtype(dtype: string): boolean {
  return dtype.startsWith('float') || dtype === 'bfloat16';
}

// ---- exact decimal formatting (Python's '{:.Nf}' and '{:.Ne}') ---------------------------

/** |x| = m * 2^e exactly, for a finite non-zero double. */
function decompose(x: number): { m: bigint; e: number } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  return biased === 0 ? { m: frac, e: -1074 } : { m: frac | (1n << 52n), e: biased - 1075 };
}

/** num/den rounded to an integer, ties to even (num, den > 0). */
function roundHalfEven(num: bigint, den: bigint): bigint {
  const q = num / den;
  const r2 = (num % den) * 2n;
  if (r2 > den || (r2 === den && q % 2n === 1n)) return q + 1n;
  return q;
}

function nonFinite(x: number): string {
  return Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf';
}

const signOf = (x: number) => (x < 0 || Object.is(x, -0) ? '-' : '');

/** Python's '{:.<digits>f}'.format(x). */
export function pyFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return nonFinite(x);
  const sign = signOf(x);
  let q = 0n;
  if (x !== 0) {
    const { m, e } = decompose(x);
    let num = m * 10n ** BigInt(digits);
    let den = 1n;
    if (e >= 0) num <<= BigInt(e);
    else den <<= BigInt(-e);
    q = roundHalfEven(num, den);
  }
  const s = q.toString().padStart(digits + 1, '0');
  return digits === 0 ? sign + s : `${sign}${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

/** Python's '{:.<digits>e}'.format(x). */
export function pyExp(x: number, digits: number): string {
  if (!Number.isFinite(x)) return nonFinite(x);
  const sign = signOf(x);
  let q = 0n;
  let exp = 0;
  if (x !== 0) {
    const { m, e } = decompose(x);
    const num = e >= 0 ? m << BigInt(e) : m;
    const den = e >= 0 ? 1n : 1n << BigInt(-e);
    // 10^exp <= |x| < 10^(exp+1), found exactly
    const atLeast = (k: number) => (k >= 0 ? num >= den * 10n ** BigInt(k) : num * 10n ** BigInt(-k) >= den);
    exp = Math.floor(Math.log10(Math.abs(x)));
    while (!atLeast(exp)) exp--;
    while (atLeast(exp + 1)) exp++;
    const shift = digits - exp; // |x| * 10^shift has digits+1 integer digits
    q = shift >= 0 ? roundHalfEven(num * 10n ** BigInt(shift), den) : roundHalfEven(num, den * 10n ** BigInt(-shift));
    if (q >= 10n ** BigInt(digits + 1)) {
      q /= 10n;
      exp++;
    }
  }
  const s = q.toString().padStart(digits + 1, '0');
  const mant = digits === 0 ? s : `${s[0]}.${s.slice(1)}`;
  return `${sign}${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

// ---- the formatter (torch._tensor_str._Formatter) ----------------------------------------

interface Formatter {
  width: number;
  format(v: Value): string;
}

function makeFormatter(values: Value[], dtype: string): Formatter {
  if (!isFloatDtype(dtype)) {
    const str =
      dtype === 'bool' ? (v: Value) => (Number(v) !== 0 ? 'True' : 'False') : (v: Value) => (typeof v === 'bigint' ? v.toString() : String(Number(v)));
    const width = Math.max(1, ...values.map((v) => str(v).length));
    return { width, format: (v) => str(v).padStart(width) };
  }
  const nums = values.map(Number);
  const nz = nums.filter((v) => Number.isFinite(v) && v !== 0);
  let intMode = true;
  let sci = false;
  let width = 1;
  if (nz.length > 0) {
    let mn = Infinity;
    let mx = 0;
    for (const v of nz) {
      const a = Math.abs(v);
      if (a < mn) mn = a;
      if (a > mx) mx = a;
    }
    intMode = nz.every((v) => v === Math.ceil(v));
    if (intMode) {
      sci = mx / mn > 1000 || mx > 1e8;
    } else {
      sci = mx / mn > 1000 || mx > 1e8 || mn < 1e-4;
    }
    for (const v of nz) {
      const len = sci ? pyExp(v, PRECISION).length : intMode ? pyFixed(v, 0).length + 1 : pyFixed(v, PRECISION).length;
      if (len > width) width = len;
    }
  }
  const format = (value: Value): string => {
    const v = Number(value);
    let s: string;
    if (sci) s = pyExp(v, PRECISION);
    else if (intMode) s = pyFixed(v, 0) + (Number.isFinite(v) ? '.' : '');
    else s = pyFixed(v, PRECISION);
    return s.padStart(width);
  };
  return { width, format };
}

// ---- layout (torch._tensor_str._tensor_str_with_formatter and _add_suffixes) ----------------

export function formatTensor(flat: ArrayLike<Value>, shape: number[], dtype: string, device: string): string {
  const numel = shape.reduce((a, b) => a * b, 1);
  const prefix = 'tensor(';
  const indent0 = prefix.length;
  const summarize = numel > THRESHOLD;
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const edges = (n: number) => (summarize && n > 2 * EDGE ? [...range(0, EDGE), -1, ...range(n - EDGE, n)] : range(0, n));
  const suffixes: string[] = [];
  if (device !== 'cpu') suffixes.push(`device='${device.includes(':') ? device : device + ':0'}'`);

  let body: string;
  if (numel === 0) {
    if (shape.length !== 1) suffixes.push(`size=(${shape.join(', ')})`);
    if (dtype !== 'float32') suffixes.push(`dtype=torch.${dtype}`);
    body = '[]';
  } else {
    if (!(dtype === 'float32' || dtype === 'int64' || dtype === 'bool')) suffixes.push(`dtype=torch.${dtype}`);
    // the elements shown decide the formatting, as in PyTorch's get_summarized_data
    const shown: Value[] = [];
    const collect = (dim: number, offset: number) => {
      if (dim === shape.length) return void shown.push(flat[offset]);
      for (const i of edges(shape[dim])) if (i >= 0) collect(dim + 1, offset + i * strides[dim]);
    };
    collect(0, 0);
    const fmt = makeFormatter(shown, dtype);
    const render = (dim: number, offset: number, indent: number): string => {
      const left = shape.length - dim;
      if (left === 0) return fmt.format(flat[offset]);
      const n = shape[dim];
      if (left === 1) {
        const perLine = Math.max(1, Math.floor((LINEWIDTH - indent) / (fmt.width + 2)));
        const data = edges(n).map((i) => (i < 0 ? ' ...' : fmt.format(flat[offset + i * strides[dim]])));
        const lines: string[] = [];
        for (let i = 0; i < data.length; i += perLine) lines.push(data.slice(i, i + perLine).join(', '));
        return `[${lines.join(',\n' + ' '.repeat(indent + 1))}]`;
      }
      const slices = edges(n).map((i) => (i < 0 ? '...' : render(dim + 1, offset + i * strides[dim], indent + 1)));
      return `[${slices.join(',' + '\n'.repeat(left - 1) + ' '.repeat(indent + 1))}]`;
    };
    body = render(0, 0, indent0);
  }

  const out = [prefix + body];
  let lastLineLen = out[0].length - out[0].lastIndexOf('\n') + 1;
  for (const suffix of suffixes) {
    if (lastLineLen + suffix.length + 2 > LINEWIDTH) {
      out.push(',\n' + ' '.repeat(indent0) + suffix);
      lastLineLen = indent0 + suffix.length;
    } else {
      out.push(', ' + suffix);
      lastLineLen += suffix.length + 2;
    }
  }
  out.push(')');
  return out.join('');
}

function range(a: number, b: number): number[] {
  const out: number[] = [];
  for (let i = a; i < b; i++) out.push(i);
  return out;
}
